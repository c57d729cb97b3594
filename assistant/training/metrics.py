"""Classification and segmentation metrics, in numpy (no torch, no sklearn).

The threshold is chosen on the validation split (Youden's J) and then applied, as is,
to the test split: the numbers reported for test are never tuned on it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (the Mann-Whitney U statistic, ties counted half)."""
    labels = np.asarray(labels, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    # average ranks over ties
    boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [len(scores)]))
    for start, end in zip(starts, ends, strict=True):
        ranks[order[start:end]] = (start + end + 1) / 2.0
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False-positive rates, true-positive rates and the thresholds that give them."""
    labels = np.asarray(labels, dtype=bool)
    thresholds = np.unique(np.concatenate(([np.inf], np.asarray(scores, dtype=np.float64))))[::-1]
    tpr = np.array([(scores[labels] >= t).mean() if labels.any() else 0.0 for t in thresholds])
    fpr = np.array([(scores[~labels] >= t).mean() if (~labels).any() else 0.0 for t in thresholds])
    return fpr, tpr, thresholds


def youden_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The threshold maximising sensitivity + specificity - 1 (on validation data)."""
    fpr, tpr, thresholds = roc_curve(labels, scores)
    best = int(np.argmax(tpr - fpr))
    threshold = float(thresholds[best])
    return 0.5 if not np.isfinite(threshold) else threshold


def accuracy_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The threshold with the highest accuracy (on validation data); midpoints between
    neighbouring scores, so it generalises a little better than a score itself."""
    labels = np.asarray(labels, dtype=bool)
    ordered = np.unique(np.asarray(scores, dtype=np.float64))
    candidates = np.concatenate(
        ([ordered[0] - 1e-6], (ordered[:-1] + ordered[1:]) / 2, [ordered[-1] + 1e-6])
    )
    accuracy = [((scores >= t) == labels).mean() for t in candidates]
    return float(candidates[int(np.argmax(accuracy))])


THRESHOLD_RULES = {"youden": youden_threshold, "accuracy": accuracy_threshold}


@dataclass(frozen=True)
class BinaryMetrics:
    auc: float
    accuracy: float
    sensitivity: float
    specificity: float
    f1: float
    balanced_accuracy: float
    threshold: float
    n: int
    positives: int

    def to_dict(self) -> dict[str, float | int]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def binary_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float) -> BinaryMetrics:
    labels = np.asarray(labels, dtype=bool)
    predicted = np.asarray(scores) >= threshold
    tp = int((predicted & labels).sum())
    tn = int((~predicted & ~labels).sum())
    fp = int((predicted & ~labels).sum())
    fn = int((~predicted & labels).sum())
    sensitivity = tp / (tp + fn) if tp + fn else float("nan")
    specificity = tn / (tn + fp) if tn + fp else float("nan")
    precision = tp / (tp + fp) if tp + fp else 0.0
    f1 = 2 * precision * sensitivity / (precision + sensitivity) if precision + sensitivity else 0.0
    return BinaryMetrics(
        auc=roc_auc(labels, scores),
        accuracy=(tp + tn) / len(labels) if len(labels) else float("nan"),
        sensitivity=sensitivity,
        specificity=specificity,
        f1=f1,
        balanced_accuracy=(sensitivity + specificity) / 2,
        threshold=float(threshold),
        n=len(labels),
        positives=int(labels.sum()),
    )


def dice(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Dice overlap of two boolean masks (1.0 when both are empty)."""
    predicted, truth = np.asarray(predicted, bool), np.asarray(truth, bool)
    total = predicted.sum() + truth.sum()
    return 1.0 if total == 0 else float(2 * (predicted & truth).sum() / total)


def jaccard(predicted: np.ndarray, truth: np.ndarray) -> float:
    predicted, truth = np.asarray(predicted, bool), np.asarray(truth, bool)
    union = (predicted | truth).sum()
    return 1.0 if union == 0 else float((predicted & truth).sum() / union)
