"""Findings: validated where they are made, kept as versioned JSON, read back the same."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from assistant.findings import (
    FINDINGS_VERSION,
    Findings,
    FindingsError,
    Lesion,
    ModelIdentity,
    Place,
    SliceProbability,
)

MODEL = ModelIdentity("radassist-hyperdense", "0.1.0", "ab" * 32)


def _lesion(**changes: Any) -> Lesion:
    values: dict[str, Any] = {
        "first_slice": 3,
        "last_slice": 5,
        "key_slice": 4,
        "key_sop_instance_uid": "1.2.4",
        "outline": [(10.0, 10.0), (20.0, 10.0), (15.5, 18.0)],
        "area_mm2": 80.0,
        "longest_diameter_mm": 12.5,
        "volume_ml": 1.2,
        "mean_hu": 62.0,
        "probability": 0.91,
        "label": 1,
    }
    values.update(changes)
    return Lesion(**values)


def _findings(**changes: Any) -> Findings:
    uids = [f"1.2.{n}" for n in range(8)]
    values: dict[str, Any] = {
        "series_instance_uid": "1.2.99",
        "study_probability": 0.93,
        "positive": True,
        "threshold": 0.5,
        "slices": [SliceProbability(u, 0.9 if 3 <= n <= 5 else 0.1) for n, u in enumerate(uids)],
        "flagged_instance_uids": uids[3:6],
        "model": MODEL,
        "lesions": [_lesion()],
    }
    values.update(changes)
    return Findings(**values)


def test_a_record_round_trips_through_json() -> None:
    findings = _findings()
    record = json.loads(json.dumps(findings.to_dict()))
    assert record["version"] == FINDINGS_VERSION
    assert record["model"] == "radassist-hyperdense 0.1.0"  # as before version 1
    assert record["model_identity"] == {
        "name": "radassist-hyperdense",
        "version": "0.1.0",
        "weights_sha256": "ab" * 32,
    }
    assert record["summary"].startswith("Positive for hyperdense lesion")
    assert Findings.from_dict(record) == findings


def test_a_record_written_before_versions_is_read() -> None:
    """Jobs recorded before this module kept the model as one "name version" string."""
    record = _findings().to_dict()
    del record["version"], record["model_identity"]
    back = Findings.from_dict(record)
    assert back.model == ModelIdentity("radassist-hyperdense", "0.1.0")
    assert back.lesions == _findings().lesions


@pytest.mark.parametrize(
    ("record_change", "message"),
    [
        ({"version": 99}, "newer than this node reads"),
        ({"study_probability": "high"}, "not a findings record"),
        ({"slices": None}, "not a findings record"),
        ({"study_probability": 1.5}, "probability"),
    ],
)
def test_an_unreadable_record_raises_findings_error(
    record_change: dict[str, Any], message: str
) -> None:
    record = {**_findings().to_dict(), **record_change}
    with pytest.raises(FindingsError, match=message):
        Findings.from_dict(record)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"probability": 1.3}, "probability"),
        ({"key_slice": 7}, "first <= key <= last"),
        ({"outline": [(1.0, 1.0), (2.0, 2.0)]}, "3 points"),
        ({"volume_ml": -0.1}, "volume_ml"),
        ({"mean_hu": float("nan")}, "mean_hu"),
        ({"key_sop_instance_uid": ""}, "SOP Instance UID"),
    ],
)
def test_a_lesion_out_of_range_is_refused_where_it_is_made(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(FindingsError, match=message):
        _lesion(**changes)


def test_findings_that_contradict_themselves_are_refused() -> None:
    with pytest.raises(FindingsError, match="disagrees"):
        _findings(positive=False)
    with pytest.raises(FindingsError, match="not slices of the series"):
        _findings(flagged_instance_uids=["9.9.9"])
    with pytest.raises(FindingsError, match="past the series"):
        _findings(lesions=[_lesion(last_slice=8, key_slice=8, key_sop_instance_uid="1.2.7")])
    with pytest.raises(FindingsError, match="probability"):
        SliceProbability("1.2.3", -0.01)
    with pytest.raises(FindingsError, match="name and a version"):
        ModelIdentity("", "1")


def test_a_negative_study_reads_as_one_line() -> None:
    findings = _findings(
        study_probability=0.04, positive=False, flagged_instance_uids=[], lesions=[]
    )
    assert findings.summary() == (
        "Negative for hyperdense lesion (study probability 4.0 %, threshold 50.0 %)"
    )
    assert replace(findings, lesions=[]).to_dict()["lesions"] == []


def test_findings_import_neither_torch_nor_dicom() -> None:
    code = "import sys, assistant.findings; print('torch' in sys.modules, 'pydicom' in sys.modules)"
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    )
    assert done.stdout.split() == ["False", "False"]


def _multi_frame(**changes: Any) -> Findings:
    """Eight slices: frames 1-8 of one multi-frame object, the lesion's key on frame 5."""
    slices = [SliceProbability("1.2.7", 0.9 if 3 <= n <= 5 else 0.1, n + 1) for n in range(8)]
    values: dict[str, Any] = {
        "slices": slices,
        "flagged_instance_uids": ["1.2.7"],
        "lesions": [_lesion(key_sop_instance_uid="1.2.7", key_frame_number=5)],
    }
    values.update(changes)
    return _findings(**values)


def test_frames_of_a_multi_frame_object_round_trip_by_number() -> None:
    findings = _multi_frame()
    record = json.loads(json.dumps(findings.to_dict()))
    assert record["slices"][0] == {
        "sop_instance_uid": "1.2.7",
        "probability": 0.1,
        "frame_number": 1,
    }
    assert record["lesions"][0]["key_frame_number"] == 5
    assert Findings.from_dict(record) == findings


def test_records_without_frame_numbers_read_as_single_frame_slices() -> None:
    """Version 1 records (every one before multi-frame objects) have no frame numbers,
    and a single-frame slice writes none."""
    record = _findings().to_dict()
    assert "frame_number" not in record["slices"][0]
    assert "key_frame_number" not in record["lesions"][0]
    back = Findings.from_dict({**record, "version": 1})
    assert all(s.frame_number is None for s in back.slices)
    assert back.lesions[0].key_frame_number is None


@pytest.mark.parametrize("number", [0, -1, True, 2.0, "3"])
def test_a_frame_number_is_a_positive_integer_or_none(number: object) -> None:
    with pytest.raises(FindingsError, match="frame number"):
        SliceProbability("1.2.3", 0.5, number)  # type: ignore[arg-type]
    with pytest.raises(FindingsError, match="frame number"):
        _lesion(key_frame_number=number)


def test_a_lesion_key_slice_is_named_by_instance_and_frame() -> None:
    with pytest.raises(FindingsError, match="not slices of the series"):
        _multi_frame(lesions=[_lesion(key_sop_instance_uid="1.2.7", key_frame_number=9)])
    with pytest.raises(FindingsError, match="not slices of the series"):
        _multi_frame(lesions=[_lesion(key_sop_instance_uid="1.2.7")])  # no frame: not a slice


PLACE = Place("right", "supratentorial", "parietal", "intra-axial")


def test_a_placed_lesion_and_the_shift_round_trip_through_json() -> None:
    findings = _findings(
        lesions=[_lesion(place=PLACE, abc2_volume_ml=1.4, severity="small")],
        midline_shift_mm=-3.5,
        anatomy_read=True,
    )
    record = json.loads(json.dumps(findings.to_dict()))
    assert record["lesions"][0]["place"]["region"] == "parietal"
    assert record["midline_shift_mm"] == -3.5
    assert record["impression"] == findings.impression()
    assert findings.impression() in record["summary"]
    assert Findings.from_dict(record) == findings


def test_a_version_2_record_reads_without_places() -> None:
    """Jobs analysed before version 3 have no place, ABC/2, severity or shift: they read
    back as not located, and their impression claims no shift either way."""
    record = _findings().to_dict()
    record["version"] = 2
    for key in ("midline_shift_mm", "anatomy_read", "impression"):
        del record[key]
    for lesion in record["lesions"]:
        for key in ("place", "abc2_volume_ml", "thickness_mm", "severity"):
            del lesion[key]
    back = Findings.from_dict(record)
    assert back.lesions[0].place is None and not back.anatomy_read
    assert back.impression() == "Hyperdense lesion, 1.2 mL."


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Place("up", "supratentorial", "parietal", "intra-axial"), "side"),
        (lambda: Place("left", "supratentorial", "insula", "intra-axial"), "region"),
        (lambda: Place("left", "supratentorial", "parietal", "intra-axial", "lens"), "shape"),
        (lambda: _lesion(severity="huge"), "severity"),
        (lambda: _lesion(abc2_volume_ml=-1.0), "abc2_volume_ml"),
        (lambda: _findings(midline_shift_mm=float("inf")), "midline shift"),
    ],
)
def test_a_place_out_of_the_vocabulary_is_refused(make: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()
