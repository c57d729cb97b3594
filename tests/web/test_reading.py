"""The study page and the worklist in a radiologist's words: the impression first, the
midline shift beside it, each lesion's location and sizes; a record from before lesions
were located, and a negative study, read as well, with "—" where a value is missing and
never "None"."""

from __future__ import annotations

import dataclasses
import html
import json
import re
from datetime import datetime

import pytest

from assistant.findings import Findings
from tests.web.readings import Readings
from web.reading import WORKLIST_CHARACTERS, reading_of, shift_text
from web.studies import SeriesView, StudyView

LOCATED_IMPRESSION = (
    "Medium left frontal crescent-shaped extra-axial hyperdense collection (location "
    "approximate), 9 mm thick, 24.0 mL (ABC/2 22.1 mL); 1 further hyperdense lesion (right "
    "parietal 3.2 mL); midline shift 6 mm to the right."
)


def _text(page: str) -> str:
    """The page's text as a reader sees it: tags gone, entities decoded, spaces folded."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page))).strip()


def _cells(page: str, header: str) -> list[str]:
    """The cell of every measurements row named `header`, as text, lesion by lesion."""
    found = re.findall(rf"<tr><th>{re.escape(header)}</th><td[^>]*>(.*?)</td></tr>", page, re.S)
    return [_text(cell) for cell in found]


def _study_page(readings: Readings, kind: str) -> str:
    response = readings.client().get(f"/studies/{readings.study_uids[kind]}")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "None" not in _text(page)
    return page


def _impressions(page: str) -> list[tuple[str, str]]:
    """(impression, midline shift) of each analysis at the top of a study page."""
    lines = re.findall(r'<p class="impression-line">(.*?)</p>', page, re.S)
    shifts = re.findall(r'<p class="midline-shift">(.*?)</p>', page, re.S)
    return [(_text(line), _text(shift)) for line, shift in zip(lines, shifts, strict=True)]


def test_the_study_page_leads_with_the_impression_and_the_midline_shift(
    readings: Readings,
) -> None:
    assert readings.findings["located"].impression() == LOCATED_IMPRESSION
    page = _study_page(readings, "located")
    assert _impressions(page) == [
        (
            LOCATED_IMPRESSION,
            "Midline shift 6 mm to the right (septum pellucidum 6.3 mm to the patient's right)",
        )
    ]
    # First on the page, above the patient's details; said once (the summary below it
    # gives the verdict and the lesions' lines, not the impression again).
    assert page.index("impression-line") < page.index("<dt>Patient</dt>")
    assert _text(page).count(LOCATED_IMPRESSION) == 1
    assert "Positive for hyperdense lesion (study probability 96.0 %" in _text(page)


def test_each_lesion_shows_where_it_lies_and_its_sizes(readings: Readings) -> None:
    page = _study_page(readings, "located")
    assert _cells(page, "Location") == [
        "left frontal, supratentorial, extra-axial, crescent-shaped (approximate)",
        "right parietal, supratentorial, intra-axial",
    ]
    assert _cells(page, "Severity") == ["medium", "small"]
    assert _cells(page, "Volume (mask)") == ["24.0 mL", "3.2 mL"]
    assert _cells(page, "Volume (ABC/2)") == ["22.1 mL", "2.9 mL"]
    assert _cells(page, "Thickness") == ["9 mm"]  # the extra-axial collection's only
    assert 'class="approximate"' in page
    # Each lesion's line, in the summary, with its location words.
    assert (
        "Small right parietal intraparenchymal hyperdense lesion, 3.2 mL (ABC/2 2.9 mL), slices 7\u20139"
        in _text(page)
    )


def test_an_old_record_reads_with_dashes_not_none(readings: Readings) -> None:
    page = _study_page(readings, "old")
    assert _impressions(page) == [("Hyperdense lesion, 5.0 mL.", "Midline shift: \u2014")]
    assert _cells(page, "Location") == ["\u2014"]
    assert _cells(page, "Severity") == ["\u2014"]
    assert _cells(page, "Volume (mask)") == ["5.0 mL"]
    assert _cells(page, "Volume (ABC/2)") == ["\u2014"]
    assert _cells(page, "Thickness") == []  # not known to be extra-axial: no row
    # Its summary as it was stored, in the words of then.
    assert "Hyperdense lesion, slices 5\u20137, about 5.0 mL, probability 93.0 %" in _text(page)


def test_a_negative_study_shows_its_impression(readings: Readings) -> None:
    page = _study_page(readings, "negative")
    assert _impressions(page) == [
        ("No hyperdense lesion (probability 3.0 %).", "Midline shift: \u2014")
    ]
    assert 'class="impression negative"' in page
    assert "Negative for hyperdense lesion (study probability 3.0 %" in _text(page)


@pytest.mark.parametrize("partial", [False, True], ids=["page", "refresh"])
def test_the_worklist_shows_each_study_s_impression(readings: Readings, partial: bool) -> None:
    page = readings.client().get("/?partial=1" if partial else "/").get_data(as_text=True)
    cells = {}
    for kind, uid in readings.study_uids.items():
        row = re.search(rf'<tr class="study [a-z]+" data-study="{uid}">(.*?)</tr>', page, re.S)
        assert row is not None, kind
        cell = re.search(r'<td class="finding"( title="([^"]*)")?>(.*?)</td>', row[1], re.S)
        assert cell is not None, kind
        cells[kind] = (html.unescape(cell[2]) if cell[2] else None, html.unescape(cell[3]))
    assert cells["old"] == (None, "S2: Hyperdense lesion, 5.0 mL.")
    assert cells["negative"] == (None, "S2: No hyperdense lesion (probability 3.0 %).")
    # A long impression is cut at a word, the whole of it in the cell's title.
    title, shown = cells["located"]
    assert title == f"S2: {LOCATED_IMPRESSION}"
    assert shown.endswith("\u2026") and len(shown) <= WORKLIST_CHARACTERS
    assert title.startswith(shown[:-1]) and title[len(shown) - 1] == " "
    assert "None" not in _text(page)


@pytest.mark.parametrize(
    ("shift_mm", "anatomy_read", "shown"),
    [
        (0.8, True, "No midline shift (septum pellucidum 0.8 mm to the patient's left)"),
        (0.0, True, "No midline shift (septum pellucidum on the midline)"),
        (
            4.2,
            True,
            "Midline shift 4 mm to the left (septum pellucidum 4.2 mm to the patient's left)",
        ),
        (None, True, "Midline shift not measured"),
        (None, False, "Midline shift: \u2014"),
    ],
)
def test_the_midline_shift_in_words_and_as_measured(
    shift_mm: float | None, anatomy_read: bool, shown: str
) -> None:
    assert shift_text(shift_mm, anatomy_read) == shown


@pytest.mark.parametrize("record", ["", "{", "[]", '{"version": 9}', '{"impression": 3}'])
def test_a_record_that_cannot_be_read_has_no_reading(record: str) -> None:
    assert reading_of(record) is None


def _series(number: int, findings: Findings, notes: str = "") -> SeriesView:
    return SeriesView(
        pk=number,
        series_instance_uid=findings.series_instance_uid,
        number=number,
        description="",
        modality="CT",
        instance_count=len(findings.slices),
        status="done",
        reason="",
        job_id=number,
        positive=findings.positive,
        probability=findings.study_probability,
        summary=findings.summary() + notes,
        findings_record=json.dumps(findings.to_dict()),
    )


def test_a_study_names_its_most_severe_series_and_a_hole_in_its_volume(
    readings: Readings,
) -> None:
    """Positive before negative, whatever the probabilities; a volume with a hole says
    so with its series number."""
    negative, located = readings.findings["negative"], readings.findings["located"]
    hole = "\nIncomplete volume: about 1 slice missing between slices 6 and 7."
    study = StudyView(
        pk=1,
        study_instance_uid="1.2.3",
        patient_id="P",
        patient_name="",
        accession_number="",
        study_date="",
        description="",
        received_at=datetime(2026, 1, 1),
        status="done",
        positive=True,
        probability=0.96,
        series=(_series(3, negative), _series(2, located, hole)),
    )
    assert study.finding == f"S2 (incomplete volume): {LOCATED_IMPRESSION}"
    assert study.reading is not None and study.reading.midline_shift_mm == -6.3
    assert dataclasses.replace(study, series=()).finding == ""
