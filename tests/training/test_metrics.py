"""Metrics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from assistant.training.metrics import binary_metrics, dice, jaccard, roc_auc, youden_threshold


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
