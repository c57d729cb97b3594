"""Metrics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from assistant.training.metrics import (
    binary_metrics,
    bootstrap_intervals,
    brier_score,
    calibration_error,
    clustered_auc_interval,
    dice,
    jaccard,
    mean_interval,
    roc_auc,
    youden_threshold,
)


def test_auc_known_values() -> None:
    labels = np.array([0, 0, 1, 1])
    assert roc_auc(labels, np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    assert roc_auc(labels, np.array([0.1, 0.2, 0.3, 0.4])) == 1.0
    assert roc_auc(labels, np.array([0.5, 0.5, 0.5, 0.5])) == 0.5  # ties count half
    assert np.isnan(roc_auc(np.array([1, 1]), np.array([0.2, 0.3])))


def test_auc_matches_pairwise_definition() -> None:
    rng = np.random.default_rng(0)
    labels = rng.random(200) < 0.3
    scores = np.round(rng.random(200), 2) + labels * 0.2
    pairs = [(p > n) + 0.5 * (p == n) for p in scores[labels] for n in scores[~labels]]
    assert roc_auc(labels, scores) == pytest.approx(np.mean(pairs))


def test_binary_metrics_and_threshold() -> None:
    labels = np.array([0, 0, 0, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.6, 0.55, 0.7, 0.9])
    m = binary_metrics(labels, scores, 0.5)
    assert (m.sensitivity, m.specificity, m.accuracy) == (
        1.0,
        pytest.approx(2 / 3),
        pytest.approx(5 / 6),
    )
    assert m.f1 == pytest.approx(2 * 0.75 * 1.0 / 1.75)
    assert youden_threshold(labels, scores) in (0.55, 0.7)


def test_overlap_metrics() -> None:
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[:2, :2] = True
    b[:2, :] = True
    assert dice(a, b) == pytest.approx(2 * 4 / 12)
    assert jaccard(a, b) == pytest.approx(4 / 8)
    assert dice(np.zeros(3, bool), np.zeros(3, bool)) == 1.0


def _study_split(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) < n // 4
    return labels, rng.normal(size=n) + 1.5 * labels


def test_intervals_hold_the_estimate_and_narrow_with_the_split() -> None:
    labels, scores = _study_split(200)
    point = binary_metrics(labels, scores, 0.8)
    small = bootstrap_intervals(labels, scores, 0.8)
    for name, (low, high) in small.items():
        assert low <= getattr(point, name) <= high, name
    assert small == bootstrap_intervals(labels, scores, 0.8)  # the same every run
    large = bootstrap_intervals(*_study_split(3200), 0.8)
    for name in ("auc", "sensitivity", "specificity"):
        ratio = (small[name][1] - small[name][0]) / (large[name][1] - large[name][0])
        assert 3.0 < ratio < 5.5, (name, ratio)  # width ~ 1/sqrt(n): 4x for 16x the studies
    separated = bootstrap_intervals(labels, labels * 1.0, 0.5)
    assert separated["auc"] == (1.0, 1.0) and separated["sensitivity"] == (1.0, 1.0)
    assert bootstrap_intervals(np.ones(5, bool), np.ones(5), 0.5) == {}  # one class
    assert "ece" not in small and "ece" not in point.to_dict()  # scores, not probabilities
    probabilities = 1 / (1 + np.exp(-scores))
    calibrated = bootstrap_intervals(labels, probabilities, 0.5)
    point = binary_metrics(labels, probabilities, 0.5)
    for name in ("brier", "ece"):
        assert calibrated[name][0] <= getattr(point, name) <= calibrated[name][1], name


def test_a_proportions_interval_is_the_binomial_one() -> None:
    # 30 of 40 positives found: sensitivity 0.75, binomial standard error 0.068.
    labels = np.ones(60, bool)
    labels[40:] = False
    scores = np.r_[np.ones(30), np.zeros(10), np.zeros(20)]
    low, high = bootstrap_intervals(labels, scores, 0.5, resamples=4000)["sensitivity"]
    wald = 1.96 * np.sqrt(0.75 * 0.25 / 40)
    assert low == pytest.approx(0.75 - wald, abs=0.03) and high == pytest.approx(
        0.75 + wald, abs=0.03
    )


def test_slices_are_resampled_by_study() -> None:
    """Slices of one study share its score: resampling them as if independent would give
    an interval far too narrow; resampling studies does not."""
    rng = np.random.default_rng(2)
    labels, scores = [], []
    for study in range(30):
        positive = study < 10
        labels.append(np.full(40, positive))
        scores.append(np.full(40, rng.normal() + 1.0 * positive))
    by_study = clustered_auc_interval(labels, scores)
    by_slice = clustered_auc_interval(
        list(np.concatenate(labels)[:, None]), list(np.concatenate(scores)[:, None])
    )
    assert (by_study[1] - by_study[0]) > 4 * (by_slice[1] - by_slice[0])
    assert by_study[0] <= roc_auc(np.concatenate(labels), np.concatenate(scores)) <= by_study[1]


def test_mean_interval() -> None:
    values = np.random.default_rng(3).random(400)
    low, high = mean_interval(values)
    half = 1.96 * values.std() / np.sqrt(len(values))
    assert low == pytest.approx(values.mean() - half, abs=0.01)
    assert high == pytest.approx(values.mean() + half, abs=0.01)


def test_calibration_against_hand_computed_values() -> None:
    assert brier_score(np.array([1, 0]), np.array([0.8, 0.3])) == pytest.approx(0.065)
    # One in four positive at 0.25: a calibrated claim. Half positive at 0.9: 0.4 too high.
    assert calibration_error(np.array([1, 0, 0, 0]), np.full(4, 0.25)) == pytest.approx(0.0)
    assert calibration_error(np.array([1, 1, 0, 0]), np.full(4, 0.9)) == pytest.approx(0.4)
    # Two bins, each off by 0.1 in a different direction; 1.0 falls in the last bin.
    labels = np.array([0] * 9 + [1] + [1] * 10)
    probabilities = np.r_[np.full(10, 0.0), np.full(10, 1.0)]
    assert calibration_error(labels, probabilities) == pytest.approx(0.05)
    m = binary_metrics(labels, probabilities, 0.5)
    assert m.brier == pytest.approx(0.05) and m.ece == pytest.approx(0.05)
