"""Bounds on what a peer can make the SCP hold, before and during an association.

pynetdicom reads a PDU by trusting its length field: six bytes claiming 4 GiB make it
wait for the rest for ever (and hold an association slot), and a P-DATA-TF claiming
more than we advertised is buffered whole. It also does the TLS handshake in the thread
that accepts connections, so one silent client stops every other from connecting. Here:

- `GuardedAssociationServer` does the TLS handshake in the connection's own thread with
  a deadline, and admits at most `max_per_address` connections from one address (and,
  with `AssociationSlots`, at most a total shared by several receiver processes);
- `ConnectionGuard` closes any connection that has not completed association
  negotiation within the ARTIM time, whatever it sent, and installs on each association
  a PDU reader that refuses (A-ABORT) an A-ASSOCIATE-RQ or other control PDU over
  `MAX_CONTROL_PDU` bytes and a P-DATA-TF over the maximum PDU size we advertised, and
  gives up on a PDU whose bytes stop arriving.

Upstream note: pynetdicom 3.0.4 offers no hook for any of these (DUL._read_pdu_data,
AssociationServer.get_request); they would fit there as options of the AE.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import struct
import threading
import time
import types
from collections import Counter
from collections.abc import Callable
from typing import Any, cast

from pynetdicom.transport import ThreadedAssociationServer

LOGGER = logging.getLogger(__name__)

#: Largest A-ASSOCIATE-RQ (or any PDU other than P-DATA-TF) we read. Real requests are a
#: few KiB even with every storage SOP class proposed (≈ 130 contexts ≈ 10 KiB).
MAX_CONTROL_PDU = 64 * 1024
_P_DATA_TF = 0x04
_PDU_NAMES = {
    0x01: "A-ASSOCIATE-RQ",
    0x02: "A-ASSOCIATE-AC",
    0x03: "A-ASSOCIATE-RJ",
    0x04: "P-DATA-TF",
    0x05: "A-RELEASE-RQ",
    0x06: "A-RELEASE-RP",
    0x07: "A-ABORT",
}


#: The slowest a PDU body may arrive (bytes/s) on top of the network timeout: a peer
#: that trickles a byte now and then cannot hold its association for ever.
MIN_BYTES_PER_SECOND = 64 * 1024
#: P-DATA-TF bound when node.max_pdu_size is 0 ("unlimited" in the A-ASSOCIATE-AC).
HARD_MAX_PDU = 256 * 1024 * 1024
#: An A-ABORT PDU, source: service-provider, reason: invalid PDU parameter value.
_A_ABORT_INVALID_PDU = bytes([0x07, 0, 0, 0, 0, 4, 0, 0, 2, 6])


def _recv_exactly(sock: socket.socket, count: int, timeout: float) -> bytes:
    """`count` bytes, or fewer if the peer closed, stalled for `timeout` seconds between
    arrivals, took longer in all than `timeout` plus the time MIN_BYTES_PER_SECOND
    allows, or the socket failed. Reads in chunks: memory grows with what arrives,
    never with what a length field claims."""
    chunks: list[bytes] = []
    received = 0
    deadline = time.monotonic() + timeout + count / MIN_BYTES_PER_SECOND
    try:
        while received < count:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            sock.settimeout(min(timeout, left))
            chunk = sock.recv(min(count - received, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            received += len(chunk)
    except (OSError, TimeoutError):
        pass
    finally:
        with contextlib.suppress(OSError):
            sock.settimeout(None)
    return b"".join(chunks)


def _refuse(dul: Any, raw: socket.socket, reason: str, refused: Callable[[Any, str], None]) -> None:
    """Answer A-ABORT (best effort, never blocking long) and close the transport: what
    is left of the PDU in the socket is never parsed."""
    refused(dul.assoc, reason)
    with contextlib.suppress(OSError):
        raw.settimeout(1.0)
        raw.sendall(_A_ABORT_INVALID_PDU)
    with contextlib.suppress(OSError):
        raw.shutdown(socket.SHUT_RDWR)
    dul.event_queue.put("Evt17")


def _bounded_read_pdu_data(
    dul: Any, *, max_pdu_size: int, timeout: float, refused: Callable[[Any, str], None]
) -> None:
    """A replacement for DULServiceProvider._read_pdu_data that bounds every PDU."""
    raw = dul.socket.socket
    header = _recv_exactly(raw, 6, timeout)
    if len(header) < 6:
        dul.event_queue.put("Evt17")  # transport closed (or stalled mid-header)
        return
    pdu_type, _, length = struct.unpack(">BBL", header)
    name = _PDU_NAMES.get(pdu_type)
    if name is None:
        _refuse(dul, raw, f"unknown PDU type 0x{pdu_type:02X}", refused)
        return
    limit = (max_pdu_size or HARD_MAX_PDU) if pdu_type == _P_DATA_TF else MAX_CONTROL_PDU
    if length > limit:
        _refuse(dul, raw, f"{name} of {length} bytes, over the {limit} we accept", refused)
        return
    body = _recv_exactly(raw, length, timeout)
    if len(body) != length:
        LOGGER.warning(
            "%s: %s cut short (%d of %d bytes) or too slow; closing",
            _peer(dul.assoc),
            name,
            len(body),
            length,
        )
        with contextlib.suppress(OSError):
            raw.shutdown(socket.SHUT_RDWR)
        dul.event_queue.put("Evt17")
        return
    try:
        pdu, event = dul._decode_pdu(bytearray(header + body))
    except Exception:  # pynetdicom's decoder on malformed bytes: an invalid PDU
        _refuse(dul, raw, f"a {name} that does not decode", refused)
        return
    dul.event_queue.put(event)
    dul._recv_pdu.put(pdu)


def _shutdown_quietly(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _peer(assoc: Any) -> str:
    requestor = assoc.requestor
    return f"{requestor.address}:{requestor.port}"


class ConnectionGuard:
    """Watches every connection of one SCP from its opening to its association."""

    def __init__(self, *, artim_seconds: float, read_timeout: float, max_pdu_size: int) -> None:
        self.artim_seconds = artim_seconds
        self.read_timeout = read_timeout
        self.max_pdu_size = max_pdu_size
        self._pending: dict[int, tuple[Any, float]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- per association, from the SCP's event handlers -----------------------------------

    def opened(self, assoc: Any) -> None:
        """A connection became an association object: bound its reads, start its clock."""
        guard = self

        def read_pdu_data(dul: Any) -> None:
            _bounded_read_pdu_data(
                dul,
                max_pdu_size=guard.max_pdu_size,
                timeout=guard.read_timeout,
                refused=guard.refused,
            )

        assoc.dul._read_pdu_data = types.MethodType(read_pdu_data, assoc.dul)
        with self._lock:
            self._pending[id(assoc)] = (assoc, time.monotonic())

    def established(self, assoc: Any) -> None:
        with self._lock:
            self._pending.pop(id(assoc), None)

    def closed(self, assoc: Any) -> None:
        with self._lock:
            self._pending.pop(id(assoc), None)

    def refused(self, assoc: Any, reason: str) -> None:
        requestor = assoc.requestor
        titles = ""
        if assoc.is_established:
            titles = f" (calling {str(requestor.ae_title).strip()[:16]!r})"
        LOGGER.warning("%s: association aborted%s: %s", _peer(assoc), titles, reason)

    # -- the ARTIM watchdog ----------------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="dicom-artim", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        interval = min(0.5, self.artim_seconds / 4)
        while not self._stop.wait(interval):
            self.close_overdue()

    def close_overdue(self) -> int:
        """Close every connection that opened more than the ARTIM time ago without an
        association; returns how many."""
        now = time.monotonic()
        with self._lock:
            overdue = [
                assoc
                for assoc, opened in self._pending.values()
                if now - opened > self.artim_seconds
            ]
            for assoc in overdue:
                self._pending.pop(id(assoc), None)
        for assoc in overdue:
            LOGGER.warning(
                "%s: no association within %.0f s of connecting; connection closed",
                _peer(assoc),
                self.artim_seconds,
            )
            raw = getattr(assoc.dul.socket, "socket", None)
            if raw is not None:
                with contextlib.suppress(OSError):
                    raw.shutdown(socket.SHUT_RDWR)
        return len(overdue)


class AssociationSlots:
    """Connections held at once by all the receiver processes of a node, against one
    total (node.max_associations), however the kernel spreads connections over them.
    `counts` is a `multiprocessing.Array("i", processes)` made by the supervising
    process (it carries its own lock); each process counts in its own cell, so the
    supervisor can free the cells of a process that died holding connections."""

    def __init__(self, counts: Any, index: int, total: int) -> None:
        self._counts = counts
        self._index = index
        self.total = total

    def take(self) -> bool:
        """One slot for this process, if one is free."""
        with self._counts.get_lock():
            if sum(self._counts) >= self.total:
                return False
            self._counts[self._index] += 1
            return True

    def give(self) -> None:
        with self._counts.get_lock():
            self._counts[self._index] = max(0, self._counts[self._index] - 1)


class GuardedAssociationServer(ThreadedAssociationServer):
    """pynetdicom's threaded server with the TLS handshake moved off the accepting
    thread (with a deadline) and a cap on connections per peer address.

    `address_allowed(address) -> bool` and the limits are set by `guard()` before
    `serve_forever` runs."""

    #: Connection threads wait for their association: never join them at close (the
    #: SCP aborts open associations when it stops).
    daemon_threads = True
    block_on_close = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.max_per_address = 0
        self.handshake_seconds = 5.0
        self.address_allowed: Callable[[str], bool] = lambda _address: True
        self._per_address: Counter[str] = Counter()
        self._count_lock = threading.Lock()
        self._last_warned: dict[str, float] = {}
        self.slots: AssociationSlots | None = None
        super().__init__(*args, **kwargs)

    def guard(
        self,
        *,
        max_per_address: int,
        handshake_seconds: float,
        address_allowed: Callable[[str], bool],
        slots: AssociationSlots | None = None,
    ) -> None:
        self.max_per_address = max_per_address
        self.handshake_seconds = handshake_seconds
        self.address_allowed = address_allowed
        self.slots = slots

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        # Accept only; the handshake happens in finish_request, in the new thread.
        listening = cast(socket.socket, self.socket)
        return listening.accept()

    def verify_request(self, request: Any, client_address: Any) -> bool:
        address = str(client_address[0])
        if not self.address_allowed(address):
            return False
        with self._count_lock:
            if self.max_per_address and self._per_address[address] >= self.max_per_address:
                self._warn_once(
                    address,
                    "refusing connections from %s: it has %d open, the most one address "
                    "may (node.max_associations_per_address)",
                    address,
                    self._per_address[address],
                )
                return False
            if self.slots is not None and not self.slots.take():
                self._warn_once(
                    "*",
                    "refusing a connection from %s: the node's processes hold %d, the most "
                    "at once (node.max_associations)",
                    address,
                    self.slots.total,
                )
                return False
            self._per_address[address] += 1
        return True

    def _warn_once(self, key: str, message: str, *args: Any) -> None:
        """Log a refusal at most every 10 s per `key` (not a line a try)."""
        now = time.monotonic()
        if now - self._last_warned.get(key, -60.0) >= 10.0:
            self._last_warned[key] = now
            LOGGER.warning(message, *args)

    def _release(self, address: str) -> None:
        if self.slots is not None:
            self.slots.give()
        with self._count_lock:
            self._per_address[address] -= 1
            if self._per_address[address] <= 0:
                del self._per_address[address]

    def open_connections(self, address: str) -> int:
        with self._count_lock:
            return self._per_address[address]

    def finish_request(self, request: Any, client_address: Any) -> None:
        # Runs in the connection's own thread (ThreadingMixIn), which stays with the
        # connection until its association's thread ends: then its slot is free.
        address = str(client_address[0])
        try:
            if self.ssl_context is not None:
                # A deadline for the whole handshake, not per read: a ClientHello
                # trickled in a byte at a time must not hold the thread and the slot.
                raw = request
                deadline = threading.Timer(self.handshake_seconds, lambda: _shutdown_quietly(raw))
                deadline.start()
                request.settimeout(self.handshake_seconds)
                try:
                    request = self.ssl_context.wrap_socket(request, server_side=True)
                    request.settimeout(None)
                except (OSError, ssl.SSLError) as exc:
                    LOGGER.warning("%s: TLS handshake failed: %s", address, exc)
                    raw.close()
                    return
                finally:
                    deadline.cancel()
            super().finish_request(request, client_address)
            assoc = next(
                (
                    a
                    for a in self.active_associations
                    if getattr(a.dul.socket, "socket", None) is request
                ),
                None,
            )
            if assoc is not None:
                assoc.join()
        finally:
            self._release(address)


class SharedPortAssociationServer(GuardedAssociationServer):
    """The guarded server bound with SO_REUSEPORT: several receiver processes listen on
    one port, and the kernel spreads incoming connections over them."""

    def server_bind(self) -> None:
        cast(socket.socket, self.socket).setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()
