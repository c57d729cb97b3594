"""The storage SCP: C-ECHO and C-STORE for every storage SOP class.

The SCP decodes only the header of each dataset (never the pixel data), checks it as
every intake does (``acceptance``), and hands the instance, still encoded exactly as received, to an
:class:`InstanceSink`. The sink makes it durable (file + database) or raises; only when
it returns is Success answered. The C-STORE handler never raises into pynetdicom: every
error becomes a named failure status and a log line, and the node keeps serving.
"""

from __future__ import annotations

import ipaddress
import itertools
import logging
import ssl
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, cast

from pydicom.dataset import Dataset
from pynetdicom import AE, _config, evt
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.events import EventHandlerType

from dicom_node.acceptance import accept_dataset
from dicom_node.contexts import STORAGE_SOP_CLASSES, STORAGE_TRANSFER_SYNTAXES, VERIFICATION
from dicom_node.encoding import encode_file_meta
from dicom_node.guard import (
    AssociationSlots,
    ConnectionGuard,
    GuardedAssociationServer,
    SharedPortAssociationServer,
)
from dicom_node.status import Status, StoreRefused, status_for_os_error

LOGGER = logging.getLogger(__name__)

#: How long pynetdicom's network thread sleeps when the socket is idle. Its default of
#: 1 ms is paid several times per C-STORE on a fast link; 0.1 ms keeps loopback
#: throughput high for a little idle CPU.
DUL_IDLE_SLEEP_SECONDS = 0.0001


@dataclass(frozen=True)
class ReceivedInstance:
    """One C-STORE dataset, still encoded as the peer sent it."""

    association_id: int
    calling_ae_title: str
    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    transfer_syntax_uid: str
    #: The dataset decoded up to, not including, the pixel data.
    header: Dataset
    #: Preamble, "DICM" prefix and File Meta Information, ready to write before `encoded`.
    file_meta_bytes: bytes
    #: The dataset exactly as received (deflated if the transfer syntax says so).
    encoded: memoryview

    def file_chunks(self) -> tuple[bytes, memoryview]:
        """The bytes of a DICOM Part 10 file holding this instance, in order."""
        return self.file_meta_bytes, self.encoded


@dataclass(frozen=True)
class AssociationSummary:
    """What one association stored, given to the sink when it ends."""

    association_id: int
    calling_ae_title: str
    address: str
    #: True after an orderly A-RELEASE; False when aborted or the connection dropped.
    released: bool
    #: (Study Instance UID, Series Instance UID) of every series it stored into.
    series: tuple[tuple[str, str], ...]
    instances_stored: int


class InstanceSink(Protocol):
    """What the SCP does with instances; built by the caller and passed in."""

    def store(self, instance: ReceivedInstance) -> None:
        """Make the instance durable, or raise StoreRefused / OSError."""

    def association_ended(self, summary: AssociationSummary) -> None:
        """Called once per association after it is released or aborted."""


@dataclass
class _AssociationState:
    association_id: int
    calling_ae_title: str
    address: str
    released: bool = False
    instances_stored: int = 0
    series: dict[tuple[str, str], None] = field(default_factory=dict)


def _failure(status: Status, comment: str) -> Dataset:
    response = Dataset()
    response.Status = int(status)
    response.ErrorComment = comment[:64]
    return response


#: Seconds a connection may hold an association slot without a valid request.
ARTIM_SECONDS = 5.0


class StorageSCP:
    """A C-ECHO / C-STORE SCP that gives every instance to `sink` before answering."""

    def __init__(
        self,
        sink: InstanceSink,
        *,
        ae_title: str,
        host: str = "0.0.0.0",
        port: int = 11112,
        allowed_callers: Sequence[str] = (),
        max_pdu_size: int = 4 * 1024 * 1024,
        ssl_context: ssl.SSLContext | None = None,
        max_associations: int = 32,
        network_timeout: float = 30.0,
        allowed_addresses: Sequence[str] = (),
        max_associations_per_address: int = 16,
        check_called_ae: bool = True,
        shared_port: bool = False,
        slots: AssociationSlots | None = None,
    ) -> None:
        """`max_associations`: at once, in all; `max_associations_per_address`: at once,
        from one peer address (so one host cannot take every slot); 0 for no limit.
        `check_called_ae`: refuse an association addressed to another AE title.
        `shared_port`: bind with SO_REUSEPORT, beside the node's other receiver processes;
        `slots` then counts `max_associations` over all of them."""
        self._sink = sink
        self._allowed_callers = [c.strip() for c in allowed_callers]
        self._max_per_address = max_associations_per_address
        #: Networks peers may connect from (empty: any); others are closed at once.
        self._networks = [ipaddress.ip_network(a, strict=False) for a in allowed_addresses]
        self._address = (host, port)
        self._ssl_context = ssl_context
        self._shared_port = shared_port
        self._slots = slots
        self._server: GuardedAssociationServer | None = None
        self._thread: threading.Thread | None = None
        # Connections that do not associate within the ARTIM time are closed; every PDU
        # is read within bounds (see guard.py).
        self._guard = ConnectionGuard(
            artim_seconds=min(ARTIM_SECONDS, network_timeout),
            read_timeout=network_timeout,
            max_pdu_size=max_pdu_size,
        )
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._associations: dict[int, _AssociationState] = {}

        # pynetdicom's per-message log formatting costs ~10% of a C-STORE and would
        # write identifiers into the log; our own handlers log what matters.
        _config.LOG_HANDLER_LEVEL = "none"
        self._ae = AE(ae_title=ae_title)
        self._ae.maximum_pdu_size = max_pdu_size
        self._ae.require_calling_aet = list(allowed_callers)
        self._ae.require_called_aet = check_called_ae
        # A hospital has many modalities; a peer that connects and then says nothing (or
        # sends half a PDU) must not hold one of them for long.
        self._ae.maximum_associations = max_associations
        self._ae.network_timeout = network_timeout
        self._ae.dimse_timeout = network_timeout
        # The ARTIM timer: how long a connection that sent no valid A-ASSOCIATE-RQ (or
        # that was aborted) keeps its slot. Peers send the request at once.
        self._ae.acse_timeout = min(ARTIM_SECONDS, network_timeout)
        self._ae.add_supported_context(VERIFICATION)
        for sop_class in STORAGE_SOP_CLASSES:
            self._ae.add_supported_context(sop_class, list(STORAGE_TRANSFER_SYNTAXES))

    def _address_allowed(self, peer: str) -> bool:
        if not self._networks:
            return True
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        if any(address in network for network in self._networks):
            return True
        LOGGER.warning("refused a connection from %s: not in node.allowed_addresses", address)
        return False

    def open_connections(self, address: str) -> int:
        """Connections from `address` held now (from acceptance until they close)."""
        return self._server.open_connections(address) if self._server is not None else 0

    @property
    def port(self) -> int:
        """The bound port (useful when started on port 0)."""
        if self._server is None:
            raise RuntimeError("the SCP is not running")
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Listen in background threads; returns once the socket is bound."""
        handlers: list[EventHandlerType] = [
            (evt.EVT_CONN_OPEN, self._on_connection_open),
            (evt.EVT_ESTABLISHED, self._on_established),
            (evt.EVT_C_STORE, self._on_c_store),
            (evt.EVT_RELEASED, self._on_released),
            (evt.EVT_CONN_CLOSE, self._on_connection_close),
            (evt.EVT_REJECTED, self._on_rejected),
        ]
        server = cast(
            GuardedAssociationServer,
            self._ae.make_server(
                self._address,
                evt_handlers=handlers,
                ssl_context=self._ssl_context,
                server_class=(
                    SharedPortAssociationServer if self._shared_port else GuardedAssociationServer
                ),
            ),
        )
        # socketserver asks these before any thread or association exists.
        server.guard(
            max_per_address=self._max_per_address,
            handshake_seconds=self._guard.artim_seconds,
            address_allowed=self._address_allowed,
            slots=self._slots,
        )
        # As AE.start_server does: the AE counts its active associations (for
        # max_associations) over its servers, and the server's shutdown removes itself.
        self._ae._servers.append(server)
        self._server = server
        self._guard.start()
        self._thread = threading.Thread(
            target=server.serve_forever, name="dicom-acceptor", daemon=True
        )
        self._thread.start()
        LOGGER.info(
            "DICOM node %s listening on %s:%d", self._ae.ae_title, self._address[0], self.port
        )

    def stop(self) -> None:
        """Stop listening and end open associations."""
        if self._server is not None:
            self._server.shutdown()  # stops accepting and closes the socket
            for assoc in self._server.active_associations:
                assoc.abort()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self._guard.stop()

    # -- association bookkeeping -------------------------------------------------------

    def _on_connection_open(self, event: evt.Event) -> None:
        event.assoc.dul._run_loop_delay = DUL_IDLE_SLEEP_SECONDS
        self._guard.opened(event.assoc)

    def _on_established(self, event: evt.Event) -> None:
        self._guard.established(event.assoc)
        requestor = event.assoc.requestor
        state = _AssociationState(
            association_id=next(self._ids),
            calling_ae_title=str(requestor.ae_title).strip(),
            address=f"{requestor.address}:{requestor.port}",
        )
        with self._lock:
            self._associations[id(event.assoc)] = state
        LOGGER.info(
            "association %d from %s (%s) established",
            state.association_id,
            state.calling_ae_title,
            state.address,
        )

    def _on_released(self, event: evt.Event) -> None:
        with self._lock:
            state = self._associations.get(id(event.assoc))
        if state is not None:
            state.released = True

    def _on_rejected(self, event: evt.Event) -> None:
        """Say who was turned away and why (pynetdicom logs nothing we keep)."""
        requestor = event.assoc.requestor
        request = requestor.primitive
        calling = str(getattr(request, "calling_ae_title", "") or "").strip()
        called = str(getattr(request, "called_ae_title", "") or "").strip()
        if self._allowed_callers and calling not in self._allowed_callers:
            reason = "calling AE title not in node.allowed_callers"
        elif self._ae.require_called_aet and called != self._ae.ae_title.strip():
            reason = f"called AE title is not {self._ae.ae_title.strip()}"
        elif len(self._ae.active_associations) > self._ae.maximum_associations:
            reason = "too many associations at once (node.max_associations)"
        else:
            reason = "refused in negotiation (e.g. a user identity it could not verify)"
        LOGGER.warning(
            "association from %s:%s rejected (calling %r, called %r): %s",
            requestor.address,
            requestor.port,
            calling[:16],
            called[:16],
            reason,
        )

    def _on_connection_close(self, event: evt.Event) -> None:
        self._guard.closed(event.assoc)
        with self._lock:
            state = self._associations.pop(id(event.assoc), None)
        if state is None:  # rejected at association: nothing was stored
            return
        summary = AssociationSummary(
            association_id=state.association_id,
            calling_ae_title=state.calling_ae_title,
            address=state.address,
            released=state.released,
            series=tuple(state.series),
            instances_stored=state.instances_stored,
        )
        LOGGER.info(
            "association %d %s after %d instance(s)",
            state.association_id,
            "released" if state.released else "aborted",
            state.instances_stored,
        )
        try:
            self._sink.association_ended(summary)
        except Exception:  # never let bookkeeping take the server thread down
            LOGGER.exception(
                "association %d: end-of-association handling failed", state.association_id
            )

    # -- C-STORE -----------------------------------------------------------------------

    def _on_c_store(self, event: evt.Event) -> int | Dataset:
        with self._lock:
            state = self._associations.get(id(event.assoc))
        association_id = state.association_id if state else 0
        calling = state.calling_ae_title if state else ""
        try:
            instance = self._receive(event, association_id, calling)
            self._sink.store(instance)
        except StoreRefused as refusal:
            LOGGER.warning(
                "association %d: C-STORE refused with 0x%04X %s: %s",
                association_id,
                refusal.status,
                refusal.status.name,
                refusal.reason,
            )
            return _failure(refusal.status, refusal.reason)
        except OSError as exc:
            status = status_for_os_error(exc)
            LOGGER.error("association %d: cannot store instance: %s", association_id, exc)
            return _failure(status, exc.strerror or str(exc))
        except Exception as exc:
            LOGGER.exception("association %d: unexpected error storing an instance", association_id)
            return _failure(Status.PROCESSING_FAILURE, f"internal error: {type(exc).__name__}")
        if state is not None:
            state.instances_stored += 1
            state.series[(instance.study_instance_uid, instance.series_instance_uid)] = None
        return int(Status.SUCCESS)

    def _receive(self, event: evt.Event, association_id: int, calling: str) -> ReceivedInstance:
        """Decode and check the header; raise StoreRefused for anything we cannot keep."""
        # The handler is bound to EVT_C_STORE only, so the request is always a C-STORE.
        request = cast(C_STORE, event.request)
        sop_class = str(request.AffectedSOPClassUID or "")
        sop_instance = str(request.AffectedSOPInstanceUID or "")
        transfer_syntax = str(event.context.transfer_syntax)
        encoded = request.DataSet.getbuffer() if request.DataSet is not None else memoryview(b"")
        accepted = accept_dataset(
            encoded, transfer_syntax, sop_class_uid=sop_class, sop_instance_uid=sop_instance
        )
        return ReceivedInstance(
            association_id=association_id,
            calling_ae_title=calling,
            sop_class_uid=sop_class,
            sop_instance_uid=sop_instance,
            study_instance_uid=accepted.study_instance_uid,
            series_instance_uid=accepted.series_instance_uid,
            transfer_syntax_uid=transfer_syntax,
            header=accepted.header,
            file_meta_bytes=encode_file_meta(sop_class, sop_instance, transfer_syntax, calling),
            encoded=encoded,
        )
