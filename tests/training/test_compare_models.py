"""`radassist compare A B`: two models on the same studies, each read at its own image
size and threshold; the differences with paired bootstrap intervals (grouped by patient
where the data names patients), McNemar's exact test against a hand computation, the
table and the JSON, a TorchScript model scored as the node runs it, and the result kept
on the candidate when both models are in the registry."""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sqlalchemy import select

from assistant.analysis.model.card import ModelCard, NetworkSpec
from assistant.analysis.model.folder import load_model, save_model
from assistant.analysis.model.network import CnnRnn
from assistant.analysis.model.registering import add_model
from assistant.analysis.model.torchscript import export_torchscript
from assistant.cli_compare import add_parsers
from assistant.db import AuditEvent, Database, ModelState, make_engine
from assistant.db.migrate import upgrade
from assistant.registry import Registry
from assistant.settings import BUNDLED_MODEL_DIR, Settings, StorageSettings
from assistant.training.compare import (
    compare_scores,
    mcnemar_exact,
    paired_bootstrap,
    read_split,
    study_groups,
)
from assistant.training.datasets import DicomFolders

#: 80 phantoms of 8 slices: a test split of 12 studies, 7 positive; seconds to score.
SPEC = "synthetic:80,slices=8"


def _hand_mcnemar(a_only: int, b_only: int) -> float:
    """Two-sided exact binomial test at 1/2, written out."""
    n = a_only + b_only
    if n == 0:
        return 1.0
    k = min(a_only, b_only)
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)


# -- the statistics, on numbers ----------------------------------------------------------


@pytest.mark.parametrize(
    ("a_only", "b_only", "expected"),
    [(0, 0, 1.0), (1, 6, 16 / 128), (6, 1, 16 / 128), (0, 5, 2 / 32), (3, 3, 1.0), (2, 9, None)],
)
def test_mcnemar_is_the_exact_binomial_test_on_the_discordant_calls(
    a_only: int, b_only: int, expected: float | None
) -> None:
    p = mcnemar_exact(a_only, b_only)
    assert p == pytest.approx(_hand_mcnemar(a_only, b_only), abs=1e-12)
    if expected is not None:
        assert p == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 2)


def test_the_comparison_counts_the_calls_each_model_alone_got_right() -> None:
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    a = np.array([0.9, 0.8, 0.2, 0.3, 0.1, 0.7, 0.2, 0.1])  # threshold 0.5
    b = np.array([0.9, 0.1, 0.8, 0.9, 0.1, 0.1, 0.9, 0.2])  # threshold 0.6
    result = compare_scores(labels, np.arange(8), (a, b), (0.5, 0.6), resamples=500)
    # A right, B wrong: studies 1 and 6; A wrong, B right: studies 2, 3 and 5.
    assert result["mcnemar"] == {
        "a_right_b_wrong": 2,
        "a_wrong_b_right": 3,
        "discordant": 5,
        "p_value": round(_hand_mcnemar(2, 3), 4),
    }
    assert (result["a"]["sensitivity"], result["a"]["specificity"]) == (0.5, 0.75)
    assert (result["b"]["sensitivity"], result["b"]["specificity"]) == (0.75, 0.75)
    assert result["a"]["threshold"] == 0.5 and result["b"]["threshold"] == 0.6
    assert result["difference"]["sensitivity"]["value"] == 0.25
    assert result["difference"]["specificity"]["value"] == 0.0
    for name, change in result["difference"].items():
        low, high = change["ci95"]
        assert low <= change["value"] <= high, name


def test_one_patient_holding_every_study_leaves_no_room_for_the_interval() -> None:
    """Whole groups are drawn: with one group every resample is the whole split, so the
    interval of each difference is the difference itself."""
    rng = np.random.default_rng(3)
    labels = np.array([0, 1] * 10)
    a, b = rng.random(20), rng.random(20)
    point = compare_scores(labels, np.zeros(20, np.int64), (a, b), (0.5, 0.5), resamples=50)
    for change in point["difference"].values():
        assert change["ci95"] == [change["value"], change["value"]]
    spread = paired_bootstrap(labels, np.arange(20), a, b, (0.5, 0.5), resamples=200)
    assert all(interval is not None and interval[0] < interval[1] for interval in spread.values())


def test_identical_scores_differ_by_nothing_and_mcnemar_says_p_1() -> None:
    labels = np.array([0, 1, 1, 0, 1, 0])
    scores = np.array([0.2, 0.7, 0.4, 0.6, 0.9, 0.1])
    result = compare_scores(labels, np.arange(6), (scores, scores.copy()), (0.5, 0.5))
    for change in result["difference"].values():
        assert change == {"value": 0.0, "ci95": [0.0, 0.0]}
    assert result["mcnemar"]["discordant"] == 0 and result["mcnemar"]["p_value"] == 1.0


def test_a_dicom_dataset_with_patients_is_resampled_by_patient(tmp_path: Path) -> None:
    rows = [f"s{i},{i % 2},{'P' + str(i // 2) if i < 200 else ''}" for i in range(240)]
    (tmp_path / "labels.csv").write_text("series,label,patient\n" + "\n".join(rows) + "\n")
    dataset = DicomFolders(tmp_path, tmp_path / "labels.csv", "test")
    groups, grouped_by = study_groups(dataset)
    assert grouped_by == "patient" and len(groups) == len(dataset.rows)
    by_group: dict[int, set[str]] = {}
    for group, row in zip(groups, dataset.rows, strict=True):
        by_group.setdefault(int(group), set()).add(row["patient"] or row["series"])
    assert all(len(names) == 1 for names in by_group.values())  # one patient per group
    patients = {row["patient"] for row in dataset.rows if row["patient"]}
    loose = [row for row in dataset.rows if not row["patient"]]
    assert len(by_group) == len(patients) + len(loose) < len(dataset.rows)


# -- the command, on real models ---------------------------------------------------------


@dataclass
class Models:
    bundled: Path
    #: A tiny untrained network that reads 64² px, unmasked, at threshold 0.5.
    tiny: Path
    #: The bundled model exported as a TorchScript program.
    program: Path


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    root = tmp_path_factory.mktemp("models")
    bundled = root / "bundled"
    shutil.copytree(BUNDLED_MODEL_DIR, bundled)
    spec = NetworkSpec(widths=(8, 16), gru_hidden=8, mask_head=False)
    torch.manual_seed(1)
    tiny = root / "tiny"
    save_model(tiny, CnnRnn(spec), ModelCard(name="tiny", version="1", network=spec, image_size=64))
    export_torchscript(load_model(bundled), root / "program")
    return Models(bundled, tiny, root / "program")


def _compare(settings: Settings, *argv: str) -> int:
    """`radassist compare …` through the command's own parser (as cli.py wires it)."""
    parser = argparse.ArgumentParser(prog="radassist")
    commands = parser.add_subparsers(dest="command", required=True)
    add_parsers(lambda name, text: commands.add_parser(name, help=text), lambda *_: parser)
    args = parser.parse_args(["compare", *argv])
    return int(args.func(settings, args))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(storage=StorageSettings(data_dir=tmp_path / "var"))


@pytest.mark.slow
def test_two_models_read_at_their_own_sizes_compared_as_json(
    models: Models, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = (str(models.bundled), str(models.tiny), "--dataset", SPEC, "--json")
    assert _compare(settings, *argv, "--bootstrap", "400") == 0
    result: dict[str, Any] = json.loads(capsys.readouterr().out)
    a, b = result["a"], result["b"]
    assert (a["model"], a["image_size"], a["input_mask"]) == (
        "radassist-hyperdense:0.1.0",
        128,
        "intracranial",
    )
    assert (b["model"], b["image_size"], b["input_mask"], b["threshold"]) == ("tiny:1", 64, "", 0.5)
    assert a["n"] == b["n"] == 12 and a["positives"] == b["positives"] == 7
    assert (result["dataset"], result["split"], result["grouped_by"]) == (SPEC, "test", "study")
    assert result["bootstrap_resamples"] == 400
    # McNemar by hand, from each model's own reading of the split.
    first, second = read_split(models.bundled, SPEC, "test"), read_split(models.tiny, SPEC, "test")
    labels = first.dataset.labels().astype(bool)
    right_a = (first.probabilities >= first.card.threshold) == labels
    right_b = (second.probabilities >= 0.5) == labels
    a_only, b_only = int((right_a & ~right_b).sum()), int((~right_a & right_b).sum())
    assert result["mcnemar"]["a_right_b_wrong"] == a_only
    assert result["mcnemar"]["a_wrong_b_right"] == b_only
    assert result["mcnemar"]["p_value"] == pytest.approx(_hand_mcnemar(a_only, b_only), abs=1e-4)
    for name in ("auc", "sensitivity", "specificity"):
        change = result["difference"][name]
        assert change["value"] == pytest.approx(b[name] - a[name], abs=2e-4)
        low, high = change["ci95"]
        assert low <= change["value"] <= high, name


@pytest.mark.slow
def test_the_table_lists_both_models_the_differences_and_mcnemar(
    models: Models, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _compare(settings, str(models.bundled), str(models.tiny), "--dataset", SPEC) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{SPEC} (test): 12 studies, 7 positive"
    assert re.fullmatch(r" +A +B +B - A \(95 % CI\)", lines[1])
    assert re.fullmatch(r"model +radassist-hyperdense:0\.1\.0 +tiny:1", lines[2])
    assert re.fullmatch(r"threshold +0\.6297 +0\.5000", lines[3])
    assert re.fullmatch(r"n +12 +12", lines[4]) and re.fullmatch(r"positives +7 +7", lines[5])
    number, signed = r"(\d\.\d{4}|n/a)", r"[+-]\d\.\d{4}"
    for line, label in zip(lines[6:9], ("AUC", "sensitivity", "specificity"), strict=True):
        assert re.fullmatch(
            rf"{label} +{number} +{number} +{signed} \({signed} to {signed}\)", line
        ), line
    assert re.fullmatch(
        r"McNemar exact test on the calls: A right and B wrong \d+, A wrong and B right \d+; "
        r"p = \d\.\d{4}",
        lines[9],
    )
    assert "1000 paired bootstrap resamples of the 12 studies" in lines[10]


@pytest.mark.slow
def test_a_model_against_itself_and_its_torchscript_program_differs_by_nothing(
    models: Models, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    for other in (models.bundled, models.program):
        argv = (str(models.bundled), str(other), "--dataset", SPEC, "--json")
        assert _compare(settings, *argv, "--bootstrap", "200") == 0
        result = json.loads(capsys.readouterr().out)
        for change in result["difference"].values():
            assert change == {"value": 0.0, "ci95": [0.0, 0.0]}
        assert result["mcnemar"]["discordant"] == 0 and result["mcnemar"]["p_value"] == 1.0
    assert result["b"]["format"] == "torchscript"
    eager = read_split(models.bundled, SPEC, "test").probabilities
    program = read_split(models.program, SPEC, "test").probabilities
    assert np.allclose(eager, program, atol=1e-4)


@pytest.fixture
def registered(models: Models, settings: Settings) -> Iterator[tuple[Registry, Database]]:
    """The bundled model live and the tiny one in shadow, in a migrated registry."""
    upgrade(settings.database_url)
    db = Database(make_engine(settings.database_url))
    registry = Registry(db, settings.storage.data_dir)
    add_model(registry, models.bundled, state=ModelState.LIVE, by="setup", test_run=False)
    add_model(registry, models.tiny, state=ModelState.SHADOW, by="setup", test_run=False)
    try:
        yield registry, db
    finally:
        db.dispose()


@pytest.mark.slow
def test_two_registry_models_leave_the_comparison_on_the_candidate(
    registered: tuple[Registry, Database],
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    registry, db = registered
    argv = ("radassist-hyperdense:0.1.0", "tiny:1", "--dataset", SPEC, "--json")
    assert _compare(settings, *argv, "--bootstrap", "100") == 0
    printed = json.loads(capsys.readouterr().out)
    assert registry.get("tiny:1").comparison == printed
    assert registry.get("radassist-hyperdense:0.1.0").comparison is None
    with db.sessions() as session:
        (event,) = session.scalars(select(AuditEvent).where(AuditEvent.action == "model-compare"))
    assert event.target == "tiny:1" and event.username.startswith("cli")
    assert event.detail == f"against radassist-hyperdense:0.1.0 on {SPEC} (test)"


@pytest.mark.slow
def test_a_folder_against_a_registry_model_is_printed_not_kept(
    registered: tuple[Registry, Database],
    models: Models,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    registry, _ = registered
    argv = (str(models.bundled), "tiny:1", "--dataset", SPEC, "--bootstrap", "0")
    assert _compare(settings, *argv) == 0
    out = capsys.readouterr().out
    assert "kept on" not in out and "(" not in out.splitlines()[6]  # no intervals
    assert registry.get("tiny:1").comparison is None
