"""Class balance by ACGAN feature synthesis: the GAN's shapes, a short run on a toy
imbalanced feature set where generated minority features move toward the real ones,
the features the head is refitted on, and `train --augment acgan` in the model card."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from assistant.analysis.model.card import NetworkSpec
from assistant.analysis.model.folder import load_model
from assistant.analysis.model.network import CnnRnn
from assistant.cli import main
from assistant.training.acgan import (
    AcganConfig,
    FeatureDiscriminator,
    FeatureGenerator,
    balancing_features,
    extract_features,
    mmd,
    train_acgan,
)
from assistant.training.datasets import DatasetSpecError, SyntheticHeads, parse_spec
from assistant.training.trainer import score


def _toy(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """400 majority vectors around 0 and 20 minority vectors around +2, in 8 dimensions."""
    rng = np.random.default_rng(seed)
    majority = rng.normal(0.0, 1.0, (400, 8))
    minority = rng.normal(2.0, 0.5, (20, 8))
    features = np.concatenate((majority, minority)).astype(np.float32)
    return features, np.array([0] * 400 + [1] * 20)


def test_generator_and_discriminator_shapes() -> None:
    generator = FeatureGenerator(noise_dim=16, classes=2, features=12, hidden=32)
    made = generator(torch.randn(5, 16), torch.tensor([0, 1, 1, 0, 1]))
    assert made.shape == (5, 12)
    score_, classes = FeatureDiscriminator(features=12, classes=2, hidden=32)(made)
    assert score_.shape == (5,) and classes.shape == (5, 2)


def test_generated_minority_moves_toward_the_real_minority() -> None:
    features, labels = _toy()
    acgan = train_acgan(features, labels, AcganConfig(steps=300, batch_size=32, seed=1))
    distances = [record["minority_mmd"] for record in acgan.history]
    assert distances[-1] < 0.5 * distances[0], distances
    made = acgan.generate(label=1, count=200)
    real_minority, real_majority = features[labels == 1], features[labels == 0]
    # Closer to the minority it imitates than to the majority, with a real spread.
    assert np.linalg.norm(made.mean(0) - real_minority.mean(0)) < 0.5 * np.linalg.norm(
        made.mean(0) - real_majority.mean(0)
    )
    assert made.std(0).mean() > 0.25 * real_minority.std(0).mean()  # no mode collapse
    bandwidth = 3.0
    assert mmd(made[:20], real_minority, bandwidth) < mmd(
        real_majority[:20], real_minority, bandwidth
    )


def test_balancing_generates_exactly_the_missing_minority() -> None:
    features, labels = _toy()
    acgan = train_acgan(features, labels, AcganConfig(steps=5, seed=0))
    made, made_labels = balancing_features(acgan, labels)
    assert made.shape == (380, 8) and set(made_labels) == {1}


def test_the_head_reads_the_same_features_as_the_network() -> None:
    """Refitting the study head on extracted features is only right if they are the
    features the network's own forward pass feeds it."""
    torch.manual_seed(0)
    network = CnnRnn(NetworkSpec(widths=(8, 16), gru_hidden=8)).eval()
    dataset = SyntheticHeads(12, "val", max_slices=4, image_size=64)
    extracted = extract_features(network, dataset)
    with torch.no_grad():
        via_head = torch.sigmoid(
            network.study_head(torch.from_numpy(extracted.features)).squeeze(-1)
        ).numpy()
    scores, _ = score(network, dataset)
    np.testing.assert_allclose(via_head, scores, atol=1e-5)
    assert list(extracted.labels) == list(dataset.labels())


def test_synthetic_spec_options() -> None:
    dataset = parse_spec("synthetic:400,positive=0.05,size=64,slices=8", "train")
    assert isinstance(dataset, SyntheticHeads)
    assert dataset.image_size == 64 and dataset.max_slices == 8
    assert 0.02 < dataset.labels().mean() < 0.1
    for bad in ("synthetic:40,positive=2", "synthetic:40,colour=red", "synthetic:40,size=x"):
        with pytest.raises(DatasetSpecError):
            parse_spec(bad, "train")


@pytest.mark.slow
def test_train_with_acgan_records_it_in_the_card(tmp_path: Path) -> None:
    out = tmp_path / "model"
    command = ["train", "--dataset", "synthetic:40,positive=0.2,size=32,slices=4"]
    options = ["--epochs", "1", "--augment", "acgan", "--acgan-steps", "40"]
    assert main([*command, "--out", str(out), *options]) == 0
    card = load_model(out).card
    augment = card.training["augment"]
    assert augment["method"] == "acgan" and card.training["class_balance"] == "none"
    assert augment["generated_features"] > 0 and augment["settings"]["steps"] == 40
    assert "--augment acgan" in card.training["command"]
