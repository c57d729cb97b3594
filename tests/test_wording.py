"""How probabilities are written for people."""

from __future__ import annotations

import pytest

from assistant.findings.wording import percent


@pytest.mark.parametrize(
    ("probability", "written"),
    [(0.9724, "97.2 %"), (0.63, "63.0 %"), (0.0004, "0.0 %"), (1.0, "100.0 %"), (0.05, "5.0 %")],
)
def test_percent(probability: float, written: str) -> None:
    assert percent(probability) == written
