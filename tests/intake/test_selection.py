"""The selection rules: which complete series are analysed, and why others are not."""

from __future__ import annotations

import pytest

from assistant.intake.selection import SeriesFacts, skip_reason
from assistant.settings import SelectionSettings

AXIAL = "1\\0\\0\\0\\1\\0"
TILTED = "1\\0\\0\\0\\0.9483\\-0.3173"  # the GE head: 18.5 degrees of gantry tilt
CORONAL = "1\\0\\0\\0\\0\\-1"


def facts(**changes: object) -> SeriesFacts:
    values: dict[str, object] = {
        "modality": "CT",
        "series_description": "HEAD 5mm",
        "body_part_examined": "HEAD",
        "calling_ae_title": "PACS",
        "instance_count": 40,
        "orientations": [AXIAL] * 40,
    }
    values.update(changes)
    return SeriesFacts(**values)  # type: ignore[arg-type]


def test_an_axial_ct_series_is_analysed() -> None:
    assert skip_reason(facts(), SelectionSettings()) is None
    assert skip_reason(facts(orientations=[TILTED] * 40), SelectionSettings()) is None
    # One Enhanced CT object of 28 frames is 28 images, not one.
    multi_frame = facts(instance_count=1, frame_count=28, orientations=[AXIAL])
    assert skip_reason(multi_frame, SelectionSettings()) is None


@pytest.mark.parametrize(
    ("changes", "rules", "expected"),
    [
        ({"modality": "SR"}, SelectionSettings(), "modality SR"),
        ({"instance_count": 3}, SelectionSettings(), "3 image(s), fewer than the 10"),
        (
            {"instance_count": 1, "frame_count": 4},
            SelectionSettings(),
            "4 image(s) in 1 multi-frame instance(s), fewer than the 10",
        ),
        ({"orientations": [CORONAL] * 40}, SelectionSettings(), "not an axial stack"),
        ({"orientations": [""] * 40}, SelectionSettings(), "no image orientation"),
        ({"calling_ae_title": "OTHER"}, SelectionSettings(calling_ae_titles=("PACS",)), "OTHER"),
        (
            {"series_description": "CHEST LUNG"},
            SelectionSettings(series_description_patterns=("*head*", "*brain*")),
            "matches no selected pattern",
        ),
        (
            {"body_part_examined": "CHEST"},
            SelectionSettings(body_part_patterns=("HEAD",)),
            "body part",
        ),
    ],
)
def test_series_that_do_not_match_are_skipped_with_the_reason(
    changes: dict[str, object], rules: SelectionSettings, expected: str
) -> None:
    reason = skip_reason(facts(**changes), rules)
    assert reason is not None and expected in reason


def test_coronal_series_pass_when_orientation_is_not_a_rule() -> None:
    assert (
        skip_reason(facts(orientations=[CORONAL] * 40), SelectionSettings(axial_only=False)) is None
    )
