"""The helpers that judge by a real peer judge right: dciodvfy fails a file it cannot
read, one with errors, and allows one with only warnings."""

from __future__ import annotations

from pathlib import Path

from pydicom import dcmread

from assistant.analysis.imaging.synthetic import write_demo_series
from tests.peers.dicom3tools import dciodvfy_errors


def test_dciodvfy_allows_warnings_only(tmp_path: Path) -> None:
    [path] = write_demo_series(tmp_path / "demo", count=1)
    dataset = dcmread(path)
    dataset.add_new(0x00431001, "DS", "1.0")  # "Warning - Private tag without owner"
    dataset.save_as(path)
    assert dciodvfy_errors(path) == []


def test_dciodvfy_fails_a_file_with_errors(tmp_path: Path) -> None:
    [path] = write_demo_series(tmp_path / "demo", count=1)
    dataset = dcmread(path)
    del dataset.PatientName  # a Type 2 attribute of the Patient module
    dataset.save_as(path)
    assert any("PatientName" in line for line in dciodvfy_errors(path))


def test_dciodvfy_fails_a_file_it_cannot_read(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.dcm"
    garbage.write_bytes(b"garbage")
    assert dciodvfy_errors(garbage)
    assert dciodvfy_errors(tmp_path / "absent.dcm")  # "Abort - File open for read failed"
    truncated = tmp_path / "truncated.dcm"
    [whole] = write_demo_series(tmp_path / "demo", count=1)
    truncated.write_bytes(whole.read_bytes()[:5000])
    assert dciodvfy_errors(truncated)
