"""Datasets by SPEC, and a short training run that learns the synthetic task."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from assistant.analysis.model.card import NetworkSpec
from assistant.analysis.model.network import CnnRnn
from assistant.training.datasets import DatasetSpecError, SyntheticHeads, parse_spec
from assistant.training.metrics import roc_auc
from assistant.training.phantoms import make_case
from assistant.training.run import network_for
from assistant.training.trainer import (
    CHECKPOINT_FILE,
    CheckpointMismatch,
    TrainConfig,
    WeightAverage,
    score,
    train,
)

MEDMNIST = Path(__file__).resolve().parents[3] / "shared/data/medmnist/adrenalmnist3d.npz"


def test_specs_name_their_datasets() -> None:
    assert len(parse_spec("synthetic:100", "train")) == 70
    assert len(parse_spec("synthetic:100", "val")) == 15
    for bad in (
        "nothing:1",
        "synthetic:x",
        "dicom:onlyone",
        "synthetic:10,lesions=10",
        "synthetic:10,lesions=40-10",
        "synthetic:10,colour=red",
        "synthetic:10,mask=skull",
        "synthetic:10,density=50",
        "synthetic:10,density=90-50",
        "synthetic:10,density=5-10",
    ):
        with pytest.raises(DatasetSpecError):
            parse_spec(bad, "train")


def test_synthetic_lesion_sizes_reach_the_phantoms() -> None:
    heads = parse_spec("synthetic:20,lesions=20-30,size=64,slices=6", "train")
    assert isinstance(heads, SyntheticHeads) and heads.lesion_sizes == (20.0, 30.0)
    positive = next(i for i, label in enumerate(heads.labels()) if label)
    seed = int(heads[positive].key.removeprefix("synthetic-"))
    case = make_case(seed, True, max_slices=6, matrix=64, lesion_sizes=(20.0, 30.0))
    assert all(20.0 <= lesion.size_mm <= 30.0 for lesion in case.lesions)
    assert np.array_equal(heads[positive].masks, case.mask)
    default = make_case(seed, True, max_slices=6, matrix=64)
    assert not np.array_equal(default.mask, case.mask)


def test_synthetic_lesion_densities_reach_the_phantoms() -> None:
    """density=MIN-MAX (HU): low-contrast lesions, the same heads and places otherwise."""
    heads = parse_spec("synthetic:20,lesions=20-30,density=42-48,size=64,slices=6", "train")
    assert isinstance(heads, SyntheticHeads) and heads.lesion_densities == (42.0, 48.0)
    positive = next(i for i, label in enumerate(heads.labels()) if label)
    seed = int(heads[positive].key.removeprefix("synthetic-"))
    faint = make_case(seed, True, 6, 64, (20.0, 30.0), lesion_densities=(42.0, 48.0))
    usual = make_case(seed, True, 6, 64, (20.0, 30.0))
    assert all(42.0 <= lesion.density_hu <= 48.0 for lesion in faint.lesions)
    assert all(50.0 <= lesion.density_hu <= 90.0 for lesion in usual.lesions)
    assert [les.center for les in faint.lesions] == [les.center for les in usual.lesions]
    blood = faint.mask > 0
    assert blood.any() and faint.hu[blood].mean() < usual.hu[usual.mask > 0].mean()


def test_synthetic_splits_never_share_a_case() -> None:
    train, val = (
        SyntheticHeads(40, "train", max_slices=4, image_size=64),
        SyntheticHeads(40, "val", max_slices=4, image_size=64),
    )
    assert {train[i].key for i in range(len(train))}.isdisjoint(
        {val[i].key for i in range(len(val))}
    )
    study = train[1]
    assert (
        study.slices.shape[1:] == (3, 64, 64)
        and study.masks is not None
        and study.slice_labels is not None
    )


@pytest.mark.skipif(not MEDMNIST.is_file(), reason=f"{MEDMNIST} is absent")
def test_medmnist_views_are_the_three_axes() -> None:
    data = parse_spec(f"medmnist:{MEDMNIST}", "val")
    assert len(data) == 98 and data.labels().sum() == 22
    views = data.views(0)
    assert len(views) == 3 and views[0].slices.shape == (28, 2, 28, 28)
    assert not np.array_equal(views[0].slices, views[1].slices)


def test_medmnist_64_cubed_slices_are_halved_by_the_stem(tmp_path: Path) -> None:
    strides = {}
    for size in (28, 64):
        path = tmp_path / f"tiny{size}.npz"
        volumes = np.zeros((2, size, size, size), np.uint8)
        volumes[:, 8:14, 8:14, 8:14] = 255
        np.savez(path, val_images=volumes, val_labels=np.array([[0], [1]]))
        spec = network_for(parse_spec(f"medmnist:{path}", "val"))
        strides[size] = spec.stem_stride
        output = CnnRnn(spec).eval()(torch.zeros(1, size, 2, size, size))
        assert output.study_logit.shape == (1,)
    assert strides == {28: 1, 64: 2}


@pytest.mark.skipif(not MEDMNIST.is_file(), reason=f"{MEDMNIST} is absent")
def test_medmnist_second_channel_is_the_distance_to_the_surface(tmp_path: Path) -> None:
    data = parse_spec(f"medmnist:{MEDMNIST}", "val")
    rng = np.random.default_rng(0)
    for index in range(3):
        shape = data.volumes[index] > 127
        for study in (*data.views(index), data.training_view(index, rng)):
            inside, distance = study.slices[:, 0] > 0.5, study.slices[:, 1]
            # zero outside the shape, at least one voxel (scaled) inside it
            assert np.all(distance[~inside] == 0)
            assert np.all(distance[inside] >= 1 / data.distance_scale - 1e-6)
            assert inside.sum() == shape.sum()
    # the centre of a ball of radius 6 is sqrt(37) voxels from the nearest one outside
    zz, yy, xx = np.indices((28, 28, 28))
    ball = ((zz - 14) ** 2 + (yy - 14) ** 2 + (xx - 14) ** 2 <= 36).astype(np.uint8)[None] * 255
    path = tmp_path / "ball.npz"
    np.savez(
        path,
        **{f"{s}_images": ball for s in ("train", "val", "test")},
        **{f"{s}_labels": np.zeros((1, 1)) for s in ("train", "val", "test")},
    )
    depth = parse_spec(f"medmnist:{path}", "test")[0].slices[:, 1].max() * data.distance_scale
    assert depth == pytest.approx(np.sqrt(37))  # the nearest voxel outside


@pytest.mark.slow
def test_a_short_run_learns_the_synthetic_task(tmp_path: Path) -> None:
    torch.set_num_threads(2)
    # Small images and lesions they can show, so the run takes seconds; measured here
    # over seeds 1-3: best val AUC 0.83-0.90 (chance is 0.5).
    kwargs = {"max_slices": 6, "image_size": 64, "lesion_sizes": (25.0, 40.0)}
    train_set = SyntheticHeads(240, "train", **kwargs)
    val_set = SyntheticHeads(240, "val", **kwargs)
    torch.manual_seed(1)  # the initial weights too: the run must not depend on test order
    network = CnnRnn(NetworkSpec(widths=(8, 16, 32, 48), gru_hidden=24))
    before = roc_auc(val_set.labels(), score(network, val_set)[0])
    history: list[dict[str, float]] = []
    config = TrainConfig(epochs=10, batch_size=4, learning_rate=3e-3, seed=1)
    result = train(
        network, train_set, val_set, config, tmp_path, on_epoch=history.append, progress=False
    )
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert result.best_val_auc > 0.7, (before, history)
    assert 0.0 < result.threshold < 1.0
    assert (tmp_path / CHECKPOINT_FILE).is_file()


def test_a_checkpoint_of_another_run_is_not_resumed(tmp_path: Path) -> None:
    kwargs = {"max_slices": 3, "image_size": 32, "lesion_sizes": (25.0, 40.0)}
    train_set, val_set = SyntheticHeads(12, "train", **kwargs), SyntheticHeads(12, "val", **kwargs)
    network = CnnRnn(NetworkSpec(widths=(8, 16, 32), gru_hidden=8))
    config = TrainConfig(epochs=1, batch_size=4, dataset="synthetic:12")
    train(network, train_set, val_set, config, tmp_path, progress=False)
    again = train(network, train_set, val_set, config, tmp_path, progress=False)  # resumes
    assert again.best_epoch == 1
    with pytest.raises(CheckpointMismatch, match="synthetic:12"):
        train(network, train_set, val_set, replace(config, dataset="synthetic:99"), tmp_path)
    # A checkpoint made before a setting existed names that setting.
    saved = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)
    del saved["config"]["average_epochs"]
    torch.save(saved, tmp_path / CHECKPOINT_FILE)
    with pytest.raises(CheckpointMismatch, match=r"'average_epochs': \(None, 0\.0\)"):
        train(network, train_set, val_set, config, tmp_path)


def test_selection_by_validation_loss_keeps_the_lowest(tmp_path: Path) -> None:
    kwargs = {"max_slices": 3, "image_size": 32, "lesion_sizes": (25.0, 40.0)}
    train_set, val_set = SyntheticHeads(12, "train", **kwargs), SyntheticHeads(12, "val", **kwargs)
    torch.manual_seed(0)
    network = CnnRnn(NetworkSpec(widths=(8, 16, 32), gru_hidden=8))
    config = TrainConfig(epochs=3, batch_size=4, select_by="loss", patience=5)
    result = train(network, train_set, val_set, config, tmp_path, progress=False)
    losses = [record["val_loss"] for record in result.history]
    assert len(losses) == 3 and result.best_epoch == int(np.argmin(losses)) + 1
    with pytest.raises(ValueError, match="select_by"):
        train(network, train_set, val_set, replace(config, select_by="luck"), tmp_path / "x")


def test_the_weight_average_follows_the_weights_slowly() -> None:
    network = nn.Sequential(nn.Linear(2, 1), nn.BatchNorm1d(1))
    average = WeightAverage(network, steps_per_epoch=10, epochs=1.0)  # decay 0.9
    start = network[0].weight.detach().clone()
    with torch.no_grad():
        network[0].weight.add_(1.0)
        network[1].running_mean.fill_(5.0)
    for _ in range(100):
        average.update(network)
    moved = average.model[0].weight - start
    assert torch.allclose(moved, torch.ones_like(moved), atol=1e-3)  # caught up
    assert average.model[1].running_mean.item() == pytest.approx(5.0, abs=1e-3)
    with torch.no_grad():
        network[0].weight.add_(1.0)
    average.update(network)  # one step: a tenth of the way
    step = average.model[0].weight - start - 1.0
    assert torch.allclose(step, torch.full_like(step, 0.1), atol=1e-3)
    assert not any(p.requires_grad for p in average.model.parameters())


def test_a_run_with_averaged_weights_keeps_and_resumes_the_average(tmp_path: Path) -> None:
    kwargs = {"max_slices": 3, "image_size": 32, "lesion_sizes": (25.0, 40.0)}
    train_set, val_set = SyntheticHeads(12, "train", **kwargs), SyntheticHeads(12, "val", **kwargs)
    config = TrainConfig(epochs=2, batch_size=4, average_epochs=1.0, patience=5)

    def fresh() -> CnnRnn:
        torch.manual_seed(0)
        return CnnRnn(NetworkSpec(widths=(8, 16, 32), gru_hidden=8))

    whole = fresh()
    train(whole, train_set, val_set, config, tmp_path / "whole", progress=False)
    saved = torch.load(tmp_path / "whole" / CHECKPOINT_FILE, weights_only=True)
    kept, last = saved["best_state"], saved["model"]
    assert saved["average_updates"] == 4  # 8 training cases in batches of 4, 2 epochs
    # What is kept (and what the network ends with) is an average, not a step's weights.
    assert any(not torch.equal(kept[k], last[k]) for k in kept if kept[k].is_floating_point())
    assert all(torch.equal(kept[k], whole.state_dict()[k]) for k in kept)

    class Stop(Exception):
        pass

    def crash(record: dict[str, float]) -> None:
        if record["epoch"] == 2:  # before epoch 2's checkpoint: resumes after epoch 1
            raise Stop

    with pytest.raises(Stop):
        train(fresh(), train_set, val_set, config, tmp_path / "cut", on_epoch=crash, progress=False)
    resumed = fresh()
    train(resumed, train_set, val_set, config, tmp_path / "cut", progress=False)
    again = torch.load(tmp_path / "cut" / CHECKPOINT_FILE, weights_only=True)
    assert again["average_updates"] == 4
    assert all(
        torch.allclose(again["average"][k].float(), saved["average"][k].float()) for k in kept
    )
