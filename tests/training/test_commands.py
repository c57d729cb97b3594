"""`radassist train` writes a model folder whose card records how it was made, and
`radassist evaluate` scores it (table, --json, ROC PNG)."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from assistant.analysis.model.folder import load_model
from assistant.cli import main
from assistant.training.metrics import roc_auc

pytestmark = pytest.mark.slow


def test_train_then_evaluate(tmp_path: Path, capsys) -> None:
    out = tmp_path / "model"
    assert (
        main(
            [
                "train",
                "--dataset",
                "synthetic:12,mask=intracranial",
                "--out",
                str(out),
                "--epochs",
                "1",
                "--seed",
                "3",
            ]
        )
        == 0
    )
    loaded = load_model(out)
    card = loaded.card
    assert (
        card.training["command"].startswith("radassist ")
        and "--dataset synthetic:12,mask=intracranial" in card.training["command"]
    )
    assert card.training["dataset"] == "synthetic:12,mask=intracranial"
    assert card.training["seed"] == 3 and card.input_mask == "intracranial"
    assert set(card.metrics["val"]) >= {"auc", "accuracy", "sensitivity", "specificity", "f1"}
    assert card.clinical_use is False and "Not for clinical use" in card.intended_use
    capsys.readouterr()

    assert (
        main(
            [
                "evaluate",
                "--model",
                str(out),
                "--dataset",
                "synthetic:12,mask=intracranial",
                "--split",
                "test",
                "--json",
            ]
        )
        == 0
    )
    metrics = json.loads(capsys.readouterr().out)
    assert {"auc", "accuracy", "sensitivity", "specificity", "n"} <= set(metrics) and metrics[
        "n"
    ] == 2
    assert metrics["bootstrap_resamples"] == 1000
    for name, (low, high) in metrics["ci95"].items():
        assert low <= metrics[name] <= high, name
    evaluate = ["evaluate", "--model", str(out), "--dataset", "synthetic:12,mask=intracranial"]
    assert main(evaluate) == 0
    assert re.search(r"auc +[\d.]+ +\(95% CI [\d.]+-[\d.]+\)", capsys.readouterr().out)
    table = tmp_path / "predictions.csv"
    assert main([*evaluate, "--bootstrap", "0", "--json", "--predictions", str(table)]) == 0
    again = json.loads(capsys.readouterr().out)
    assert "ci95" not in again
    with table.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == again["n"] and all(r["study"].startswith("synthetic-") for r in rows)
    labels = np.array([int(r["label"]) for r in rows])
    probabilities = np.array([float(r["probability"]) for r in rows])
    assert labels.sum() == again["positives"]
    assert roc_auc(labels, probabilities) == pytest.approx(again["auc"], abs=1e-4)
    assert [int(r["predicted"]) for r in rows] == list(probabilities >= card.threshold)
    with Image.open(out / "roc-test.png") as roc:
        assert roc.size == (400, 400)


def test_training_can_start_from_a_model_and_says_so(tmp_path: Path, capsys) -> None:
    import torch

    from assistant.training.datasets import DatasetSpecError, parse_spec
    from assistant.training.run import FINE_TUNE_LEARNING_RATE_FACTOR, _starting_point

    parent = tmp_path / "parent"
    base = ["train", "--dataset", "synthetic:8", "--epochs", "1"]
    assert main([*base, "--out", str(parent)]) == 0
    parent_card = load_model(parent).card

    network, record = _starting_point(parent, parse_spec("synthetic:8", "train"))
    for name, tensor in load_model(parent).network.state_dict().items():
        assert torch.equal(network.state_dict()[name], tensor), name
    assert network.training  # ready to be trained, not left in eval mode

    with pytest.raises(DatasetSpecError, match="input mask: none in the model, intracranial"):
        _starting_point(parent, parse_spec("synthetic:8,mask=intracranial", "train"))

    child = tmp_path / "child"
    assert main([*base, "--out", str(child), "--init", str(parent), "--seed", "1"]) == 0
    training = load_model(child).card.training
    assert (
        training["init"]
        == {
            "model": f"{parent_card.name} {parent_card.version}",
            "weights_sha256": parent_card.weights_sha256,
        }
        == record
    )
    assert f"--init {parent}" in training["command"]
    # Its own version (never its parent's place in the registry), its parent named.
    child_card = load_model(child).card
    assert child_card.parent == parent_card.ref
    assert child_card.version.startswith(f"{parent_card.version}-ft")
    assert child_card.name == parent_card.name
    # A fine-tune takes shorter steps than training from scratch, unless told otherwise.
    assert training["learning_rate"] == pytest.approx(
        parent_card.training["learning_rate"] * FINE_TUNE_LEARNING_RATE_FACTOR
    )
    told = tmp_path / "told"
    assert main([*base, "--out", str(told), "--init", str(parent), "--learning-rate", "3e-4"]) == 0
    assert load_model(told).card.training["learning_rate"] == 3e-4
    capsys.readouterr()

    medmnist = tmp_path / "tiny.npz"
    volumes = np.zeros((4, 28, 28, 28), np.uint8)
    labels = np.array([[0], [1], [0], [1]])
    np.savez(
        medmnist,
        **{f"{s}_images": volumes for s in ("train", "val", "test")},
        **{f"{s}_labels": labels for s in ("train", "val", "test")},
    )
    code = main(
        [
            "train",
            "--dataset",
            f"medmnist:{medmnist}",
            "--out",
            str(tmp_path / "x"),
            "--init",
            str(parent),
        ]
    )
    assert code == 2
    error = capsys.readouterr().err
    assert "cannot start from" in error and "input channels: 3 in the model, 2 in the data" in error
    assert not (tmp_path / "x").exists()


def test_evaluate_json_says_null_for_what_a_split_cannot_define(tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(0)
    volumes = (rng.random((4, 28, 28, 28)) < 0.05).astype(np.uint8)
    both = np.array([[0], [1], [0], [1]])
    trained, negatives = tmp_path / "both.npz", tmp_path / "negatives.npz"
    for path, test_labels in ((trained, both), (negatives, np.zeros((4, 1), int))):
        np.savez(
            path,
            **{f"{s}_images": volumes for s in ("train", "val", "test")},
            **{"train_labels": both, "val_labels": both, "test_labels": test_labels},
        )
    out = tmp_path / "model"
    assert (
        main(["train", "--dataset", f"medmnist:{trained}", "--out", str(out), "--epochs", "1"]) == 0
    )
    capsys.readouterr()
    evaluate = ["evaluate", "--model", str(out), "--dataset", f"medmnist:{negatives}", "--json"]
    assert main(evaluate) == 0

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    metrics = json.loads(capsys.readouterr().out, parse_constant=refuse)
    assert metrics["positives"] == 0 and metrics["auc"] is None
    assert metrics["sensitivity"] is None and metrics["specificity"] is not None


def test_replay_mixes_a_second_dataset_into_fine_tuning(tmp_path: Path, capsys) -> None:
    """--replay: the second SPEC's train and val splits join the first's (read alike, or
    refused saying how they differ), and the card records it."""
    from assistant.training.datasets import DatasetSpecError, MixedStudies, parse_spec

    small = parse_spec("synthetic:20,lesions=15-30,size=32,slices=4", "train")
    usual = parse_spec("synthetic:10,size=32,slices=4", "train")
    mixed = MixedStudies([small, usual])
    assert len(mixed) == len(small) + len(usual)
    assert list(mixed.labels()) == [*small.labels(), *usual.labels()]
    assert mixed[len(small)].key == usual[0].key and mixed[0].key == small[0].key
    assert mixed[len(mixed) - 1].key == usual[len(usual) - 1].key
    with pytest.raises(DatasetSpecError, match="same size and mask"):
        MixedStudies([small, parse_spec("synthetic:10,size=64,slices=4", "train")])

    parent, child = tmp_path / "parent", tmp_path / "child"
    base = ["train", "--epochs", "1", "--seed", "0"]
    assert main([*base, "--dataset", "synthetic:8,size=32,slices=4", "--out", str(parent)]) == 0
    replay = "synthetic:8,size=32,slices=4"
    spec = "synthetic:8,lesions=15-30,size=32,slices=4"
    assert (
        main(
            [
                *base,
                "--dataset",
                spec,
                "--replay",
                replay,
                "--init",
                str(parent),
                "--out",
                str(child),
            ]
        )
        == 0
    )
    card = load_model(child).card
    assert card.training["replay"] == replay and card.training["dataset"] == spec
    assert card.training["train_studies"] == len(parse_spec(spec, "train")) + len(
        parse_spec(replay, "train")
    )
    capsys.readouterr()
