"""How probabilities are written for people."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from assistant.findings import Findings, Lesion, ModelIdentity, Place, SliceProbability
from assistant.findings.wording import impression, percent, shift_words


@pytest.mark.parametrize(
    ("probability", "written"),
    [(0.9724, "97.2 %"), (0.63, "63.0 %"), (0.0004, "0.0 %"), (1.0, "100.0 %"), (0.05, "5.0 %")],
)
def test_percent(probability: float, written: str) -> None:
    assert percent(probability) == written


def _findings(lesions: list[Lesion], shift: float | None = 0.4, read: bool = True) -> Findings:
    slices = [SliceProbability(f"1.2.{n}", 0.9) for n in range(10)]
    return Findings(
        series_instance_uid="1.2.99",
        study_probability=0.97,
        positive=True,
        threshold=0.5,
        slices=slices,
        flagged_instance_uids=["1.2.4"],
        model=ModelIdentity("m", "1"),
        lesions=lesions,
        midline_shift_mm=shift,
        anatomy_read=read,
    )


def _lesion(volume: float, place: Place | None, **more: Any) -> Lesion:
    return Lesion(
        first_slice=3,
        last_slice=5,
        key_slice=4,
        key_sop_instance_uid="1.2.4",
        outline=[(1.0, 1.0), (5.0, 1.0), (3.0, 4.0)],
        area_mm2=100.0,
        longest_diameter_mm=20.0,
        volume_ml=volume,
        mean_hu=65.0,
        probability=0.95,
        place=place,
        **more,
    )


RIGHT_PARIETAL = Place("right", "supratentorial", "parietal", "intra-axial")


def test_the_impression_reads_as_a_radiologist_dictates_it() -> None:
    lesion = _lesion(8.04, RIGHT_PARIETAL, abc2_volume_ml=7.46, severity="small")
    assert impression(_findings([lesion])) == (
        "Small right parietal intraparenchymal hyperdense lesion, 8.0 mL (ABC/2 7.5 mL), "
        "no midline shift."
    )


@pytest.mark.parametrize(
    ("shift", "words"),
    [
        (4.2, "midline shift 4 mm to the left"),
        (-6.6, "midline shift 7 mm to the right"),
        (-1.9, "no midline shift"),
        (None, "midline shift not measured"),
    ],
)
def test_the_shift_is_named_by_the_side_the_septum_is_pushed_to(
    shift: float | None, words: str
) -> None:
    assert shift_words(shift) == words


def test_a_collection_gives_its_shape_and_thickness_and_others_follow_by_size() -> None:
    subdural = _lesion(
        42.0,
        Place("left", "supratentorial", "frontal", "extra-axial", "crescent", approximate=True),
        abc2_volume_ml=47.3,
        thickness_mm=12.4,
        severity="large",
    )
    small = _lesion(0.3, Place("right", "infratentorial", "cerebellum", "intra-axial"))
    unplaced = _lesion(0.2, None)
    line = impression(_findings([small, subdural, unplaced], shift=-6.0))
    assert line == (
        "Large left frontal crescent-shaped extra-axial hyperdense collection "
        "(location approximate), 12 mm thick, 42.0 mL (ABC/2 47.3 mL); "
        "2 further hyperdense lesions (right cerebellar 0.3 mL, 0.2 mL); "
        "midline shift 6 mm to the right."
    )


def test_a_positive_without_outline_and_a_negative_say_so() -> None:
    assert impression(_findings([])) == (
        "Hyperdense lesion suspected (probability 97.0 %); no lesion could be outlined."
    )
    negative = replace(_findings([]), positive=False, study_probability=0.2)
    assert impression(negative) == "No hyperdense lesion (probability 20.0 %)."
