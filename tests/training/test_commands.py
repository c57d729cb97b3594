"""`radassist train` writes a model folder whose card records how it was made, and
`radassist evaluate` scores it (table, --json, ROC PNG)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from assistant.cli import main
from assistant.model import load_model

pytestmark = pytest.mark.slow


def test_train_then_evaluate(tmp_path: Path, capsys) -> None:
    out = tmp_path / "model"
    assert (
        main(
            [
                "train",
                "--dataset",
                "synthetic:12",
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
        and "--dataset synthetic:12" in card.training["command"]
    )
    assert card.training["dataset"] == "synthetic:12" and card.training["seed"] == 3
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
                "synthetic:12",
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
    with Image.open(out / "roc-test.png") as roc:
        assert roc.size == (400, 400)
