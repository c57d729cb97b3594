"""Two patients are never merged into one study: an instance whose Patient ID (or its
issuer) differs from its study's is refused, by C-STORE and STOW-RS alike, before any
byte of it is written."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from assistant.analysis.imaging.synthetic import write_demo_series
from assistant.intake.stow import StowIntake
from dicom_node import Status
from tests.helpers import c_store, files_under, instance_count

pytestmark = pytest.mark.integration


def _other_patient(path: Path, folder: Path, *, new_series: bool, issuer: bool = False) -> Path:
    dataset = dcmread(path)
    if issuer:
        dataset.IssuerOfPatientID = "ANOTHER HOSPITAL"
    else:
        dataset.PatientID = "SOMEONE-ELSE"
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    if new_series:
        dataset.SeriesInstanceUID = generate_uid()
    out = folder / f"other-{dataset.SOPInstanceUID}.dcm"
    dataset.save_as(out)
    return out


def test_another_patients_instance_is_refused_by_c_store(start_node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    node = start_node()
    first, second = write_demo_series(tmp_path / "series", count=2, seed=4711)
    assert c_store(node.scp.port, first) == 0
    files_before = len(files_under(node.settings.storage.instances_dir))
    for new_series in (False, True):  # the same series, or a new one in the same study
        other = _other_patient(second, tmp_path, new_series=new_series)
        assert c_store(node.scp.port, other) == Status.PATIENT_MISMATCH == 0xC010
    assert (
        c_store(node.scp.port, _other_patient(second, tmp_path, new_series=False, issuer=True))
        == 0xC010
    )
    assert instance_count(node) == 1
    assert len(files_under(node.settings.storage.instances_dir)) == files_before  # not written
    assert c_store(node.scp.port, second) == 0  # the study's own patient: stored


def test_another_patients_instance_is_refused_by_stow(start_node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    node = start_node()
    first, second = write_demo_series(tmp_path / "series", count=2, seed=4712)
    intake = StowIntake(node.ingest)
    other = _other_patient(second, tmp_path, new_series=True)
    outcomes = intake.store_parts(
        [memoryview(first.read_bytes()), memoryview(other.read_bytes())], None, "127.0.0.1"
    )
    assert [o.status for o in outcomes] == [Status.SUCCESS, Status.PATIENT_MISMATCH]
    assert "Patient ID" in outcomes[1].reason
    assert instance_count(node) == 1
