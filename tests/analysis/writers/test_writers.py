"""SR, KOS and SEG built from findings on a real CT series: valid DICOM (dciodvfy,
dsrdump), readable by highdicom, with the content a viewer needs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import highdicom as hd
import numpy as np
import pytest
from pydicom import Dataset, dcmread

from assistant.analysis.imaging import read_series
from assistant.analysis.writers.context import WriterContext, evidence_header
from assistant.analysis.writers.kos import build_kos
from assistant.analysis.writers.seg import build_seg
from assistant.analysis.writers.sr import build_sr
from assistant.analysis.writers.uids import ResultIdentity
from assistant.db import input_digest
from assistant.findings import Findings, Lesion, ModelIdentity, SliceProbability, concepts
from tests.peers.dicom3tools import dciodvfy_errors
from tests.peers.tools import require_tool
from tests.support.ct import shared_ct


@pytest.fixture(scope="module")
def source() -> tuple[list[str], dict[str, Dataset]]:
    series = read_series(shared_ct("ge_head_tilted"))
    headers = {
        s.sop_instance_uid: evidence_header(dcmread(s.path, stop_before_pixels=True))
        for s in series.slices
    }
    return [s.sop_instance_uid for s in series.slices], headers


def _context(uids: list[str], headers: dict[str, Dataset], extra: str = "") -> WriterContext:
    series_uid = str(next(iter(headers.values())).SeriesInstanceUID)
    identity = ResultIdentity(series_uid, "test-model", "1.2.3", input_digest(uids) + extra)
    return WriterContext(identity, weights_sha256="ab" * 32)


def _positive(uids: list[str]) -> Findings:
    labels = np.zeros((len(uids), 64, 64), dtype=np.uint8)
    labels[12:15, 20:30, 30:42] = 1
    labels[20, 40:44, 10:14] = 2
    lesions = [
        Lesion(
            12,
            14,
            13,
            uids[13],
            [(240.0, 160.0), (336.0, 160.0), (336.0, 240.0), (240.0, 240.0)],
            area_mm2=930.0,
            longest_diameter_mm=60.1,
            volume_ml=8.3,
            mean_hu=68.0,
            probability=0.94,
            label=1,
        ),
        Lesion(
            20,
            20,
            20,
            uids[20],
            [(80.0, 320.0), (112.0, 320.0), (112.0, 352.0)],
            area_mm2=61.0,
            longest_diameter_mm=11.3,
            volume_ml=0.4,
            mean_hu=74.0,
            probability=0.71,
            label=2,
        ),
    ]
    return Findings(
        series_instance_uid="x",
        study_probability=0.93,
        positive=True,
        threshold=0.5,
        slices=[SliceProbability(uid, 0.9 if 12 <= n <= 20 else 0.1) for n, uid in enumerate(uids)],
        flagged_instance_uids=uids[12:21],
        lesions=lesions,
        model=ModelIdentity("test-model", "1.2.3"),
        lesion_labels=labels,
    )


def _negative(uids: list[str]) -> Findings:
    slices = [SliceProbability(u, 0.02) for u in uids]
    return Findings("x", 0.04, False, 0.5, slices, [], ModelIdentity("test-model", "1.2.3"))


def _save(dataset: Dataset, path: Path) -> Path:
    dataset.save_as(path, enforce_file_format=True)
    return path


def test_positive_results_are_valid_dicom_and_read_back(source, tmp_path: Path) -> None:
    uids, headers = source
    context = _context(uids, headers)
    prediction = _positive(uids)
    sr_path = _save(build_sr(prediction, headers, context), tmp_path / "sr.dcm")
    kos_path = _save(build_kos(prediction, headers, context), tmp_path / "kos.dcm")
    seg_path = _save(build_seg(prediction, headers, context), tmp_path / "seg.dcm")

    for path in (sr_path, kos_path, seg_path):
        assert dciodvfy_errors(path) == [], path.name
    dump = subprocess.run([require_tool("dsrdump"), str(sr_path)], capture_output=True, text=True)
    assert dump.returncode == 0 and dump.stderr == ""

    sr = hd.sr.srread(sr_path)
    groups = sr.content.get_planar_roi_measurement_groups()
    assert [g.tracking_identifier for g in groups] == ["Lesion 1", "Lesion 2"]
    assert len({g.tracking_uid for g in groups}) == 2
    region = groups[0].roi
    assert region.value_type.value == "SCOORD" and region.GraphicType == "POLYLINE"
    assert region.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == uids[13]
    graphic = np.asarray(region.GraphicData).reshape(-1, 2)
    assert (graphic[0] == graphic[-1]).all()  # closed
    names = {m.name.meaning: (m.value, m.unit.value) for m in groups[0].get_measurements()}
    assert names["Volume"] == (8.3, "ml") and names["Area"] == (930.0, "mm2")
    assert names["Long axis"][1] == "mm" and names["Probability"] == (94.0, "%")
    assert "NOT FOR CLINICAL USE" in sr.SeriesDescription
    assert "NOT FOR CLINICAL USE" in dump.stdout
    assert str(sr.StudyInstanceUID) == str(headers[uids[0]].StudyInstanceUID)
    assert sr.SeriesInstanceUID != headers[uids[0]].SeriesInstanceUID

    kos = dcmread(kos_path)
    referenced = [
        item.ReferencedSOPInstanceUID
        for series in kos.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence
        for item in series.ReferencedSOPSequence
    ]
    assert set(referenced) == set(uids[12:21])

    seg = hd.seg.segread(seg_path)
    assert seg.number_of_segments == 1
    sources = {
        ref.ReferencedSOPInstanceUID
        for ref in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence
    }
    assert sources == {uids[12], uids[13], uids[14], uids[20]}
    assert int(seg.Rows) == int(headers[uids[0]].Rows)


def test_negative_study_says_so_and_writes_no_kos_or_seg(source, tmp_path: Path) -> None:
    uids, headers = source
    context = _context(uids, headers)
    prediction = _negative(uids)
    path = _save(build_sr(prediction, headers, context), tmp_path / "sr.dcm")
    assert dciodvfy_errors(path) == []
    dump = subprocess.run([require_tool("dsrdump"), str(path)], capture_output=True, text=True)
    assert (
        f'Intracranial hemorrhage (disorder)")=({concepts.ABSENT.value},SCT,"Absent")>'
        in dump.stdout
    )
    assert hd.sr.srread(path).content.get_planar_roi_measurement_groups() == []
    assert build_kos(prediction, headers, context) is None
    assert build_seg(prediction, headers, context) is None


def test_uids_are_deterministic_and_change_with_the_inputs(source) -> None:
    uids, headers = source
    first = build_sr(_negative(uids), headers, _context(uids, headers))
    again = build_sr(_negative(uids), headers, _context(uids, headers))
    other = build_sr(_negative(uids), headers, _context(uids, headers, extra="late instance"))
    assert first.SOPInstanceUID == again.SOPInstanceUID
    assert first.SeriesInstanceUID == again.SeriesInstanceUID
    assert other.SOPInstanceUID != first.SOPInstanceUID


def test_a_new_report_names_the_one_it_supersedes(source, tmp_path: Path) -> None:
    uids, headers = source
    old = build_sr(_negative(uids), headers, _context(uids, headers))
    new = build_sr(_positive(uids), headers, _context(uids, headers, extra="2"), [old])
    path = _save(new, tmp_path / "sr.dcm")
    assert dciodvfy_errors(path) == []
    predecessor = new.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0]
    assert predecessor.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == old.SOPInstanceUID


def test_clinical_use_statement_follows_the_model_card(source) -> None:
    uids, headers = source
    context = _context(uids, headers)
    cleared = WriterContext(
        context.identity,
        context.weights_sha256,
        clinical_use=True,
        intended_use="Triage of non-contrast head CT.",
    )
    sr = build_sr(_negative(uids), headers, cleared)
    assert "NOT FOR CLINICAL USE" not in sr.SeriesDescription
    assert concepts.FINDING.value == "1386000"


def test_what_the_reading_left_out_is_said_in_the_sr(source, tmp_path: Path) -> None:
    from dataclasses import replace

    uids, headers = source
    note = "Read 28 of 29 images; left out localizer (scout): 1"
    prediction = replace(_negative(uids), notes=[note])
    assert prediction.summary().splitlines()[1] == note
    path = _save(build_sr(prediction, headers, _context(uids, headers)), tmp_path / "sr.dcm")
    assert dciodvfy_errors(path) == []
    comments = [
        item.TextValue
        for item in dcmread(path).ContentSequence[-1].ContentSequence
        if item.ValueType == "TEXT"
    ]
    assert note in comments


def test_no_two_models_results_share_a_series_number() -> None:
    """Every (model slot, source series, kind) gets its own Series Number, a valid IS."""
    from assistant.analysis.writers import result_series_number

    sources: list[int | None] = [None, *range(1, 1200), 99999, 2_000_000_000]
    seen: dict[int, tuple[int, int | None, str]] = {}
    for slot in range(100):
        for source in sources:
            for kind in ("sr", "kos", "seg"):
                number = result_series_number(kind, source, slot)
                assert 0 < number <= 2**31 - 1
                if source == 2_000_000_000:  # too long: falls back to the no-source number
                    assert number == result_series_number(kind, None, slot)
                    continue
                assert number not in seen, (slot, source, kind, seen.get(number))
                seen[number] = (slot, source, kind)
    assert result_series_number("sr", 2) == 9921 and result_series_number("sr", 2, 1) == 80121
