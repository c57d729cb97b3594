"""Patient-grouped K-fold cross-validation: honest figures for a site's small dataset.

A 70/15/15 split of 30 patients tests four or five studies, and its intervals mean
little. Here every patient is tested exactly once, by a model that never saw any of
their studies; each fold chooses its epoch and its threshold on an inner validation
part of its own training patients, so no figure is tuned on the studies it reports.
Pooled figures put all out-of-fold predictions together, each called at its own fold's
threshold, with intervals from resampling whole patients.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from assistant.analysis.model.card import CARD_FILE, ModelCard, read_card
from assistant.analysis.model.network import CnnRnn
from assistant.training.acgan import AcganConfig
from assistant.training.datasets import (
    SPLITS,
    DatasetSpecError,
    DicomFolders,
    MixedStudies,
    RoutedStudies,
    StudyDataset,
    SyntheticHeads,
    parse_spec,
)
from assistant.training.metrics import (
    RESAMPLES,
    THRESHOLD_RULES,
    binary_metrics,
    finite_or_null,
    roc_auc,
)
from assistant.training.run import (
    Recipe,
    _starting_point,
    balance_with_acgan,
    network_for,
    threshold_rule_for,
    write_predictions_csv,
)
from assistant.training.trainer import score, seed_everything, train

#: Fewer studies of a class than this in a fold's test set, or in the part a fold learns
#: or chooses from, and the figures of that class are too loose to read alone: warned.
MIN_CLASS_STUDIES = 10
#: The inner validation part is about 1/INNER_FOLDS of a fold's training patients (fewer
#: folds, so a larger part, where the rarer class has fewer patients than this).
INNER_FOLDS = 5
#: Two-sided 95 % normal quantile, for Wilson intervals.
_Z95 = 1.959964


@dataclass(frozen=True, eq=False)
class Pool:
    """Every study a SPEC names, whatever split the SPEC would put it in, with its patient."""

    spec: str
    parts: tuple[StudyDataset, ...]
    #: (part, index within the part) of each study.
    members: tuple[tuple[int, int], ...]
    patients: tuple[str, ...]
    keys: tuple[str, ...]
    labels: np.ndarray
    #: How studies were grouped into patients, in words.
    grouping: str

    def __len__(self) -> int:
        return len(self.members)

    def subset(self, indices: Sequence[int] | np.ndarray) -> Selection:
        return Selection(self, indices)


class Selection(RoutedStudies):
    """Some studies of a pool, as a dataset the trainer reads (a fold's train, val or test)."""

    def __init__(self, pool: Pool, indices: Sequence[int] | np.ndarray) -> None:
        self.pool = pool
        self.indices = [int(i) for i in indices]
        first = pool.parts[0]
        self.name = f"{first.name} ({len(self.indices)} of {len(pool)} studies)"
        self.in_channels = first.in_channels
        self.image_size = first.image_size
        self.input_mask = first.input_mask

    def _locate(self, index: int) -> tuple[StudyDataset, int]:
        part, within = self.pool.members[self.indices[index]]
        return self.pool.parts[part], within

    def __len__(self) -> int:
        return len(self.indices)

    def labels(self) -> np.ndarray:
        return self.pool.labels[self.indices].copy()

    def patients(self) -> set[str]:
        return {self.pool.patients[i] for i in self.indices}


def load_pool(spec: str, init: Path | None = None) -> Pool:
    """All studies of `spec` with their patients; read as the model in `init` reads, if given.

    medmnist is refused: its files carry no patient identifiers, so the volumes of one
    patient could be trained on and tested at once."""
    if spec.partition(":")[0] == "medmnist":
        raise DatasetSpecError(
            "cross-validation needs to know which studies share a patient, and a MedMNIST "
            "file does not say: use its own train/val/test splits (radassist evaluate "
            "--split test), or cross-validate dicom:DIR:LABELS.csv or synthetic[:N]"
        )
    parts = tuple(parse_spec(spec, split) for split in SPLITS)
    members: list[tuple[int, int]] = []
    patients: list[str] = []
    keys: list[str] = []
    groupings: set[str] = set()
    for number, part in enumerate(parts):
        if isinstance(part, DicomFolders):
            for within, row in enumerate(part.rows):
                groupings.add("patient column" if row.get("patient") else "series")
                patients.append(row.get("patient") or row["series"])
                keys.append(row["series"])
                members.append((number, within))
        elif isinstance(part, SyntheticHeads):
            part.refresh = 0.0  # a case must stay the same case from fold to fold
            groupings.add("synthetic")
            for within in range(len(part)):
                patients.append(f"synthetic-{part.split}-{within}")
                keys.append(patients[-1])
                members.append((number, within))
        else:
            raise DatasetSpecError(f"cannot cross-validate {spec!r}: patients unknown")
    if init is not None and isinstance(parts[0], DicomFolders):
        reads = read_card(init)  # a site's series: read as the model reads
        for part in parts:
            part.image_size, part.input_mask = reads.image_size, reads.input_mask
    labels = np.concatenate([part.labels() for part in parts]).astype(int)
    return Pool(
        spec, parts, tuple(members), tuple(patients), tuple(keys), labels, _grouping(groupings)
    )


def _grouping(kinds: set[str]) -> str:
    """How studies were grouped into patients, to follow "patients grouped by"."""
    if kinds == {"synthetic"}:
        return "case (each synthetic case is its own patient)"
    if kinds == {"patient column"}:
        return "the CSV's patient column"
    if kinds == {"series"}:
        return "series (the CSV has no patient column: each series counts as a patient)"
    return "the CSV's patient column (by series where a row leaves it empty)"


def stratified_group_folds(
    patients: Sequence[str], labels: Sequence[int] | np.ndarray, folds: int, seed: int
) -> np.ndarray:
    """The fold (0 to folds-1) of each study: all studies of a patient in one fold, and
    each class's studies spread over the folds as evenly as whole patients allow.

    Greedy, in the manner of scikit-learn's StratifiedGroupKFold: patients in a seeded
    random order, then those with the most studies of the rarer class first (the hardest
    to place), each put in the fold where the spread of per-class counts over the folds
    stays smallest (ties: the smaller fold, then the lower number). Deterministic by seed.
    """
    labels = np.asarray(labels, dtype=int)
    names = sorted(set(patients))
    if folds < 2:
        raise DatasetSpecError(f"cross-validation needs at least 2 folds, not {folds}")
    if folds > len(names):
        raise DatasetSpecError(
            f"{folds} folds need at least {folds} patients; the data has {len(names)}"
        )
    row = {name: number for number, name in enumerate(names)}
    counts = np.zeros((len(names), 2), dtype=int)
    for patient, label in zip(patients, labels, strict=True):
        counts[row[patient], int(label)] += 1
    rare = int(np.argmin(counts.sum(axis=0)))
    shuffled = np.random.default_rng(seed).permutation(len(names))
    order = sorted(shuffled, key=lambda p: (-counts[p, rare], -counts[p].sum()))
    totals = np.maximum(counts.sum(axis=0), 1)
    per_fold = np.zeros((folds, 2), dtype=int)
    fold_of = np.zeros(len(names), dtype=int)
    for patient in order:

        def cost(fold: int, patient: int = patient) -> tuple[float, int, int]:
            trial = per_fold.copy()
            trial[fold] += counts[patient]
            return float((trial / totals).std(axis=0).sum()), int(per_fold[fold].sum()), fold

        best = min(range(folds), key=cost)
        per_fold[best] += counts[patient]
        fold_of[patient] = best
    return np.array([fold_of[row[patient]] for patient in patients], dtype=int)


def inner_split(
    patients: Sequence[str], labels: np.ndarray, train: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """A fold's training studies (indices into the pool) split again by patient: what the
    network learns from, and the inner validation part that picks its epoch and threshold.
    The inner part is about 1/INNER_FOLDS of the patients, or larger where fewer patients
    have the rarer class, so that it holds one of them."""
    names = [patients[i] for i in train]
    sub_labels = labels[train]
    with_class = [
        len({name for name, label in zip(names, sub_labels, strict=True) if label == c})
        for c in (0, 1)
    ]
    count = max(2, min(INNER_FOLDS, *with_class))
    if len(set(names)) < 2:
        raise DatasetSpecError("a fold's training part needs at least 2 patients: use fewer folds")
    inner = stratified_group_folds(names, sub_labels, count, seed)
    return train[inner != 0], train[inner == 0]


@dataclass(frozen=True)
class FoldPlan:
    """Which studies (pool indices) a fold learns from, chooses on, and is tested on."""

    fold: int
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def plan_folds(pool: Pool, folds: int, seed: int) -> list[FoldPlan]:
    """The K folds of a pool: patient-grouped and stratified, each with its inner part."""
    assignment = stratified_group_folds(pool.patients, pool.labels, folds, seed)
    plans = []
    for fold in range(folds):
        rest = np.flatnonzero(assignment != fold)
        train, val = inner_split(pool.patients, pool.labels, rest, seed + 7919 * (fold + 1))
        plans.append(FoldPlan(fold, train, val, np.flatnonzero(assignment == fold)))
    return plans


def _train_fold(
    pool: Pool, plan: FoldPlan, recipe: Recipe, work: Path, progress: bool
) -> tuple[CnnRnn, float, int]:
    """Train one fold: the network, its threshold (chosen on the inner part) and best epoch."""
    own_train, own_val = pool.subset(plan.train), pool.subset(plan.val)
    digest = hashlib.sha256(",".join(sorted(own_train.patients())).encode()).hexdigest()
    train_set: StudyDataset = own_train
    val_set: StudyDataset = own_val
    if recipe.replay is not None:
        train_set = MixedStudies([train_set, parse_spec(recipe.replay, "train")])
        val_set = MixedStudies([val_set, parse_spec(recipe.replay, "val")])
    start = f", from {recipe.init}" if recipe.init else ""
    mixed = f", replay {recipe.replay}" if recipe.replay else ""
    run_id = f"{pool.spec} | cv fold {plan.fold + 1}{start}{mixed}, training patients {digest[:16]}"
    config = recipe.config(pool.spec, run_id)
    seed_everything(recipe.seed)
    if recipe.init is None:
        network = CnnRnn(network_for(train_set))
    else:
        network = _starting_point(recipe.init, train_set)[0]
    result = train(network, train_set, val_set, config, work, progress=progress)
    network.to("cpu")
    threshold = result.threshold
    if recipe.augment == "acgan":
        steps = recipe.acgan_steps or AcganConfig.steps
        balance_with_acgan(network, train_set, val_set, AcganConfig(steps=steps, seed=recipe.seed))
        val_scores, _ = score(network, val_set)
        threshold = THRESHOLD_RULES[config.threshold_rule](val_set.labels(), val_scores)
    return network, float(threshold), result.best_epoch


def wilson_interval(successes: int, trials: int) -> tuple[float, float] | None:
    """95 % Wilson score interval of a proportion; None with fewer than 2 trials (not
    measurable). Unlike the bootstrap it is never of width zero at 0 % or 100 %."""
    if trials < 2:
        return None
    p = successes / trials
    centre = (p + _Z95**2 / (2 * trials)) / (1 + _Z95**2 / trials)
    half = _Z95 * math.sqrt(p * (1 - p) / trials + _Z95**2 / (4 * trials**2))
    half /= 1 + _Z95**2 / trials
    return round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)


def _fold_row(
    pool: Pool, plan: FoldPlan, scores: np.ndarray, threshold: float, best_epoch: int
) -> dict[str, Any]:
    labels = pool.labels[plan.test]
    metrics = binary_metrics(labels, scores, threshold)
    predicted = scores >= threshold
    positives, negatives = int(labels.sum()), int((1 - labels).sum())
    return {
        "fold": plan.fold + 1,
        "patients": len({pool.patients[i] for i in plan.test}),
        "n": metrics.n,
        "positives": metrics.positives,
        "auc": round(metrics.auc, 4),
        "sensitivity": round(metrics.sensitivity, 4),
        "specificity": round(metrics.specificity, 4),
        "accuracy": round(metrics.accuracy, 4),
        "threshold": round(threshold, 6),
        "best_epoch": best_epoch,
        "train_studies": len(plan.train),
        "train_positives": int(pool.labels[plan.train].sum()),
        "val_studies": len(plan.val),
        "val_positives": int(pool.labels[plan.val].sum()),
        "ci95": {
            "sensitivity": wilson_interval(int((predicted & (labels == 1)).sum()), positives),
            "specificity": wilson_interval(int((~predicted & (labels == 0)).sum()), negatives),
        },
    }


def _proportions(labels: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    positive, negative = labels == 1, labels == 0
    return {
        "sensitivity": float(predicted[positive].mean()) if positive.any() else math.nan,
        "specificity": float((~predicted[negative]).mean()) if negative.any() else math.nan,
        "accuracy": float((predicted == positive).mean()) if len(labels) else math.nan,
    }


def patient_bootstrap(
    labels: np.ndarray,
    scores: np.ndarray,
    predicted: np.ndarray,
    patients: Sequence[str],
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """Percentile 95 % intervals of AUC, sensitivity, specificity and accuracy, resampling
    whole patients (a patient's studies are not independent), separately among patients
    with a positive study and those without, so each resample keeps both classes."""
    by_patient: dict[str, list[int]] = {}
    for index, patient in enumerate(patients):
        by_patient.setdefault(patient, []).append(index)
    groups = list(by_patient.values())
    has_positive = [bool(labels[g].any()) for g in groups]
    strata = [
        [g for g, flag in zip(groups, has_positive, strict=True) if flag == want]
        for want in (True, False)
    ]
    rng = np.random.default_rng(seed)
    values: dict[str, list[float]] = {
        "auc": [],
        "sensitivity": [],
        "specificity": [],
        "accuracy": [],
    }
    for _ in range(resamples):
        picked = [
            index
            for stratum in strata
            if stratum
            for g in rng.integers(0, len(stratum), len(stratum))
            for index in stratum[g]
        ]
        chosen = np.array(picked, dtype=int)
        values["auc"].append(roc_auc(labels[chosen], scores[chosen]))
        for name, value in _proportions(labels[chosen], predicted[chosen]).items():
            values[name].append(value)
    intervals = {}
    for name, series in values.items():
        finite = np.array([v for v in series if math.isfinite(v)])
        if len(finite):
            low, high = np.percentile(finite, [2.5, 97.5])
            intervals[name] = (round(float(low), 4), round(float(high), 4))
    return intervals


def pooled_metrics(
    labels: np.ndarray,
    scores: np.ndarray,
    thresholds: np.ndarray,
    patients: Sequence[str],
    resamples: int = RESAMPLES,
) -> dict[str, Any]:
    """Figures of all out-of-fold predictions together, each study called at its own
    fold's threshold, with patient-resampled intervals. An interval is None where a class
    has fewer than 2 studies (not measurable); where the bootstrap gives one of width zero
    (every resample alike, e.g. all positives found), a proportion gets its Wilson interval."""
    predicted = scores >= thresholds
    positives, negatives = int(labels.sum()), int(len(labels) - labels.sum())
    values = {"auc": roc_auc(labels, scores), **_proportions(labels, predicted)}
    intervals = (
        patient_bootstrap(labels, scores, predicted, patients, resamples) if resamples else {}
    )
    counts = {
        "auc": min(positives, negatives),
        "sensitivity": positives,
        "specificity": negatives,
        "accuracy": len(labels),
    }
    hits = {
        "sensitivity": (int(predicted[labels == 1].sum()), positives),
        "specificity": (int((~predicted[labels == 0]).sum()), negatives),
        "accuracy": (int((predicted == (labels == 1)).sum()), len(labels)),
    }
    ci95: dict[str, tuple[float, float] | None] = {}
    notes = []
    for name in values:
        interval = intervals.get(name)
        if counts[name] < 2:
            interval = None
            notes.append(f"{name}: not measurable ({counts[name]} studies of a class)")
        elif interval is not None and interval[0] == interval[1] and name in hits:
            interval = wilson_interval(*hits[name])
            notes.append(f"{name}: every resample alike; Wilson interval instead")
        elif interval is not None and interval[0] == interval[1]:
            interval = None
            notes.append(f"{name}: every resample alike; interval not measurable")
        ci95[name] = interval
    return {
        **{name: round(value, 4) for name, value in values.items()},
        "n": len(labels),
        "positives": positives,
        "patients": len(set(patients)),
        "ci95": ci95 if resamples else {},
        "interval_method": (
            f"{resamples} bootstrap resamples of whole patients, stratified by whether a "
            "patient has a positive study"
            if resamples
            else "none"
        ),
        "interval_notes": notes,
    }


def _spread(successes: int, trials: int) -> str:
    interval = wilson_interval(successes, trials)
    if interval is None:
        return "not measurable"
    return f"±{(interval[1] - interval[0]) / 2:.2f} (95 % Wilson interval {interval[0]:.2f}-{interval[1]:.2f})"


def fold_warnings(row: dict[str, Any]) -> list[str]:
    """What a fold's counts make unreliable: a test class under MIN_CLASS_STUDIES studies
    (its sensitivity or specificity is loose, or not measurable with one study or none),
    and a training or inner validation part short of either class."""
    fold = row["fold"]
    found = []
    tests = {
        "positive": (row["positives"], "sensitivity"),
        "negative": (row["n"] - row["positives"], "specificity"),
    }
    for kind, (count, metric) in tests.items():
        if count < MIN_CLASS_STUDIES:
            value = row[metric]
            successes = round(value * count) if count and math.isfinite(value) else 0
            found.append(
                f"fold {fold} tests {count} {kind} stud{'y' if count == 1 else 'ies'}: "
                f"its {metric} is {_spread(successes, count)}"
            )
    for part, verb in (("train", "learns from"), ("val", "chooses its epoch and threshold on")):
        positives = row[f"{part}_positives"]
        short = [
            f"{count} {kind}"
            for kind, count in (
                ("positive", positives),
                ("negative", row[f"{part}_studies"] - positives),
            )
            if count < MIN_CLASS_STUDIES
        ]
        if short:
            found.append(f"fold {fold} {verb} {' and '.join(short)} studies only")
    return found


def cross_validate(
    spec: str,
    folds: int,
    recipe: Recipe,
    out: Path | None = None,
    resamples: int = RESAMPLES,
    progress: bool = False,
    model: str = "",
) -> dict[str, Any]:
    """Run the K folds of `recipe` on `spec`; the report (JSON-ready: NaN as None).

    Each fold's metrics.json and predictions.csv go to OUT/cv/fold-K/ (its training
    checkpoint below it), the report to OUT/cv/report.json; without `out`, to a temporary
    folder that is removed afterwards."""
    with _work_folder(out) as work:
        pool = load_pool(spec, recipe.init)
        plans = plan_folds(pool, folds, recipe.seed)
        scores = np.full(len(pool), math.nan)
        thresholds = np.full(len(pool), math.nan)
        fold_of = np.zeros(len(pool), dtype=int)
        rows = []
        for plan in plans:
            folder = work / "cv" / f"fold-{plan.fold + 1}"
            network, threshold, best_epoch = _train_fold(
                pool, plan, recipe, folder / "training", progress
            )
            fold_scores, _ = score(network, pool.subset(plan.test))
            scores[plan.test], thresholds[plan.test], fold_of[plan.test] = (
                fold_scores,
                threshold,
                plan.fold + 1,
            )
            row = _fold_row(pool, plan, fold_scores, threshold, best_epoch)
            rows.append(row)
            keys = [pool.keys[i] for i in plan.test]
            write_predictions_csv(
                folder / "predictions.csv", keys, pool.labels[plan.test], fold_scores, threshold
            )
            _write_json(folder / "metrics.json", finite_or_null(row))
        report = _report(pool, recipe, rows, scores, thresholds, fold_of, resamples)
        if model:
            report = {"model": model, **report}
        _write_json(work / "cv" / "report.json", report)
    return report


def evaluate_recipe(
    model_dir: Path,
    spec: str,
    folds: int,
    *,
    epochs: int | None,
    seed: int = 0,
    device: str = "cpu",
    out: Path | None = None,
    resamples: int = RESAMPLES,
    progress: bool = False,
) -> dict[str, Any]:
    """Cross-validate fine-tuning from the model in `model_dir` (its weights, image size,
    windows and threshold rule): what its recipe does on this data, not its fixed weights."""
    card = read_card(model_dir)
    recipe = Recipe(
        epochs=epochs,
        seed=seed,
        device=device,
        init=model_dir,
        threshold_rule=str(card.training.get("threshold_rule", "")),
        replay=card.training.get("replay"),
    )
    return cross_validate(
        spec, folds, recipe, out, resamples, progress, f"{card.name} {card.version}"
    )


@contextmanager
def _work_folder(out: Path | None) -> Iterator[Path]:
    """OUT itself, or a temporary folder removed afterwards."""
    if out is not None:
        yield out
        return
    temporary = Path(tempfile.mkdtemp(prefix="radassist-cv-"))
    try:
        yield temporary
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def _report(
    pool: Pool,
    recipe: Recipe,
    rows: list[dict[str, Any]],
    scores: np.ndarray,
    thresholds: np.ndarray,
    fold_of: np.ndarray,
    resamples: int,
) -> dict[str, Any]:
    pooled = pooled_metrics(pool.labels, scores, thresholds, pool.patients, resamples)
    warnings = [line for row in rows for line in fold_warnings(row)]
    for kind, count in (
        ("positive", pooled["positives"]),
        ("negative", pooled["n"] - pooled["positives"]),
    ):
        if count < MIN_CLASS_STUDIES:
            warnings.append(
                f"the whole dataset holds {count} {kind} studies: every figure is loose"
            )
    rule = recipe.threshold_rule or threshold_rule_for(pool.spec)
    return finite_or_null(
        {
            "dataset": pool.spec,
            "folds": len(rows),
            "seed": recipe.seed,
            "grouping": pool.grouping,
            "patients": len(set(pool.patients)),
            "studies": len(pool),
            "positives": int(pool.labels.sum()),
            "recipe": {
                "start": f"fine-tuned from {recipe.init}" if recipe.init else "from scratch",
                "epochs": recipe.config(pool.spec, "").epochs,
                "augment": recipe.augment,
                **({"replay": recipe.replay} if recipe.replay else {}),
                "threshold_rule": rule,
                "chosen_on": "an inner validation part of each fold's training patients",
            },
            "per_fold": rows,
            "pooled": pooled,
            "warnings": warnings,
            "predictions": [
                {
                    "study": pool.keys[i],
                    "patient": pool.patients[i],
                    "fold": int(fold_of[i]),
                    "label": int(pool.labels[i]),
                    "probability": round(float(scores[i]), 6),
                    "threshold": round(float(thresholds[i]), 6),
                }
                for i in range(len(pool))
            ],
        }
    )


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(temp, path)


def card_summary(report: dict[str, Any]) -> dict[str, Any]:
    """What a model card keeps of a cross-validation: no per-study predictions."""
    keep = ("fold", "patients", "n", "positives", "auc", "sensitivity", "specificity", "threshold")
    return {
        **{key: report[key] for key in ("folds", "seed", "grouping", "patients", "studies")},
        "recipe": report["recipe"],
        "pooled": report["pooled"],
        "per_fold": [{key: row[key] for key in keep} for row in report["per_fold"]],
        "warnings": report["warnings"],
    }


def record_in_card(model_dir: Path, report: dict[str, Any]) -> ModelCard:
    """Add the cross-validation's summary to the model card in `model_dir` as metrics["cv"]."""
    card = read_card(model_dir)
    card = card.with_updates(metrics={**card.metrics, "cv": card_summary(report)})
    temp = model_dir / f".{CARD_FILE}.tmp"
    temp.write_text(card.to_json(), encoding="utf-8")
    os.replace(temp, model_dir / CARD_FILE)
    return card


def _figure(value: Any, interval: Any, count: int) -> str:
    """A fold's sensitivity or specificity from `count` studies of its class: with one
    study or none it is not measurable, whatever the arithmetic gives."""
    if value is None or count < 2:
        return f"not measurable ({count})"
    return f"{value:.3f} ({interval[0]:.2f}-{interval[1]:.2f})"


def report_lines(report: dict[str, Any]) -> Iterator[str]:
    """The report as a table a person reads: per fold, pooled, warnings."""
    recipe = report["recipe"]
    yield (
        f"{report['folds']}-fold cross-validation of {report['dataset']}: {report['patients']} "
        f"patients, {report['studies']} studies ({report['positives']} positive); patients "
        f"grouped by {report['grouping']}"
    )
    yield (
        f"recipe: {recipe['start']}, at most {recipe['epochs']} epoch(s); epoch and threshold "
        f"({recipe['threshold_rule']}) chosen on {recipe['chosen_on']}"
    )
    yield f"{'fold':>4} {'patients':>8} {'n':>4} {'pos':>4}  {'AUC':<7} {'sensitivity':<26} {'specificity':<26} threshold"
    for row in report["per_fold"]:
        negatives = row["n"] - row["positives"]
        measurable = row["auc"] is not None and min(row["positives"], negatives) >= 2
        auc = f"{row['auc']:.3f}" if measurable else "n/m"
        sens = _figure(row["sensitivity"], row["ci95"]["sensitivity"], row["positives"])
        spec = _figure(row["specificity"], row["ci95"]["specificity"], negatives)
        yield (
            f"{row['fold']:>4} {row['patients']:>8} {row['n']:>4} {row['positives']:>4}  "
            f"{auc:<7} {sens:<26} {spec:<26} {row['threshold']:.4f}"
        )
    yield (
        "  (per-fold intervals: 95 % Wilson; n/m or not measurable (count): the fold tests "
        "one study of that class or none)"
    )
    pooled = report["pooled"]
    yield (
        f"pooled out-of-fold, each study at its own fold's threshold: n={pooled['n']}, "
        f"{pooled['positives']} positive, {pooled['patients']} patients"
    )
    for name in ("auc", "sensitivity", "specificity", "accuracy"):
        interval = pooled["ci95"].get(name)
        if pooled[name] is None:
            text = "not measurable"
        elif interval is None:
            text = (
                f"{pooled[name]:<7} (95% CI not measurable)"
                if pooled["ci95"]
                else f"{pooled[name]}"
            )
        else:
            text = f"{pooled[name]:<7} (95% CI {interval[0]:.4f}-{interval[1]:.4f})"
        yield f"  {name:<12} {text}"
    yield f"  (intervals: {pooled['interval_method']}; the AUC ranks the folds' probabilities together)"
    for note in pooled["interval_notes"]:
        yield f"  ({note})"
    for warning in report["warnings"]:
        yield f"warning: {warning}"
