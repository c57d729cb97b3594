"""Series completion: the quiet period, early completion after release, reopening."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid
from sqlalchemy import select

from assistant.db import CompletionReason, Series, SeriesState
from assistant.intake.completion import is_contiguous, main_stack_positions
from assistant.intake.receiver import Receiver
from dicom_node import send_files
from tests.peers.dcmtk import storescu
from tests.peers.tools import wait_until
from tests.support.ct import dicom_files, shared_ct


@pytest.mark.parametrize(
    ("positions", "expected"),
    [
        ([0.0, 5.0, 10.0, 15.0], True),
        ([15.0, 0.0, 10.0, 5.0], True),  # arrival order does not matter
        ([0.0, 5.0, 15.0, 20.0], False),  # one slice missing
        ([0.0, 1.1, 8.5, 9.6, 17.0], False),  # irregular spacing waits for the quiet period
        ([0.0, 5.0, 5.0, 10.0], False),  # two stacks at the same positions
        ([0.0, 5.0, None, 10.0], False),  # a slice without position
        ([0.0, 5.0], False),  # too few to judge
        ([-7.5, -2.5, 2.5, 7.49], True),
    ],
)
def test_is_contiguous(positions: list[float | None], expected: bool) -> None:
    assert is_contiguous(positions) is expected


def test_a_localizer_does_not_hold_the_stack_back() -> None:
    axial, sagittal = "1\\0\\0\\0\\1\\0", "0\\1\\0\\0\\0\\-1"
    rows = [(0.0, axial), (5.0, axial), (-120.0, sagittal), (10.0, axial), (15.0, axial)]
    assert main_stack_positions(rows) == [0.0, 5.0, 10.0, 15.0]
    assert is_contiguous(main_stack_positions(rows))
    assert main_stack_positions([]) == []


def _series(node: Receiver) -> Series:
    with node.db.sessions() as session:
        return session.scalars(select(Series)).one()


def _send(node: Receiver, files: list[Path]) -> None:
    results = send_files(files, host="127.0.0.1", port=node.scp.port, called_ae="RADASSIST")
    assert all(r.outcome == "sent" for r in results), results


def test_contiguous_series_completes_when_its_association_is_released(node: Receiver) -> None:
    done = storescu(node.scp.port, dicom_files(shared_ct("philips_brain_phantom_5mm")))
    assert done.returncode == 0, done.stderr
    series = wait_until(
        lambda: (s := _series(node)).state is SeriesState.COMPLETE and s, timeout=10
    )
    assert series.completion_reason is CompletionReason.CONTIGUOUS_AFTER_RELEASE
    assert series.instance_count == 28


def test_series_with_a_gap_waits_for_the_quiet_period(start_node: Callable[..., Receiver]) -> None:
    node = start_node(quiet_seconds=2.0)
    files = dicom_files(shared_ct("philips_brain_phantom_5mm"))
    with_gap = files[:10] + files[11:]
    _send(node, with_gap)
    assert _series(node).state is SeriesState.RECEIVING  # released, but a slice is missing
    series = wait_until(
        lambda: (s := _series(node)).state is SeriesState.COMPLETE and s, timeout=20
    )
    assert series.completion_reason is CompletionReason.QUIET_PERIOD


def test_irregular_series_completes_after_the_quiet_period(
    start_node: Callable[..., Receiver],
) -> None:
    node = start_node(quiet_seconds=2.0)
    _send(node, dicom_files(shared_ct("ge_head_tilted")))
    assert _series(node).state is SeriesState.RECEIVING
    series = wait_until(
        lambda: (s := _series(node)).state is SeriesState.COMPLETE and s, timeout=20
    )
    assert series.completion_reason is CompletionReason.QUIET_PERIOD
    assert series.instance_count == 28


def test_late_instance_reopens_a_complete_series(node: Receiver, tmp_path: Path) -> None:
    files = dicom_files(shared_ct("philips_brain_phantom_5mm"))
    _send(node, files)
    wait_until(lambda: _series(node).state is SeriesState.COMPLETE, timeout=10)

    late = dcmread(files[0])  # one more slice, 5 mm beyond the last, same series
    positions = sorted(
        float(dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]) for f in files
    )
    late.SOPInstanceUID = late.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    late.ImagePositionPatient = [*late.ImagePositionPatient[:2], positions[-1] + 5.0]
    late.save_as(tmp_path / "late.dcm")
    _send(node, [tmp_path / "late.dcm"])

    series = wait_until(
        lambda: (s := _series(node)).state is SeriesState.COMPLETE and s, timeout=10
    )
    assert series.reopened_count == 1
    assert series.instance_count == 29
