"""Findings in a radiologist's words, coded: each located lesion's SR group names its
region, side and relation to the inner table (Finding Site with Laterality and
Topographical Modifier), its ABC/2 volume, an extra-axial collection's thickness, its
size band and an approximate location; the largest lesion's group carries the midline
shift and its direction; the report and the key-object note carry the impression line.
Lesions without a place (records before version 3) are written as before. Every object
passes dciodvfy and reads back with highdicom."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import highdicom as hd
import pytest
from pydicom import Dataset, dcmread
from pydicom.sr.codedict import codes

from assistant.analysis.imaging import read_series
from assistant.analysis.writers.context import WriterContext, evidence_header
from assistant.analysis.writers.kos import DESCRIPTION_LIMIT, build_kos
from assistant.analysis.writers.sr import build_sr
from assistant.analysis.writers.uids import ResultIdentity
from assistant.db import input_digest
from assistant.findings import Findings, Lesion, ModelIdentity, Place, SliceProbability, concepts
from assistant.findings.place import REGIONS, RELATIONS, SEVERITIES, SIDES
from tests.peers.dicom3tools import dciodvfy_errors
from tests.peers.tools import require_tool
from tests.support.ct import shared_ct

SQUARE = [(240.0, 160.0), (336.0, 160.0), (336.0, 240.0), (240.0, 240.0)]


@pytest.fixture(scope="module")
def source() -> tuple[list[str], dict[str, Dataset]]:
    series = read_series(shared_ct("ge_head_tilted"))
    headers = {
        s.sop_instance_uid: evidence_header(dcmread(s.path, stop_before_pixels=True))
        for s in series.slices
    }
    return [s.sop_instance_uid for s in series.slices], headers


def _context(uids: list[str], headers: dict[str, Dataset]) -> WriterContext:
    series_uid = str(next(iter(headers.values())).SeriesInstanceUID)
    identity = ResultIdentity(series_uid, "test-model", "1.2.3", input_digest(uids))
    return WriterContext(identity, weights_sha256="ab" * 32)


def _lesion(uids: list[str], key: int, volume_ml: float, **located: Any) -> Lesion:
    return Lesion(
        key,
        key,
        key,
        uids[key],
        SQUARE,
        area_mm2=400.0,
        longest_diameter_mm=30.0,
        volume_ml=volume_ml,
        mean_hu=66.0,
        probability=0.9,
        label=1,
        **located,
    )


def _findings(uids: list[str], lesions: list[Lesion], shift_mm: float | None) -> Findings:
    return Findings(
        series_instance_uid="x",
        study_probability=0.95,
        positive=True,
        threshold=0.5,
        slices=[SliceProbability(uid, 0.9 if 10 <= n <= 20 else 0.1) for n, uid in enumerate(uids)],
        flagged_instance_uids=uids[10:21],
        lesions=lesions,
        model=ModelIdentity("test-model", "1.2.3"),
        midline_shift_mm=shift_mm,
        anatomy_read=shift_mm is not None,
    )


def _placed(uids: list[str]) -> Findings:
    """An intra-axial right parietal lesion, a larger left crescent-shaped extra-axial
    collection that pushes the septum 6 mm to the right, an approximately placed
    midline brainstem lesion, and one without a place."""
    parietal = _lesion(
        uids,
        12,
        8.0,
        place=Place("right", "supratentorial", "parietal", "intra-axial"),
        abc2_volume_ml=7.5,
        severity="small",
    )
    collection = _lesion(
        uids,
        14,
        24.0,
        place=Place("left", "supratentorial", "frontal", "extra-axial", shape="crescent"),
        abc2_volume_ml=26.1,
        thickness_mm=9.0,
        severity="medium",
    )
    brainstem = _lesion(
        uids,
        16,
        1.5,
        place=Place("midline", "infratentorial", "brainstem", "intra-axial", approximate=True),
        severity="small",
    )
    unplaced = _lesion(uids, 18, 0.6)
    return _findings(uids, [parietal, collection, brainstem, unplaced], shift_mm=-6.0)


def _save(dataset: Dataset, path: Path) -> Path:
    dataset.save_as(path, enforce_file_format=True)
    return path


def _by_name(items: list[Any]) -> dict[str, Any]:
    return {item.name.meaning: item for item in items}


#: The evaluations a group may carry (highdicom lists every CODE item as one when asked
#: without a name: the finding and its category too).
_EVALUATIONS = (concepts.SEVERITY, concepts.MIDLINE_SHIFT_DIRECTION, concepts.SITE_CERTAINTY)


def _evaluations(group: Any) -> list[Any]:
    return [e for name in _EVALUATIONS for e in group.get_qualitative_evaluations(name=name)]


def _key_object_description(kos: Dataset) -> str:
    (text,) = [
        item.TextValue
        for item in kos.ContentSequence
        if item.ConceptNameCodeSequence[0].CodeValue == codes.DCM.KeyObjectDescription.value
    ]
    return str(text)


@pytest.fixture(scope="module")
def placed_report(source, tmp_path_factory: pytest.TempPathFactory) -> tuple[Findings, Path, Path]:
    uids, headers = source
    context = _context(uids, headers)
    prediction = _placed(uids)
    folder = tmp_path_factory.mktemp("placed")
    sr = _save(build_sr(prediction, headers, context), folder / "sr.dcm")
    kos = _save(build_kos(prediction, headers, context), folder / "kos.dcm")
    return prediction, sr, kos


def test_located_results_are_valid_dicom(placed_report) -> None:
    _, sr_path, kos_path = placed_report
    assert dciodvfy_errors(sr_path) == []
    assert dciodvfy_errors(kos_path) == []
    dump = subprocess.run([require_tool("dsrdump"), str(sr_path)], capture_output=True, text=True)
    assert dump.returncode == 0 and dump.stderr == ""
    assert '"Parietal lobe"' in dump.stdout and '"Midline shift"' in dump.stdout


def test_each_lesion_names_its_region_side_and_relation(placed_report) -> None:
    _, sr_path, _ = placed_report
    groups = hd.sr.srread(sr_path).content.get_planar_roi_measurement_groups()
    assert [g.tracking_identifier for g in groups] == [
        "Lesion 1 (right parietal)",
        "Lesion 2 (left frontal)",
        "Lesion 3 (midline brainstem, approximate)",
        "Lesion 4",
    ]
    sites = [g.finding_sites[0] for g in groups]
    assert [s.value for s in sites] == [
        codes.SCT.ParietalLobe,
        codes.SCT.FrontalLobe,
        codes.SCT.BrainStem,
        codes.SCT.Brain,
    ]
    assert [s.laterality for s in sites] == [
        codes.SCT.Right,
        codes.SCT.Left,
        codes.SCT.Midline,
        None,
    ]
    assert [s.topographical_modifier for s in sites] == [
        concepts.RELATIONS["intra-axial"],
        concepts.RELATIONS["extra-axial"],
        concepts.RELATIONS["intra-axial"],
        None,
    ]


def test_sizes_are_measured_in_ucum_units(placed_report) -> None:
    _, sr_path, _ = placed_report
    parietal, collection, brainstem, unplaced = hd.sr.srread(
        sr_path
    ).content.get_planar_roi_measurement_groups()
    first = _by_name(parietal.get_measurements())
    abc2 = first["Volume of ellipsoid"]
    assert (abc2.value, abc2.unit.value) == (7.5, "ml")
    assert abc2.method == concepts.ABC2_METHOD
    assert first["Volume"].value == 8.0  # the mask's, still there
    assert "Thickness" not in first and "Midline shift" not in first

    second = _by_name(collection.get_measurements())
    thickness = second["Thickness"]
    assert (thickness.value, thickness.unit.value) == (9.0, "mm")
    assert thickness.name == concepts.THICKNESS
    assert "Volume of ellipsoid" not in _by_name(brainstem.get_measurements())
    assert set(_by_name(unplaced.get_measurements())) == {
        "Area",
        "Long axis",
        "Volume",
        "Mean Attenuation Coefficient",
        "Probability",
    }


def test_the_largest_lesion_carries_the_midline_shift_and_its_direction(placed_report) -> None:
    _, sr_path, _ = placed_report
    groups = hd.sr.srread(sr_path).content.get_planar_roi_measurement_groups()
    carriers = [g for g in groups if g.get_measurements(name=concepts.MIDLINE_SHIFT)]
    assert [g.tracking_identifier for g in carriers] == ["Lesion 2 (left frontal)"]
    (shift,) = carriers[0].get_measurements(name=concepts.MIDLINE_SHIFT)
    assert (shift.value, shift.unit.value) == (6.0, "mm")  # the size, without its sign
    (direction,) = carriers[0].get_qualitative_evaluations(name=concepts.MIDLINE_SHIFT_DIRECTION)
    assert direction.value == codes.SCT.Right  # septum pushed to the patient's right
    scheme = dcmread(sr_path).CodingSchemeIdentificationSequence[0]
    assert scheme.CodingSchemeDesignator == concepts.PRIVATE_SCHEME


def test_size_band_and_approximate_location_are_evaluations(placed_report) -> None:
    _, sr_path, _ = placed_report
    groups = hd.sr.srread(sr_path).content.get_planar_roi_measurement_groups()
    bands = [
        [e.value for e in g.get_qualitative_evaluations(name=concepts.SEVERITY)] for g in groups
    ]
    assert bands == [[codes.SCT.Small], [codes.SCT.Medium], [codes.SCT.Small], []]
    flagged = [
        g.tracking_identifier
        for g in groups
        if [e.value for e in g.get_qualitative_evaluations(name=concepts.SITE_CERTAINTY)]
        == [concepts.UNCERTAIN]
    ]
    assert flagged == ["Lesion 3 (midline brainstem, approximate)"]
    assert _evaluations(groups[3]) == []


def test_the_impression_comes_first_in_the_report_and_the_key_object_note(
    placed_report,
) -> None:
    prediction, sr_path, kos_path = placed_report
    impression = prediction.impression()
    assert impression.startswith("Medium left frontal crescent-shaped extra-axial")
    assert impression.endswith("midline shift 6 mm to the right.")
    evaluations = dcmread(sr_path).ContentSequence[-1].ContentSequence
    assert evaluations[0].ConceptCodeSequence[0].CodeValue == concepts.PRESENT.value
    second = evaluations[1]
    assert second.ValueType == "TEXT" and second.TextValue == impression
    assert second.ConceptNameCodeSequence[0].CodeValue == concepts.IMPRESSION.value
    assert evaluations[2].TextValue == prediction.verdict()

    description = _key_object_description(dcmread(kos_path))
    assert description.startswith(f"{prediction.verdict()}. {impression} ")
    assert description.endswith("research and demonstration only.")
    assert len(description) <= DESCRIPTION_LIMIT


def test_a_long_note_is_cut_before_the_use_statement(source) -> None:
    uids, headers = source
    context = _context(uids, headers)
    many = [
        _lesion(
            uids, 10 + n, 1.0 + n, place=Place("left", "supratentorial", "temporal", "intra-axial")
        )
        for n in range(10)
    ]
    prediction = _findings(uids, many, shift_mm=1.0)
    long_use = WriterContext(
        context.identity, context.weights_sha256, clinical_use=True, intended_use="x" * 1000
    )
    kos = build_kos(prediction, headers, long_use)
    text = _key_object_description(kos)
    assert len(text) == DESCRIPTION_LIMIT and text.endswith("x" * 1000)


def test_old_records_write_the_report_as_before(source, tmp_path: Path) -> None:
    uids, headers = source
    context = _context(uids, headers)
    prediction = _findings(uids, [_lesion(uids, 12, 8.3), _lesion(uids, 15, 0.4)], None)
    path = _save(build_sr(prediction, headers, context), tmp_path / "sr.dcm")
    assert dciodvfy_errors(path) == []
    written = dcmread(path)
    assert "CodingSchemeIdentificationSequence" not in written
    groups = hd.sr.srread(path).content.get_planar_roi_measurement_groups()
    assert [g.tracking_identifier for g in groups] == ["Lesion 1", "Lesion 2"]
    for group in groups:
        (site,) = group.finding_sites
        assert site.value == concepts.FINDING_SITE and not hasattr(site, "ContentSequence")
        assert len(group.get_measurements()) == 5
        assert _evaluations(group) == []
    # No anatomy read: the impression says nothing of a midline shift.
    assert "midline" not in written.ContentSequence[-1].ContentSequence[1].TextValue


def test_a_small_shift_has_no_direction(source) -> None:
    uids, headers = source
    lesion = _lesion(
        uids, 12, 3.0, place=Place("right", "supratentorial", "occipital", "intra-axial")
    )
    sr = build_sr(_findings(uids, [lesion], shift_mm=1.2), headers, _context(uids, headers))
    (group,) = hd.sr.Comprehensive3DSR.from_dataset(sr).content.get_planar_roi_measurement_groups()
    (shift,) = group.get_measurements(name=concepts.MIDLINE_SHIFT)
    assert shift.value == 1.2
    assert group.get_qualitative_evaluations(name=concepts.MIDLINE_SHIFT_DIRECTION) == []


def test_every_word_of_the_place_vocabulary_has_a_code() -> None:
    assert set(concepts.REGIONS) == set(REGIONS)
    assert set(concepts.LATERALITIES) == set(SIDES) - {""}
    assert set(concepts.RELATIONS) == set(RELATIONS)
    assert set(concepts.SEVERITIES) == set(SEVERITIES)
    assert all(c.scheme_designator == "SCT" for c in concepts.REGIONS.values())
    assert concepts.LATERALITIES["midline"].value == "261129000"  # not the statistical median
