"""dcmtk's storescu pushes every shared CT series into the node; each file reads back."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import dcmread

from assistant.intake.receiver import Receiver
from tests.helpers import assert_stored_as_sent, files_under, instance_count
from tests.peers.dcmtk import STORESCU_SYNTAX_FLAGS, storescu
from tests.support.ct import dicom_files, shared_ct

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    "folder",
    [
        "ge_head_tilted",
        "philips_brain_phantom_5mm",
        "philips_phantom_141",
        "philips_exam_summary_sc",
    ],
)
def test_storescu_series_is_stored_as_sent(node: Receiver, folder: str) -> None:
    files = dicom_files(shared_ct(folder))
    done = storescu(node.scp.port, files)
    assert done.returncode == 0, done.stderr
    assert instance_count(node) == len(files)
    assert_stored_as_sent(node, files)


def test_every_wg04_transfer_syntax_is_stored_without_recompression(node: Receiver) -> None:
    sent: list[Path] = []
    for folder in sorted(p for p in shared_ct("wg04_compressed").iterdir() if p.is_dir()):
        files = sorted(folder.iterdir())
        syntax = dcmread(files[0], stop_before_pixels=True).file_meta.TransferSyntaxUID
        flag = STORESCU_SYNTAX_FLAGS.get(str(syntax))
        done = storescu(node.scp.port, files, extra=(flag,) if flag else ())
        assert done.returncode == 0, f"{folder.name}: {done.stderr}"
        sent += files
    assert len(sent) == 14
    assert instance_count(node) == 14
    assert_stored_as_sent(node, sent, same_syntax=True)


def test_deflated_transfer_is_stored_deflated_and_reads_back(node: Receiver) -> None:
    files = dicom_files(shared_ct("philips_brain_phantom_5mm"))[:3]
    done = storescu(node.scp.port, files, extra=("-xd",))
    assert done.returncode == 0, done.stderr
    assert_stored_as_sent(node, files)
    stored = next(node.store.root.rglob("*.dcm"))
    assert dcmread(stored).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1.99"


def test_directory_file_is_refused_cleanly(node: Receiver) -> None:
    dirfile = shared_ct("philips_brain_phantom_5mm") / "DIRFILE"
    done = storescu(node.scp.port, [dirfile], extra=("--no-halt", "-v"))
    assert "Received Store Response (Error: CannotUnderstand)" in done.stdout + done.stderr
    assert files_under(node.store.root) == set()
    assert instance_count(node) == 0


def test_duplicate_instances_are_stored_once_and_answered_success(node: Receiver) -> None:
    files = dicom_files(shared_ct("philips_brain_phantom_5mm"))[:5]
    for _ in range(2):
        done = storescu(node.scp.port, files)
        assert done.returncode == 0, done.stderr
    assert instance_count(node) == 5
    assert len(list(node.store.root.rglob("*.dcm"))) == 5
