"""Classification and segmentation metrics, in numpy (no torch, no sklearn).

The threshold is chosen on the validation split (Youden's J) and then applied, as is,
to the test split: the numbers reported for test are never tuned on it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve: P(positive scores above negative), ties counted half
    (the Mann-Whitney U statistic)."""
    labels = np.asarray(labels, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    positive, negative = scores[labels], scores[~labels]
    if not len(positive) or not len(negative):
        return float("nan")
    ordered = np.sort(negative)
    below = np.searchsorted(ordered, positive, side="left")
    at_or_below = np.searchsorted(ordered, positive, side="right")
    return float((below + at_or_below).sum() / (2.0 * len(positive) * len(negative)))


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
    #: Calibration: how far the probabilities are from the frequencies they claim.
    brier: float = float("nan")
    ece: float = float("nan")

    def to_dict(self) -> dict[str, float | int]:
        """Rounded; without calibration where the scores were not probabilities."""
        return {
            k: (round(v, 4) if isinstance(v, float) else v)
            for k, v in asdict(self).items()
            if not (k in ("brier", "ece") and math.isnan(v))
        }


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
        brier=brier_score(labels, scores),
        ece=calibration_error(labels, scores),
    )


def brier_score(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean squared distance of the probabilities from the outcomes (0 is perfect)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if not _are_probabilities(probabilities):
        return float("nan")
    return float(np.mean((probabilities - np.asarray(labels, dtype=np.float64)) ** 2))


def _are_probabilities(scores: np.ndarray) -> bool:
    """Calibration speaks of probabilities: none for an empty set or other scores."""
    return bool(len(scores)) and bool(np.all((scores >= 0) & (scores <= 1)))


#: Equal-width probability bins of the expected calibration error.
CALIBRATION_BINS = 10


def calibration_error(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Expected calibration error: over ten equal-width bins of probability, the gap
    between the mean probability and the share of positives, weighted by the bin's
    studies. A model trained with class weights reads high; its threshold, chosen on
    validation, still classifies well, but its probability is not a frequency."""
    labels = np.asarray(labels, dtype=np.float64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if not _are_probabilities(probabilities):
        return float("nan")
    bins = np.minimum((probabilities * CALIBRATION_BINS).astype(int), CALIBRATION_BINS - 1)
    said = np.bincount(bins, probabilities, minlength=CALIBRATION_BINS)
    seen = np.bincount(bins, labels, minlength=CALIBRATION_BINS)
    return float(np.abs(said - seen).sum() / len(probabilities))


def dice(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Dice overlap of two boolean masks (1.0 when both are empty)."""
    predicted, truth = np.asarray(predicted, bool), np.asarray(truth, bool)
    total = predicted.sum() + truth.sum()
    return 1.0 if total == 0 else float(2 * (predicted & truth).sum() / total)


def jaccard(predicted: np.ndarray, truth: np.ndarray) -> float:
    predicted, truth = np.asarray(predicted, bool), np.asarray(truth, bool)
    union = (predicted | truth).sum()
    return 1.0 if union == 0 else float((predicted & truth).sum() / union)


#: Bootstrap resamples behind a confidence interval: the percentiles of 1,000 move by
#: well under 0.01 from one seed to another on a test split of a few hundred studies.
RESAMPLES = 1000


def _percentiles(values: np.ndarray, level: float) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if not len(values):
        return float("nan"), float("nan")
    tail = 50.0 * (1.0 - level)
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return round(float(low), 4), round(float(high), 4)


def bootstrap_intervals(
    labels: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    resamples: int = RESAMPLES,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """Percentile confidence intervals of the study metrics at a fixed threshold.

    The bootstrap resamples positives and negatives separately, each as many as the split
    holds (a stratified bootstrap, as pROC's default): every resample has both classes and
    the prevalence of the split, so accuracy and F1 vary only with the model's errors. The
    threshold stays the one chosen on validation. Deterministic for a given seed."""
    labels = np.asarray(labels, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    positive, negative = scores[labels], scores[~labels]
    if not len(positive) or not len(negative) or resamples < 1:
        return {}
    rng = np.random.default_rng(seed)
    names: tuple[str, ...] = (
        "auc",
        "accuracy",
        "sensitivity",
        "specificity",
        "f1",
        "balanced_accuracy",
    )
    if _are_probabilities(scores):
        names += ("brier", "ece")
    truth = np.r_[np.ones(len(positive), bool), np.zeros(len(negative), bool)]
    values = {name: np.empty(resamples) for name in names}
    for k in range(resamples):
        resample = np.concatenate(
            [
                positive[rng.integers(0, len(positive), len(positive))],
                negative[rng.integers(0, len(negative), len(negative))],
            ]
        )
        metrics = binary_metrics(truth, resample, threshold)
        for name in names:
            values[name][k] = getattr(metrics, name)
    return {name: _percentiles(values[name], level) for name in names}


def clustered_auc_interval(
    labels: list[np.ndarray],
    scores: list[np.ndarray],
    resamples: int = RESAMPLES,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Confidence interval of the AUC of items grouped in clusters (slices in studies):
    whole studies are resampled, since the slices of one study are not independent."""
    rng = np.random.default_rng(seed)
    labels = [np.asarray(x, dtype=bool) for x in labels]
    scores = [np.asarray(x, dtype=np.float64) for x in scores]
    values = np.empty(resamples)
    for k in range(resamples):
        picked = rng.integers(0, len(labels), len(labels))
        truth = np.concatenate([labels[i] for i in picked])
        predicted = np.concatenate([scores[i] for i in picked])
        values[k] = roc_auc(truth, predicted)  # NaN where the resample has one class
    return _percentiles(values, level)


def mean_interval(
    values: np.ndarray, resamples: int = RESAMPLES, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Bootstrap confidence interval of a mean (Dice over the positive studies)."""
    values = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (resamples, len(values)))].mean(axis=1)
    return _percentiles(means, level)


def finite_or_null(value: Any) -> Any:
    """A figure a split cannot define (sensitivity without positives) is NaN in Python and
    null in JSON: NaN is not JSON, and strict parsers refuse it. Goes into dicts, lists
    and tuples."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite_or_null(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_null(item) for item in value]
    return value
