"""Helpers shared by tests: encoding datasets, sending crafted C-STOREs, counting what
was stored, and logging in to the dashboard."""

from __future__ import annotations

import re
import tempfile
import warnings
from pathlib import Path

from flask.testing import FlaskClient
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, _config
from sqlalchemy import func, select

from assistant.db import Instance
from assistant.intake.receiver import Receiver
from dicom_node.encoding import encode_file_meta

NODE_AE = "RADASSIST"


def encode(dataset: Dataset, implicit: bool = False) -> bytes:
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, implicit
    write_dataset(buffer, dataset)
    return buffer.getvalue()


def raw_c_store(
    port: int,
    sop_class: str,
    sop_instance: str,
    encoded: bytes,
    transfer_syntax: str = ExplicitVRLittleEndian,
    calling_ae: str = "CRAFTER",
    must_connect: bool = True,
) -> int | None:
    """Send `encoded` as the dataset of one C-STORE, byte for byte (no checks).

    pynetdicom sends a file's dataset bytes as they are when given a path, so the
    crafted bytes go into a temporary Part 10 file first. Without `must_connect`, a
    refused association is None rather than a failed assertion.
    """
    ae = AE(ae_title=calling_ae)
    ae.add_requested_context(sop_class, transfer_syntax)
    assoc = ae.associate("127.0.0.1", port, ae_title=NODE_AE)
    if not assoc.is_established:
        assert not must_connect, "association not established"
        return None
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "crafted.dcm"
        path.write_bytes(
            encode_file_meta(sop_class, sop_instance, transfer_syntax, calling_ae) + encoded
        )
        _config.STORE_SEND_CHUNKED_DATASET = True  # send the file's bytes, not a re-encoding
        try:
            with warnings.catch_warnings():  # crafted UIDs are the point of the exercise
                warnings.simplefilter("ignore")
                response = assoc.send_c_store(path)
        finally:
            _config.STORE_SEND_CHUNKED_DATASET = False
            if assoc.is_established:
                assoc.release()
    return int(response.Status) if "Status" in response else None


def c_store(port: int, path: Path) -> int:
    """C-STORE one file to the node as a modality would (pynetdicom); its status."""
    dataset = dcmread(path)
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(dataset.SOPClassUID, dataset.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title=NODE_AE)
    assert assoc.is_established
    try:
        return int(assoc.send_c_store(dataset).Status)
    finally:
        assoc.release()


def stored_path(node: Receiver, dataset: Dataset) -> Path:
    return node.store.path_for(
        dataset.StudyInstanceUID, dataset.SeriesInstanceUID, dataset.SOPInstanceUID
    )


def instance_count(node: Receiver) -> int:
    with node.db.sessions() as session:
        return int(session.scalar(select(func.count(Instance.id))) or 0)


def files_under(folder: Path) -> set[str]:
    """Every file (hidden ones included) under `folder`, relative, for before/after checks."""
    return (
        {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}
        if folder.exists()
        else set()
    )


def assert_stored_as_sent(node: Receiver, files: list[Path], *, same_syntax: bool = False) -> None:
    """Each file reads back from the store with the same dataset and pixel data."""
    for path in files:
        sent = dcmread(path)
        stored = dcmread(stored_path(node, sent))
        # dcmtk's storescu drops Data Set Trailing Padding on the wire (WG04 REF has it).
        if "DataSetTrailingPadding" in sent and "DataSetTrailingPadding" not in stored:
            del sent.DataSetTrailingPadding
        assert stored == sent, f"{path.name}: stored dataset differs"
        if "PixelData" in sent:
            assert stored.PixelData == sent.PixelData, f"{path.name}: pixel data differs"
        if same_syntax:
            assert stored.file_meta.TransferSyntaxUID == sent.file_meta.TransferSyntaxUID


_TOKEN = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


def csrf_token(client: FlaskClient, path: str = "/login") -> str:
    """The CSRF token a browser would find on `path`."""
    html = client.get(path).get_data(as_text=True)
    match = _TOKEN.search(html)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def login(client: FlaskClient, user: tuple[str, str]) -> None:
    token = csrf_token(client)
    response = client.post(
        "/login", data={"username": user[0], "password": user[1], "csrf_token": token}
    )
    assert response.status_code == 302, response.get_data(as_text=True)
