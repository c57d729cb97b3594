"""Two models on the same studies: what `radassist compare A B` does.

Each model reads the split as its own card says (image size, input mask, windows), so a
128-pixel model and a 256-pixel one are each scored on what they were made to read, and
each calls a study positive at its own card's threshold. The two are then compared on
the same studies:

- each model's AUC, sensitivity and specificity, with n and the positives;
- the differences (B - A), each with a paired bootstrap 95 % interval: one resample of
  the studies (of the patients, where the dataset groups studies by patient: a patient's
  series are not independent) serves both models, so what is shared between them cancels
  and the interval is that of the difference, not of two separate figures;
- McNemar's exact test on the calls: of the studies one model called right and the other
  wrong, does either side hold more than chance (a two-sided binomial test at 1/2)?

The threshold stays each card's: nothing here is tuned on the split compared on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from assistant.analysis.imaging import DEFAULT_WINDOWS
from assistant.analysis.inference.predict import CONTRACT
from assistant.analysis.model.card import ModelCard
from assistant.analysis.model.folder import LoadedModel, load_model
from assistant.training.datasets import (
    DatasetSpecError,
    DicomFolders,
    StudyDataset,
    SyntheticHeads,
    parse_spec,
)
from assistant.training.metrics import RESAMPLES, binary_metrics, roc_auc
from assistant.training.trainer import score

#: The figures compared, in the order the table lists them.
METRICS = ("auc", "sensitivity", "specificity")


@dataclass(frozen=True)
class Reading:
    """One model's reading of a split: its card, the dataset as it read it, and each
    study's probability (in the dataset's order)."""

    card: ModelCard
    dataset: StudyDataset
    probabilities: np.ndarray


def read_as_model(spec: str, split: str, card: ModelCard) -> StudyDataset:
    """The split of `spec` as the model of `card` reads it: its image size and input mask
    for data we window ourselves (phantoms, DICOM series); DatasetSpecError where the
    data cannot be what the model reads (other channels, windows or a fixed size)."""
    dataset = parse_spec(spec, split)
    if isinstance(dataset, SyntheticHeads | DicomFolders):
        dataset.image_size, dataset.input_mask = card.image_size, card.input_mask
        if tuple(card.windows) != DEFAULT_WINDOWS:
            raise DatasetSpecError(
                f"{card.ref} reads windows {[w.name for w in card.windows]}; {spec} gives "
                f"{[w.name for w in DEFAULT_WINDOWS]}"
            )
    channels = len(card.windows) or card.network.in_channels
    if channels != dataset.in_channels or card.image_size != dataset.image_size:
        raise DatasetSpecError(
            f"{card.ref} reads {channels} channels of {card.image_size}² px; {spec} gives "
            f"{dataset.in_channels} of {dataset.image_size}² px"
        )
    return dataset


def study_probabilities(loaded: LoadedModel, dataset: StudyDataset) -> np.ndarray:
    """Each study's probability by the model, as `evaluate` scores it: the mean over the
    study's views. Our network goes through the trainer's `score`; a TorchScript program
    is called once per view on the view's stacked slices [N, C, S, S], per its contract."""
    if loaded.network is not None:
        scores, _ = score(loaded.network, dataset)
        return scores
    program = loaded.program
    if program is None:
        raise ValueError(f"{loaded.card.ref} holds neither a network nor a program")
    return np.array(
        [
            np.mean([_program_probability(program, view.slices) for view in dataset.views(i)])
            for i in range(len(dataset))
        ]
    )


@torch.inference_mode()
def _program_probability(program: torch.jit.ScriptModule, slices: np.ndarray) -> float:
    """A TorchScript program's study probability for one stack; ValueError when what it
    returns breaks the contract."""
    out = program(torch.from_numpy(np.ascontiguousarray(slices, dtype=np.float32)))
    study = out[0] if isinstance(out, tuple | list) and len(out) == 3 else None
    if not isinstance(study, torch.Tensor) or study.numel() != 1:
        raise ValueError(f"the TorchScript model returned no study probability; {CONTRACT}")
    probability = float(study.reshape(()))
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"the TorchScript model returned probability {probability}; {CONTRACT}")
    return probability


def read_split(folder: Path, spec: str, split: str, same_as: Reading | None = None) -> Reading:
    """Load the model in `folder` (its weights' hash checked) and score the split as it
    reads it; reusing `same_as`'s dataset (and what it has read and cached) where that
    model reads the data the same way."""
    loaded = load_model(folder)
    card = loaded.card
    if same_as is not None and _reads(same_as.card) == _reads(card):
        dataset = same_as.dataset
    else:
        dataset = read_as_model(spec, split, card)
    return Reading(card, dataset, study_probabilities(loaded, dataset))


def _reads(card: ModelCard) -> tuple[object, ...]:
    """What decides how a model reads the data."""
    return (card.image_size, card.input_mask, tuple(card.windows), card.network.in_channels)


def study_groups(dataset: StudyDataset) -> tuple[np.ndarray, str]:
    """Each study's group for the bootstrap (an index) and what a group is: the patient
    where the dataset's labels name one (DICOM series with a patient column), else the
    study itself."""
    if isinstance(dataset, DicomFolders) and any(r.get("patient") for r in dataset.rows):
        names = [r.get("patient") or f"series:{r['series']}" for r in dataset.rows]
        _, groups = np.unique(np.array(names), return_inverse=True)
        return groups.astype(np.int64), "patient"
    return np.arange(len(dataset), dtype=np.int64), "study"


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar p-value: under "neither model is better", each of the
    a_only + b_only discordant studies is equally likely to go either way, so the smaller
    count is binomial(n, 1/2). Computed in exact fractions; 1.0 with no discordant study."""
    if a_only < 0 or b_only < 0:
        raise ValueError(f"discordant counts must be >= 0, not {a_only} and {b_only}")
    n = a_only + b_only
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(a_only, b_only) + 1))
    return float(min(Fraction(1), Fraction(2 * tail, 2**n)))


def _figures(labels: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """AUC, sensitivity and specificity (METRICS order); NaN where undefined."""
    metrics = binary_metrics(labels, scores, threshold)
    return np.array([roc_auc(labels, scores), metrics.sensitivity, metrics.specificity])


def paired_bootstrap(
    labels: np.ndarray,
    groups: np.ndarray,
    scores_a: np.ndarray,
    scores_b: np.ndarray,
    thresholds: tuple[float, float],
    resamples: int = RESAMPLES,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, tuple[float, float] | None]:
    """Percentile intervals of B - A for each of METRICS. Each resample draws the groups
    (patients or studies) with replacement, as many as there are, and keeps every study
    of a group drawn; both models are scored on that same resample. A resample without
    positives (or negatives) says nothing of sensitivity (specificity) or AUC and is left
    out of that figure's interval; None where no resample defines it. Deterministic for a
    given seed."""
    labels = np.asarray(labels, dtype=bool)
    count = int(groups.max()) + 1 if len(groups) else 0
    if resamples < 1 or count == 0:
        return dict.fromkeys(METRICS)
    rng = np.random.default_rng(seed)
    differences = np.empty((resamples, len(METRICS)))
    studies = np.arange(len(labels))
    for k in range(resamples):
        drawn = np.bincount(rng.integers(0, count, count), minlength=count)
        picked = np.repeat(studies, drawn[groups])
        truth = labels[picked]
        differences[k] = _figures(truth, scores_b[picked], thresholds[1]) - _figures(
            truth, scores_a[picked], thresholds[0]
        )
    tail = 50.0 * (1.0 - level)
    intervals: dict[str, tuple[float, float] | None] = {}
    for column, name in enumerate(METRICS):
        values = differences[:, column]
        values = values[np.isfinite(values)]
        if not len(values):
            intervals[name] = None
            continue
        low, high = np.percentile(values, [tail, 100.0 - tail])
        intervals[name] = (_rounded(float(low)), _rounded(float(high)))
    return intervals


def _rounded(value: float) -> float:
    return round(value, 4) + 0.0  # + 0.0: no "-0.0" in the table or the JSON


def _listed(interval: tuple[float, float] | None) -> list[float] | None:
    return None if interval is None else list(interval)


def _finite(value: float) -> float | None:
    """A figure for the JSON: rounded, or None where the split cannot define it."""
    return _rounded(value) if math.isfinite(value) else None


def compare_scores(
    labels: np.ndarray,
    groups: np.ndarray,
    scores: tuple[np.ndarray, np.ndarray],
    thresholds: tuple[float, float],
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> dict[str, Any]:
    """The comparison of two models' probabilities on the same studies (pure numpy):
    "a" and "b" (each one's figures at its threshold), "difference" (B - A with its
    paired interval) and "mcnemar" (the discordant counts and the exact p-value)."""
    labels = np.asarray(labels, dtype=bool)
    scores_a, scores_b = (np.asarray(s, dtype=np.float64) for s in scores)
    if not len(labels) == len(scores_a) == len(scores_b) == len(groups):
        raise ValueError("labels, groups and both models' scores must cover the same studies")
    figures = [
        _figures(labels, s, t) for s, t in zip((scores_a, scores_b), thresholds, strict=True)
    ]
    right_a = (scores_a >= thresholds[0]) == labels
    right_b = (scores_b >= thresholds[1]) == labels
    a_only, b_only = int((right_a & ~right_b).sum()), int((~right_a & right_b).sum())
    intervals = paired_bootstrap(
        labels, groups, scores_a, scores_b, thresholds, resamples, seed=seed
    )
    return {
        **{
            side: {
                **{name: _finite(float(value)) for name, value in zip(METRICS, f, strict=True)},
                "threshold": float(threshold),
                "n": len(labels),
                "positives": int(labels.sum()),
            }
            for side, f, threshold in zip(("a", "b"), figures, thresholds, strict=True)
        },
        "difference": {
            name: {
                "value": _finite(float(figures[1][column] - figures[0][column])),
                "ci95": _listed(intervals[name]),
            }
            for column, name in enumerate(METRICS)
        },
        "mcnemar": {
            "a_right_b_wrong": a_only,
            "a_wrong_b_right": b_only,
            "discordant": a_only + b_only,
            "p_value": _rounded(mcnemar_exact(a_only, b_only)),
        },
        "bootstrap_resamples": resamples,
        "bootstrap_seed": seed,
    }


def compare_models(
    a: Path,
    b: Path,
    spec: str,
    split: str = "test",
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> dict[str, Any]:
    """Score the models in folders `a` and `b` on the same split, each as it reads it, and
    compare them (see compare_scores); the result is plain JSON-ready data that also
    names the models, the dataset and how the bootstrap was grouped."""
    first = read_split(a, spec, split)
    second = read_split(b, spec, split, same_as=first)
    labels = first.dataset.labels()
    # One SPEC and split give the same studies in one order, whatever the image size;
    # checked all the same, since the pairing is what the statistics rest on.
    if not np.array_equal(labels, second.dataset.labels()):
        raise DatasetSpecError(f"{spec} ({split}) gave the two models different studies")
    groups, grouped_by = study_groups(first.dataset)
    result = compare_scores(
        labels,
        groups,
        (first.probabilities, second.probabilities),
        (first.card.threshold, second.card.threshold),
        resamples,
        seed,
    )
    for side, reading in (("a", first), ("b", second)):
        card = reading.card
        result[side] = {
            "model": card.ref,
            "format": card.format,
            "weights_sha256": card.weights_sha256,
            "image_size": card.image_size,
            "input_mask": card.input_mask,
            **result[side],
        }
    return {
        "dataset": spec,
        "split": split,
        "grouped_by": grouped_by,
        "groups": int(groups.max()) + 1 if len(groups) else 0,
        **result,
    }
