"""Hostile input with Hypothesis: mutated datasets (wrong VRs, huge lengths, truncations),
odd transfer syntaxes and broken PDUs into the SCP; random bodies into STOW-RS. Nothing
may crash the node, leave a partial file, or stop it answering C-ECHO.
SOAK=1 (make soak) runs 1,000 cases of each kind instead of a few hundred."""

from __future__ import annotations

import contextlib
import os
import socket
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from assistant.intake.processes import ReceiverProcesses
from assistant.intake.receiver import Receiver
from assistant.settings import NodeSettings
from dicom_node.scp import ARTIM_SECONDS
from tests.helpers import NODE_AE, encode, raw_c_store
from tests.peers.dcmtk import echoscu
from tests.peers.tools import wait_until

SOAK = os.environ.get("SOAK", "") not in ("", "0")
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1800 if SOAK else 300)]
CASES = 1000 if SOAK else 300
FUZZ = settings(
    max_examples=CASES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
SYNTAXES = [
    ExplicitVRLittleEndian,
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.2",
    "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.90",
    "1.2.3.4.5.6.7",
]


def small_ct() -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.2"
    ds.PatientID, ds.PatientName, ds.Modality = "FUZZ", "FUZZ^CASE", "CT"
    ds.Rows = ds.Columns = 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelData = np.arange(64, dtype=np.uint16).tobytes()
    return ds


mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10_000), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 10_000), st.just(0)),
    st.tuples(
        st.just("length"),
        st.integers(0, 10_000),
        st.sampled_from([0xFFFFFFFF, 0x7FFFFFFF, 0xFFFF, 12345]),
    ),
    st.tuples(st.just("insert"), st.integers(0, 10_000), st.integers(0, 255)),
    st.tuples(
        st.just("vr"),
        st.integers(0, 10_000),
        st.sampled_from([b"SQ", b"UN", b"OB", b"XX", b"US", b"FD"]),
    ),
)


def mutate(data: bytes, steps: list[tuple[str, int, object]]) -> bytes:
    buffer = bytearray(data)
    for kind, offset, value in steps:
        if not buffer:
            break
        at = offset % len(buffer)
        if kind == "flip":
            buffer[at] ^= int(value)  # type: ignore[arg-type]
        elif kind == "truncate":
            del buffer[at:]
        elif kind == "length":
            buffer[at : at + 4] = struct.pack("<I", int(value))  # type: ignore[arg-type]
        elif kind == "insert":
            buffer[at:at] = bytes([int(value)]) * 7  # type: ignore[arg-type]
        elif kind == "vr":
            buffer[at : at + 2] = value  # type: ignore[assignment]
    return bytes(buffer)


def no_partial_files(instances: Path) -> bool:
    return not [p for p in instances.rglob("*") if p.is_file() and not p.name.endswith(".dcm")]


@pytest.fixture(params=[1, 2], ids=["one-process", "two-receiver-processes"])
def receiving(request: pytest.FixtureRequest, start_node: Callable[..., Receiver]) -> Receiver:
    """The node, with its SCP in its own process or in two receiver processes."""
    settings = NodeSettings(ae_title=NODE_AE, host="127.0.0.1", port=0, processes=request.param)
    return start_node(node=settings)


def no_receiver_died(node: Receiver) -> bool:
    return not isinstance(node.scp, ReceiverProcesses) or node.scp.restarts == 0


def test_mutated_datasets_never_crash_the_scp(receiving: Receiver) -> None:
    node = receiving
    base = encode(small_ct())
    cases = {"n": 0}

    @FUZZ
    @given(steps=st.lists(mutation, min_size=1, max_size=4), syntax=st.sampled_from(SYNTAXES))
    def case(steps, syntax) -> None:  # type: ignore[no-untyped-def]
        cases["n"] += 1
        # The client side refuses to send in a syntax nobody accepted: that is fine.
        with contextlib.suppress(ValueError, RuntimeError):
            raw_c_store(
                node.scp.port,
                CTImageStorage,
                generate_uid(),
                mutate(base, steps),
                transfer_syntax=syntax,
                calling_ae="FUZZER",
                must_connect=False,
            )
        if cases["n"] % 50 == 0:
            assert echoscu(node.scp.port), f"no C-ECHO after {cases['n']} cases"

    case()
    assert echoscu(node.scp.port)
    assert no_partial_files(node.settings.storage.instances_dir)
    assert no_receiver_died(node)
    print(f"\nfuzz: {cases['n']} mutated datasets, 0 crashes")


def test_broken_pdus_never_crash_the_scp(receiving: Receiver) -> None:
    node = receiving
    cases = {"n": 0}

    @FUZZ
    @given(
        head=st.sampled_from(
            [b"\x01\x00", b"\x04\x00", b"\x05\x00", b"\x07\x00", b"\xff\x00", b""]
        ),
        length=st.sampled_from([0, 1, 6, 0xFFFFFFFF, 0x7FFFFFFF, 1 << 20]),
        body=st.binary(max_size=512),
    )
    def case(head: bytes, length: int, body: bytes) -> None:
        cases["n"] += 1
        with socket.create_connection(("127.0.0.1", node.scp.port), timeout=5) as sock:
            try:
                sock.sendall(head + struct.pack(">I", length) + body)
                sock.shutdown(socket.SHUT_WR)
                sock.settimeout(2)
                sock.recv(1024)
            except OSError:
                pass
        if cases["n"] % 50 == 0:
            # A broken connection holds its slot until the ARTIM timer ends it.
            wait_until(lambda: echoscu(node.scp.port), timeout=ARTIM_SECONDS + 10, interval=0.5)

    case()
    wait_until(lambda: echoscu(node.scp.port), timeout=ARTIM_SECONDS + 10, interval=0.5)
    assert no_receiver_died(node)
    print(f"\nfuzz: {cases['n']} broken PDUs, 0 crashes")


def test_stow_rs_never_answers_500(node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import dataclasses

    from assistant.intake.stow import StowIntake
    from assistant.settings import DicomwebSettings
    from web import create_app

    settings = dataclasses.replace(node.settings, dicomweb=DicomwebSettings(token="fuzz-token"))
    app = create_app(settings, node.db, StowIntake(node.ingest))
    http = app.test_client()
    base = b"\0" * 128 + b"DICM" + encode(small_ct())
    cases = {"n": 0}

    @FUZZ
    @given(
        boundary=st.sampled_from(["b", "x" * 70, "", "a b", "--"]),
        content_type=st.sampled_from(
            ["application/dicom", "", "text/plain", "application/dicom; x=y"]
        ),
        payload=st.one_of(
            st.binary(max_size=300),
            st.builds(lambda s: mutate(base, s), st.lists(mutation, max_size=3)),
        ),
        closing=st.booleans(),
        prefix=st.binary(max_size=8),
    )
    def case(
        boundary: str, content_type: str, payload: bytes, closing: bool, prefix: bytes
    ) -> None:
        cases["n"] += 1
        body = prefix + f"--{boundary}\r\nContent-Type: {content_type}\r\n\r\n".encode() + payload
        body += f"\r\n--{boundary}--\r\n".encode() if closing else b""
        response = http.post(
            "/dicomweb/studies",
            data=body,
            headers={
                "Authorization": "Bearer fuzz-token",
                "Content-Type": f'multipart/related; type="application/dicom"; boundary="{boundary}"',
            },
        )
        assert response.status_code < 500, response.get_data(as_text=True)

    case()
    assert no_partial_files(node.settings.storage.instances_dir)
    assert echoscu(node.scp.port)
    print(f"\nfuzz: {cases['n']} STOW-RS bodies, 0 server errors")
