"""`--cv K`: patient-grouped folds, each patient tested once by a model that never saw
them, thresholds chosen inside the training folds, and figures that say how loose they are."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from assistant.analysis.model.card import read_card
from assistant.cli import main
from assistant.training import crossval
from assistant.training.crossval import (
    fold_warnings,
    load_pool,
    plan_folds,
    pooled_metrics,
    stratified_group_folds,
    wilson_interval,
)
from assistant.training.datasets import DatasetSpecError, parse_spec
from assistant.training.metrics import THRESHOLD_RULES
from assistant.training.phantom_dicom import write_case
from assistant.training.phantoms import make_case

PATIENTS = 24


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A site's small dataset: 24 patients, every fourth with a second (follow-up)
    series, a third of them positive, and a labels CSV with a patient column."""
    root = tmp_path_factory.mktemp("site")
    rows = []
    for patient in range(PATIENTS):
        positive = patient % 3 == 0
        series = [("a", positive)] + ([("b", False)] if patient % 4 == 0 else [])
        for suffix, label in series:
            seed = 1000 + patient * 2 + (suffix == "b")
            name = f"p{patient:02d}{suffix}"
            case = make_case(seed, label, max_slices=4, matrix=32)
            write_case(case, root / name, patient_id=f"PAT{patient:02d}")
            rows.append({"series": name, "label": int(label), "patient": f"PAT{patient:02d}"})
    labels = root / "labels.csv"
    with labels.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, ["series", "label", "patient"])
        writer.writeheader()
        writer.writerows(rows)
    return f"dicom:{root}:{labels}"


def test_every_patient_is_tested_once_and_never_where_it_is_trained(site: str) -> None:
    pool = load_pool(site)
    assert len(set(pool.patients)) == PATIENTS and len(pool) == PATIENTS + PATIENTS // 4
    assert pool.grouping == "the CSV's patient column"
    plans = plan_folds(pool, 4, seed=0)
    tested = np.concatenate([plan.test for plan in plans])
    assert sorted(tested) == list(range(len(pool)))  # every study tested exactly once
    for plan in plans:
        parts = {
            name: {pool.patients[i] for i in getattr(plan, name)}
            for name in ("train", "val", "test")
        }
        assert not parts["train"] & parts["test"] and not parts["val"] & parts["test"]
        assert not parts["train"] & parts["val"]
        assert sorted(np.concatenate([plan.train, plan.val, plan.test])) == list(range(len(pool)))
        assert {0, 1} <= set(pool.labels[plan.val])  # the threshold can be chosen
    test_patients = [{pool.patients[i] for i in plan.test} for plan in plans]
    assert sum(len(p) for p in test_patients) == PATIENTS  # each patient in one test fold


def test_without_a_patient_column_each_series_is_a_patient(site: str, tmp_path: Path) -> None:
    root = Path(site.split(":")[1])
    labels = tmp_path / "series.csv"
    with (root / "labels.csv").open() as source, labels.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["series", "label"])
        writer.writerows((row["series"], row["label"]) for row in csv.DictReader(source))
    pool = load_pool(f"dicom:{root}:{labels}")
    assert pool.grouping.startswith("series") and pool.patients == pool.keys
    assert len(set(pool.patients)) == PATIENTS + PATIENTS // 4


def test_folds_are_balanced_by_class_and_fixed_by_the_seed() -> None:
    patients = [f"p{i // 2}" for i in range(40)]  # 20 patients with 2 studies each
    labels = np.array([1 if (i // 2) % 4 == 0 else 0 for i in range(40)])
    folds = stratified_group_folds(patients, labels, 5, seed=3)
    assert np.array_equal(folds, stratified_group_folds(patients, labels, 5, seed=3))
    for patient in set(patients):
        assert len({folds[i] for i, p in enumerate(patients) if p == patient}) == 1
    positives = [int(labels[folds == k].sum()) for k in range(5)]
    assert positives == [2, 2, 2, 2, 2]  # 5 positive patients of 2 studies, one per fold
    assert all(len(labels[folds == k]) == 8 for k in range(5))
    assert any(
        not np.array_equal(folds, stratified_group_folds(patients, labels, 5, seed=s))
        for s in range(4, 8)
    )


def test_what_cannot_be_cross_validated_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetSpecError, match="which studies share a patient"):
        load_pool(f"medmnist:{tmp_path / 'adrenal.npz'}")
    with pytest.raises(DatasetSpecError, match="5 folds need at least 5 patients"):
        stratified_group_folds(["a", "a", "b", "c"], [0, 1, 0, 1], 5, seed=0)


def test_no_interval_of_width_zero_is_shown_as_certain() -> None:
    assert wilson_interval(1, 1) is None and wilson_interval(0, 0) is None
    low, high = wilson_interval(3, 3) or (1.0, 1.0)
    assert 0.3 < low < high == 1.0
    labels = np.array([1, 1, 1, 0, 0, 0, 0, 0])
    scores = np.array([0.9, 0.8, 0.7, 0.1, 0.2, 0.3, 0.6, 0.4])
    pooled = pooled_metrics(labels, scores, np.full(8, 0.5), [f"p{i}" for i in range(8)], 200)
    assert pooled["sensitivity"] == 1.0
    sensitivity = pooled["ci95"]["sensitivity"]
    assert sensitivity is not None and sensitivity[0] < 1.0  # Wilson, not [1.0, 1.0]
    alone = pooled_metrics(labels[2:], scores[2:], np.full(6, 0.5), list("abcdef"), 200)
    assert alone["ci95"]["sensitivity"] is None and alone["ci95"]["auc"] is None
    assert any("not measurable" in note for note in alone["interval_notes"])
    row = {"fold": 5, "n": 4, "positives": 0, "sensitivity": float("nan"), "specificity": 0.75}
    row.update(train_studies=30, train_positives=6, val_studies=8, val_positives=3)
    assert fold_warnings(row) == [
        "fold 5 tests 0 positive studies: its sensitivity is not measurable",
        "fold 5 tests 4 negative studies: its specificity is ±0.33 "
        "(95 % Wilson interval 0.30-0.95)",
        "fold 5 learns from 6 positive studies only",
        "fold 5 chooses its epoch and threshold on 3 positive and 5 negative studies only",
    ]


@pytest.mark.slow
def test_train_then_evaluate_with_cv_end_to_end(
    site: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tmp_path / "model"
    spec = "synthetic:10,size=32,slices=4"
    base = ["train", "--dataset", spec, "--out", str(model), "--epochs", "1", "--cv", "2"]
    assert main(base) == 0
    out = capsys.readouterr().out
    assert "2-fold cross-validation" in out and "pooled out-of-fold" in out
    assert "warning: fold 1 tests" in out and "model written to" in out
    for name in ("auc", "sensitivity", "specificity"):
        assert f"  {name} " in out
    assert (model / "cv" / "report.json").is_file() and (model / "cv" / "fold-2").is_dir()
    summary = read_card(model).metrics["cv"]
    assert summary["folds"] == 2 and {"auc", "ci95"} <= set(summary["pooled"])

    # The DICOM site, fine-tuned from that model per fold; spy on what each fold trains
    # and chooses its threshold on.
    trained: list[tuple[set[str], set[str]]] = []
    chosen_on: list[tuple[int, float]] = []
    real_train, real_rule = crossval.train, THRESHOLD_RULES["youden"]

    def spy_train(network, train_set, val_set, *args, **kwargs):  # type: ignore[no-untyped-def]
        trained.append((train_set.patients(), val_set.patients()))
        return real_train(network, train_set, val_set, *args, **kwargs)

    def spy_rule(labels: np.ndarray, scores: np.ndarray) -> float:
        threshold = real_rule(labels, scores)
        chosen_on.append((len(labels), round(threshold, 6)))
        return threshold

    monkeypatch.setattr(crossval, "train", spy_train)
    monkeypatch.setitem(THRESHOLD_RULES, "youden", spy_rule)
    evaluate = ["evaluate", "--model", str(model), "--dataset", site, "--cv", "3"]
    assert main([*evaluate, "--epochs", "1", "--json", "--bootstrap", "200"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["folds"] == 3 and len(report["per_fold"]) == 3
    assert report["recipe"]["start"].startswith("fine-tuned from")
    assert report["patients"] == PATIENTS and report["pooled"]["n"] == len(report["predictions"])
    tested = {}
    for prediction in report["predictions"]:
        assert tested.setdefault(prediction["patient"], prediction["fold"]) == prediction["fold"]
    assert len(tested) == PATIENTS
    for fold, (train_patients, val_patients) in enumerate(trained, start=1):
        test_patients = {p for p, f in tested.items() if f == fold}
        assert not (train_patients | val_patients) & test_patients
    # Each fold's threshold is the one chosen on its inner validation part, nothing else.
    assert chosen_on == [(row["val_studies"], row["threshold"]) for row in report["per_fold"]]
    assert any(w.startswith("fold 1 tests") for w in report["warnings"])
    for row in report["per_fold"]:
        assert {"auc", "sensitivity", "specificity", "n", "positives"} <= set(row)


def test_replay_joins_each_folds_training_part_and_never_its_test(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """train --cv K --replay SPEC: every fold trains and picks its threshold on its own
    training patients plus the replay's train and val splits; it is tested on its own
    patients alone, and the report names the replay."""
    sizes: list[tuple[int, int]] = []
    real_train = crossval.train

    def spy_train(network, train_set, val_set, *args, **kwargs):  # type: ignore[no-untyped-def]
        sizes.append((len(train_set), len(val_set)))
        return real_train(network, train_set, val_set, *args, **kwargs)

    monkeypatch.setattr(crossval, "train", spy_train)
    spec, replay = "synthetic:10,size=32,slices=4", "synthetic:10,lesions=15-30,size=32,slices=4"
    command = ["train", "--dataset", spec, "--replay", replay, "--cv", "2", "--epochs", "1"]
    assert main([*command, "--out", str(tmp_path / "model"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["cv"]
    assert report["recipe"]["replay"] == replay
    replay_train, replay_val = len(parse_spec(replay, "train")), len(parse_spec(replay, "val"))
    assert len(sizes) == 2
    for (trained, validated), fold in zip(sizes, report["per_fold"], strict=True):
        own = trained - replay_train + validated - replay_val
        assert own > 0 and own + fold["n"] == report["studies"]
    assert len(report["predictions"]) == report["studies"]
