"""Bad input gets its failure status, changes nothing on disk, and the node keeps serving."""

from __future__ import annotations

import pytest
from pydicom import dcmread
from pydicom.uid import CTImageStorage

from assistant.intake.receiver import Receiver
from dicom_node import Status
from tests.helpers import encode, files_under, instance_count, raw_c_store
from tests.peers.dcmtk import echoscu, storescu
from tests.support.ct import dicom_files, shared_ct

pytestmark = pytest.mark.integration


@pytest.fixture
def slice_dataset():
    return dcmread(dicom_files(shared_ct("philips_brain_phantom_5mm"))[0])


def _send(
    node: Receiver, dataset, *, sop_instance: str | None = None, cut: slice | None = None
) -> int | None:
    encoded = encode(dataset)
    if cut is not None:
        encoded = encoded[cut]
    uid = (
        sop_instance if sop_instance is not None else str(dataset.get("SOPInstanceUID", "1.2.3.4"))
    )
    return raw_c_store(node.scp.port, CTImageStorage, uid, encoded)


def test_truncated_header_cannot_be_understood(node: Receiver, slice_dataset) -> None:
    before = files_under(node.settings.storage.data_dir / "instances")
    middle_of_study_uid = encode(slice_dataset).index(slice_dataset.StudyInstanceUID.encode()) + 6
    status = _send(node, slice_dataset, cut=slice(0, middle_of_study_uid))
    assert status == Status.CANNOT_UNDERSTAND
    assert files_under(node.settings.storage.data_dir / "instances") == before
    assert echoscu(node.scp.port)


def test_truncated_pixel_data_cannot_be_understood(node: Receiver, slice_dataset) -> None:
    assert _send(node, slice_dataset, cut=slice(0, -1000)) == Status.CANNOT_UNDERSTAND
    assert files_under(node.store.root) == set()
    assert instance_count(node) == 0
    assert echoscu(node.scp.port)


def test_missing_sop_instance_uid_is_refused(node: Receiver, slice_dataset) -> None:
    uid = slice_dataset.SOPInstanceUID
    del slice_dataset.SOPInstanceUID
    assert _send(node, slice_dataset, sop_instance=uid) == Status.MISSING_OR_INVALID_UID
    assert files_under(node.store.root) == set()
    assert echoscu(node.scp.port)


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")  # crafting it is the point
@pytest.mark.parametrize("keyword", ["SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"])
def test_uid_crafted_to_escape_the_data_folder_is_refused(
    node: Receiver, slice_dataset, keyword: str
) -> None:
    data_dir = node.settings.storage.data_dir
    before = files_under(data_dir.parent)
    setattr(slice_dataset, keyword, "../../../../tmp/escaped")
    status = _send(node, slice_dataset, sop_instance=str(slice_dataset.SOPInstanceUID))
    assert status == Status.MISSING_OR_INVALID_UID
    after = files_under(data_dir.parent)
    assert {p for p in after - before if not p.startswith("var/radassist.db")} == set()
    assert echoscu(node.scp.port)


def test_dataset_that_contradicts_its_request_is_refused(node: Receiver, slice_dataset) -> None:
    status = _send(node, slice_dataset, sop_instance="1.2.3.4.5.6.7")
    assert status == Status.DATASET_DOES_NOT_MATCH_SOP_CLASS
    assert files_under(node.store.root) == set()


def test_unknown_calling_ae_is_rejected_at_association(start_node) -> None:
    node = start_node(allowed_callers=("GOODPEER",))
    files = dicom_files(shared_ct("philips_brain_phantom_5mm"))[:2]
    refused = storescu(node.scp.port, files, aet="EVIL")
    assert refused.returncode != 0
    assert "reject" in (refused.stdout + refused.stderr).lower()
    assert files_under(node.store.root) == set()
    accepted = storescu(node.scp.port, files, aet="GOODPEER")
    assert accepted.returncode == 0, accepted.stderr
    assert instance_count(node) == 2


def test_node_keeps_serving_after_a_burst_of_bad_input(node: Receiver, slice_dataset) -> None:
    encoded = encode(slice_dataset)
    for cut in range(0, len(encoded), len(encoded) // 40):
        raw_c_store(node.scp.port, CTImageStorage, slice_dataset.SOPInstanceUID, encoded[:cut])
    assert echoscu(node.scp.port)
    assert (
        raw_c_store(node.scp.port, CTImageStorage, slice_dataset.SOPInstanceUID, encoded)
        == Status.SUCCESS
    )
    assert instance_count(node) == 1
