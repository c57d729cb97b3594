"""An instance sent again: the same content is stored once; other content is a new version
(replace), kept out of use (keep-first) or refused (reject) — and never lost silently."""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, JPEGLSLossless
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from assistant.analysis.imaging.synthetic import write_demo_series
from assistant.db import Instance, InstanceChange, Job, Patient, Series, SeriesState, Study
from assistant.intake.receiver import Receiver
from assistant.intake.stow import StowIntake
from assistant.settings import StorageSettings
from dicom_node import Status
from dicom_node.encoding import split_part10
from tests.helpers import c_store, files_under, raw_c_store, stored_path

pytestmark = pytest.mark.integration


def _changed(path: Path, folder: Path, corner: int = 16) -> Path:
    """The same SOP Instance UID with other pixels (a corrected image)."""
    dataset = dcmread(path)
    pixels = dataset.pixel_array.copy()
    pixels[:corner, :corner] = pixels.max()
    dataset.PixelData = pixels.tobytes()
    out = folder / f"changed-{path.name}"
    dataset.save_as(out)
    return out


def _series_state(node: Receiver) -> tuple[SeriesState, int]:
    with node.db.sessions() as session:
        series = session.scalars(select(Series)).one()
        return series.state, series.reopened_count


def _wait_complete(node: Receiver) -> None:
    for _ in range(100):
        if _series_state(node)[0] is SeriesState.COMPLETE:
            return
        time.sleep(0.1)
    raise AssertionError("the series did not complete")


def _job_digests(node: Receiver, at_least: int) -> list[str]:
    """The jobs' input digests, once `at_least` distinct ones are recorded (or after 5 s):
    the completion hook records a series' job just after the series is marked complete."""
    for _ in range(50):
        with node.db.sessions() as session:
            digests = list(session.scalars(select(Job.input_digest)))
        if len(set(digests)) >= at_least:
            break
        time.sleep(0.1)
    return digests


def _changes(node: Receiver) -> list[tuple[str, int, str]]:
    with node.db.sessions() as session:
        return [
            (c.action, c.version, c.kept_path)
            for c in session.scalars(select(InstanceChange).order_by(InstanceChange.id))
        ]


def _start(start_node, tmp_path: Path, policy: str) -> Receiver:  # type: ignore[no-untyped-def]
    storage = StorageSettings(data_dir=tmp_path / "var", on_changed_duplicate=policy)
    return start_node(storage=storage, quiet_seconds=0.3)


def test_an_identical_resend_is_stored_once(start_node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    node = _start(start_node, tmp_path, "replace")
    files = write_demo_series(tmp_path / "s", count=3, seed=31)
    for path in files + files:
        assert c_store(node.scp.port, path) == 0
    assert _changes(node) == []
    assert not any("versions" in f for f in files_under(node.settings.storage.instances_dir))


def test_a_changed_copy_replaces_the_stored_one_and_reopens_the_series(
    start_node,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    node = _start(start_node, tmp_path, "replace")
    files = write_demo_series(tmp_path / "s", count=3, seed=32)
    for path in files:
        assert c_store(node.scp.port, path) == 0
    _wait_complete(node)
    original = stored_path(node, dcmread(files[1])).read_bytes()

    changed = _changed(files[1], tmp_path)
    assert c_store(node.scp.port, changed) == 0

    stored = stored_path(node, dcmread(changed))
    assert np.array_equal(dcmread(stored).pixel_array, dcmread(changed).pixel_array)
    kept = stored.parent / "versions" / f"{stored.stem}.v1.dcm"
    assert kept.read_bytes() == original  # nothing deleted
    relative = kept.relative_to(node.settings.storage.data_dir).as_posix()
    assert _changes(node) == [("replaced", 2, relative)]
    with node.db.sessions() as session:
        assert session.scalars(select(Instance.version).order_by(Instance.id)).all() == [1, 2, 1]
    # Reopened, complete again after the quiet period, and analysed again: a second job.
    _wait_complete(node)
    assert _series_state(node) == (SeriesState.COMPLETE, 1)
    digests = _job_digests(node, at_least=2)
    assert len(set(digests)) == 2

    # A second correction is version 3; the version-2 copy is kept too.
    again = _changed(changed, tmp_path, corner=32)
    assert c_store(node.scp.port, again) == 0
    assert (stored.parent / "versions" / f"{stored.stem}.v2.dcm").read_bytes() != original
    assert [c[:2] for c in _changes(node)] == [("replaced", 2), ("replaced", 3)]


def test_a_transcoded_copy_of_the_same_image_is_not_a_change(start_node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    node = _start(start_node, tmp_path, "replace")
    (path,) = write_demo_series(tmp_path / "s", count=1, seed=33)
    assert c_store(node.scp.port, path) == 0
    dataset = dcmread(path)
    dataset.compress(JPEGLSLossless)
    transcoded = tmp_path / "transcoded.dcm"
    dataset.save_as(transcoded)
    assert c_store(node.scp.port, transcoded) == 0
    assert _changes(node) == []


def test_keep_first_keeps_the_changed_copy_out_of_use(start_node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    node = _start(start_node, tmp_path, "keep-first")
    (path,) = write_demo_series(tmp_path / "s", count=1, seed=34)
    assert c_store(node.scp.port, path) == 0
    original = stored_path(node, dcmread(path)).read_bytes()
    changed = _changed(path, tmp_path)
    assert c_store(node.scp.port, changed) == 0
    assert stored_path(node, dcmread(path)).read_bytes() == original
    ((action, version, kept),) = _changes(node)
    assert (action, version) == ("kept-first", 1)
    kept_file = node.settings.storage.data_dir / kept
    assert ".not-used-" in kept_file.name
    assert np.array_equal(dcmread(kept_file).pixel_array, dcmread(changed).pixel_array)


def test_reject_answers_a_named_failure_by_c_store_and_stow(start_node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    node = _start(start_node, tmp_path, "reject")
    (path,) = write_demo_series(tmp_path / "s", count=1, seed=35)
    assert c_store(node.scp.port, path) == 0
    before = files_under(node.settings.storage.instances_dir)
    changed = _changed(path, tmp_path)
    assert c_store(node.scp.port, changed) == Status.CHANGED_DUPLICATE == 0xC011
    (outcome,) = StowIntake(node.ingest).store_parts(
        [memoryview(changed.read_bytes())], None, "127.0.0.1"
    )
    assert outcome.status is Status.CHANGED_DUPLICATE
    assert "other content" in outcome.reason
    written = files_under(node.settings.storage.instances_dir) - before
    assert {Path(name).name for name in written} <= {".changes.lock"}  # no copy of it
    assert [c[0] for c in _changes(node)] == ["refused", "refused"]
    # The same content is still welcome.
    assert c_store(node.scp.port, path) == 0


def test_a_replacement_whose_row_was_lost_is_recorded_at_start_up(
    start_node, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    node = _start(start_node, tmp_path, "replace")
    (path,) = write_demo_series(tmp_path / "s", count=1, seed=36)
    assert c_store(node.scp.port, path) == 0
    final = stored_path(node, dcmread(path))
    # The files as a kill between the file swap and the row update leaves them.
    node.store.replace(final, [_changed(path, tmp_path).read_bytes()], f"{final.stem}.v1.dcm")
    assert node.ingest.record_unrecorded_replacements() == 1
    assert [c[:2] for c in _changes(node)] == [("replaced", 2)]
    assert node.ingest.record_unrecorded_replacements() == 0


def test_a_kill_before_the_swap_is_not_taken_for_a_replacement(start_node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    node = _start(start_node, tmp_path, "replace")
    (path,) = write_demo_series(tmp_path / "s", count=1, seed=37)
    assert c_store(node.scp.port, path) == 0
    final = stored_path(node, dcmread(path))
    kept = final.parent / "versions" / f"{final.stem}.v1.dcm"
    kept.parent.mkdir()
    os.link(final, kept)  # linked, not yet swapped
    assert node.ingest.record_unrecorded_replacements() == 0
    assert not kept.exists() and final.exists()
    assert _changes(node) == []


def test_a_failed_record_puts_the_earlier_copy_back(
    start_node,  # type: ignore[no-untyped-def]
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Unrecorded, a swapped file would make the sender's retry look identical: the
    correction would never be analysed."""
    node = _start(start_node, tmp_path, "replace")
    (path,) = write_demo_series(tmp_path / "s", count=1, seed=38)
    assert c_store(node.scp.port, path) == 0
    final = stored_path(node, dcmread(path))
    original = final.read_bytes()
    changed = _changed(path, tmp_path)

    def unavailable(*args: object, **kwargs: object) -> None:
        raise OperationalError("UPDATE instance", {}, Exception("database is locked"))

    monkeypatch.setattr(node.ingest, "_record_change", unavailable)
    assert c_store(node.scp.port, changed) == Status.OUT_OF_RESOURCES
    assert final.read_bytes() == original
    assert not (final.parent / "versions" / f"{final.stem}.v1.dcm").exists()
    monkeypatch.undo()
    assert c_store(node.scp.port, changed) == 0  # the retry is a replacement
    assert [c[:2] for c in _changes(node)] == [("replaced", 2)]


def test_a_changed_copy_of_another_patient_is_refused_before_any_write(
    start_node,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    node = _start(start_node, tmp_path, "replace")
    (path,) = write_demo_series(tmp_path / "s", count=1, seed=39)
    assert c_store(node.scp.port, path) == 0
    before = files_under(node.settings.storage.instances_dir)
    other = dcmread(_changed(path, tmp_path))
    other.PatientID = "SOMEONE-ELSE"
    other_path = tmp_path / "other.dcm"
    other.save_as(other_path)
    assert c_store(node.scp.port, other_path) == Status.PATIENT_MISMATCH
    assert files_under(node.settings.storage.instances_dir) == before
    assert _changes(node) == []


def test_a_re_encoded_copy_is_not_a_change(start_node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """An archive re-encodes what it sends back (here: group lengths written, the same
    transfer syntax): the same dataset, stored once."""
    node = _start(start_node, tmp_path, "reject")
    (path,) = write_demo_series(tmp_path / "s", count=1, seed=40)
    assert c_store(node.scp.port, path) == 0
    blob = path.read_bytes()
    _meta, body = split_part10(blob)
    assert dcmread(path).file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    # pydicom never writes group lengths: add one by hand, as some archives do.
    group_length = struct.pack("<HH2sHL", 0x0008, 0x0000, b"UL", 4, 0)
    original = dcmread(path)
    sent = group_length + bytes(body)
    assert raw_c_store(node.scp.port, original.SOPClassUID, original.SOPInstanceUID, sent) == 0
    assert _changes(node) == []
    # The same bytes with one pixel changed are a change (the check can fail).
    changed = bytearray(sent)
    changed[-2:] = b"\x00\x7f"
    assert (
        raw_c_store(node.scp.port, original.SOPClassUID, original.SOPInstanceUID, bytes(changed))
        == Status.CHANGED_DUPLICATE
    )


def test_a_corrected_name_reaches_the_patient_and_study(start_node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    node = _start(start_node, tmp_path, "replace")
    (path,) = write_demo_series(tmp_path / "s", count=1, seed=41)
    assert c_store(node.scp.port, path) == 0
    corrected = dcmread(path)
    corrected.PatientName = "Corrected^Name"
    corrected.AccessionNumber = "ACC-FIXED"
    corrected_path = tmp_path / "corrected.dcm"
    corrected.save_as(corrected_path)
    assert c_store(node.scp.port, corrected_path) == 0
    with node.db.sessions() as session:
        assert session.scalars(select(Patient.patient_name)).one() == "Corrected^Name"
        assert session.scalars(select(Study.accession_number)).one() == "ACC-FIXED"
