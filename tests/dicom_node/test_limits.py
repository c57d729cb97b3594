"""What an unauthenticated or careless peer can make the SCP hold: a connection that never
associates is closed within the ARTIM time, one address cannot take every slot, PDUs
larger than we accept abort the association without being buffered, and every refusal
says who and why in the log."""

from __future__ import annotations

import logging
import resource
import socket
import struct
import threading
import time

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from assistant.settings import NodeSettings
from dicom_node.guard import MAX_CONTROL_PDU
from tests.helpers import NODE_AE
from tests.peers.dcmtk import echoscu
from tests.peers.tools import wait_until

pytestmark = pytest.mark.integration

#: An A-ASSOCIATE-RQ header claiming 4 GiB, then silence: the stall of issue 25.
STALL = bytes([0x01, 0x00, 0xFF, 0xFF, 0xFF, 0xFF])


def _connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    return sock


def _closed_by_peer(sock: socket.socket, within: float) -> bool:
    """True when the server closes (or resets) the connection within `within` seconds."""
    sock.settimeout(within)
    try:
        while True:
            if not sock.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def _node(start_node, **node):  # type: ignore[no-untyped-def]
    settings = {"ae_title": NODE_AE, "host": "0.0.0.0", "port": 0, **node}
    return start_node(node=NodeSettings(**{"processes": 1, **settings}))


def test_a_silent_connection_is_closed_within_the_artim_time(start_node) -> None:  # type: ignore[no-untyped-def]
    node = _node(start_node, network_timeout_seconds=3)
    started = time.monotonic()
    with _connect(node.scp.port) as stalled:
        stalled.sendall(STALL)
        assert _closed_by_peer(stalled, within=10)
    assert time.monotonic() - started < 6  # ARTIM: min(5 s, network timeout) + a sweep


def test_forty_stalled_connections_from_one_host_leave_others_served(start_node, caplog) -> None:  # type: ignore[no-untyped-def]
    node = _node(start_node, max_associations_per_address=8)
    stalled = []
    for _ in range(40):
        try:
            sock = _connect(node.scp.port, source="127.0.0.2")
            sock.sendall(STALL)
            stalled.append(sock)
        except OSError:  # refused at once: what the limit is for
            pass
    try:
        started = time.monotonic()
        assert echoscu(node.scp.port)  # another address, at once: not after the ARTIM time
        assert time.monotonic() - started < 4
        assert node.scp.open_connections("127.0.0.2") <= 8
        assert "refusing connections from 127.0.0.2" in caplog.text
        # And the stalled ones are gone within the ARTIM time, slots freed.
        wait_until(lambda: node.scp.open_connections("127.0.0.2") == 0, timeout=10)
        assert echoscu(node.scp.port)
    finally:
        for sock in stalled:
            sock.close()


def test_an_oversized_associate_request_is_refused_unread(start_node, caplog) -> None:  # type: ignore[no-untyped-def]
    node = _node(start_node)
    with _connect(node.scp.port) as sock:
        sock.sendall(struct.pack(">BBL", 0x01, 0, MAX_CONTROL_PDU + 1) + b"\0" * 4096)
        sock.settimeout(10)
        assert sock.recv(1) == b"\x07"  # an A-ABORT, without reading the 64 KiB
        assert _closed_by_peer(sock, within=10)
    assert f"A-ASSOCIATE-RQ of {MAX_CONTROL_PDU + 1} bytes" in caplog.text
    assert echoscu(node.scp.port)


def _max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_a_pdu_over_the_negotiated_maximum_aborts_without_buffering(start_node, caplog) -> None:  # type: ignore[no-untyped-def]
    """After a proper association (AE titles are no secret), a P-DATA-TF claiming 4 GiB
    streamed with zeros: aborted at its header, the zeros never read into memory."""
    node = _node(start_node, max_pdu_size=65536)
    ae = AE(ae_title="ATTACKER")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", node.scp.port, ae_title=NODE_AE)
    assert assoc.is_established
    raw = assoc.dul.socket.socket
    before = _max_rss_mib()
    sent = 0

    def flood() -> None:
        nonlocal sent
        try:
            raw.sendall(struct.pack(">BBL", 0x04, 0, 0xFFFFFFFF))
            chunk = b"\0" * (1 << 20)
            while sent < 256 << 20:
                raw.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass

    sender = threading.Thread(target=flood)
    sender.start()
    sender.join(timeout=60)
    wait_until(lambda: not assoc.is_established, timeout=20)
    assert sent < 64 << 20  # refused long before 256 MiB got through
    assert _max_rss_mib() - before < 10
    assert "P-DATA-TF of 4294967295 bytes, over the 65536 we accept" in caplog.text
    assert echoscu(node.scp.port)


def test_a_called_ae_title_not_ours_is_rejected_and_logged(start_node, caplog) -> None:  # type: ignore[no-untyped-def]
    node = _node(start_node)
    assert not echoscu(node.scp.port, aec="SOMEONE_ELSE")
    wait_until(lambda: "rejected" in caplog.text, timeout=5)
    assert (
        "called 'SOMEONE_ELSE'" in caplog.text
        and f"called AE title is not {NODE_AE}" in caplog.text
    )
    assert echoscu(node.scp.port)


def test_the_called_ae_check_can_be_turned_off(start_node) -> None:  # type: ignore[no-untyped-def]
    node = _node(start_node, check_called_ae=False)
    assert echoscu(node.scp.port, aec="ANY_TITLE")


def test_a_rejected_caller_is_logged_with_its_title(start_node, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.WARNING)
    node = _node(start_node, allowed_callers=("PACS",))
    assert not echoscu(node.scp.port)  # dcmtk's default calling title is ECHOSCU
    wait_until(lambda: "rejected" in caplog.text, timeout=5)
    assert "calling 'ECHOSCU'" in caplog.text
    assert "calling AE title not in node.allowed_callers" in caplog.text


def test_a_pdu_trickled_in_cannot_hold_its_association(start_node, caplog) -> None:  # type: ignore[no-untyped-def]
    """A byte now and then never trips a timeout between reads; the PDU's own deadline
    (network timeout + its size at 64 KiB/s) closes the association."""
    node = _node(start_node, max_pdu_size=65536, network_timeout_seconds=2)
    ae = AE(ae_title="TRICKLER")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", node.scp.port, ae_title=NODE_AE)
    assert assoc.is_established
    raw = assoc.dul.socket.socket
    started = time.monotonic()
    raw.sendall(struct.pack(">BBL", 0x04, 0, 65536))
    try:
        for _ in range(30):  # a byte every second: 30 s if nothing stops it
            raw.sendall(b"\0")
            time.sleep(1.0)
            if not assoc.is_established:
                break
    except OSError:
        pass
    wait_until(lambda: not assoc.is_established, timeout=10)
    assert time.monotonic() - started < 8  # 2 s + 1 s for 64 KiB, and a sweep
    assert "P-DATA-TF cut short" in caplog.text
