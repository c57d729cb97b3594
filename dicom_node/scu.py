"""A C-STORE SCU for files and folders: `radassist send`, the demo, the tests and the outbox."""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, _config
from pynetdicom.presentation import build_context

from dicom_node.contexts import UNCOMPRESSED_TRANSFER_SYNTAXES
from dicom_node.status import Status

LOGGER = logging.getLogger(__name__)

#: A requestor may propose at most 128 presentation contexts per association (PS3.8).
_MAX_CONTEXTS = 128
_UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)


@dataclass(frozen=True)
class SendResult:
    """What happened to one file."""

    path: Path
    #: The peer's DIMSE status, or None when the file never reached the peer.
    status: int | None
    #: "sent", "warning", "failed" (tried again later), "rejected" (refused for good:
    #: not tried again) or "skipped".
    outcome: str
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.outcome == "failed"


@dataclass(frozen=True)
class _Item:
    path: Path
    sop_class_uid: str
    transfer_syntax_uid: str

    @property
    def context_key(self) -> tuple[str, str]:
        if self.transfer_syntax_uid in UNCOMPRESSED_TRANSFER_SYNTAXES:
            return (self.sop_class_uid, "uncompressed")
        return (self.sop_class_uid, self.transfer_syntax_uid)


def _expand(paths: Iterable[str | os.PathLike[str]]) -> Iterator[tuple[Path, bool]]:
    """Files to send, each with True when named explicitly (not found in a folder)."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for child in sorted(p for p in path.rglob("*") if p.is_file()):
                yield child, False
        else:
            yield path, True


def _inspect(path: Path, explicit: bool) -> _Item | SendResult:
    try:
        header = dcmread(path, stop_before_pixels=True)
        sop_class = str(header.file_meta.MediaStorageSOPClassUID)
        transfer_syntax = str(header.file_meta.TransferSyntaxUID)
    except (InvalidDicomError, AttributeError, KeyError, ValueError) as exc:
        outcome = "failed" if explicit else "skipped"
        return SendResult(path, None, outcome, f"not a DICOM Part 10 file ({exc})")
    except OSError as exc:
        return SendResult(path, None, "failed", f"cannot read: {exc.strerror or exc}")
    if "SOPInstanceUID" not in header or "SOPClassUID" not in header:  # e.g. a DICOMDIR
        outcome = "failed" if explicit else "skipped"
        return SendResult(
            path, None, outcome, "not a storable instance (no SOP Class/Instance UID)"
        )
    return _Item(path, sop_class, transfer_syntax)


def _contexts_for(keys: Iterable[tuple[str, str]]) -> list:
    contexts = []
    for sop_class, syntax in keys:
        syntaxes: list[str | UID] = list(_UNCOMPRESSED) if syntax == "uncompressed" else [syntax]
        contexts.append(build_context(sop_class, syntaxes))
    return contexts


def _batches(items: list[_Item]) -> Iterator[list[_Item]]:
    """Split items so no association needs more than 128 presentation contexts."""
    batch: list[_Item] = []
    keys: set[tuple[str, str]] = set()
    for item in items:
        if item.context_key not in keys and len(keys) == _MAX_CONTEXTS:
            yield batch
            batch, keys = [], set()
        batch.append(item)
        keys.add(item.context_key)
    if batch:
        yield batch


def _classify(status: int) -> str:
    if status == Status.SUCCESS:
        return "sent"
    if status in (0x0001, 0x0107, 0x0116) or 0xB000 <= status <= 0xBFFF:
        return "warning"
    return "failed"


def _send_batch(
    ae: AE,
    batch: list[_Item],
    host: str,
    port: int,
    called_ae: str,
    tls: ssl.SSLContext | None = None,
) -> list[SendResult]:
    ae.requested_contexts = _contexts_for(dict.fromkeys(item.context_key for item in batch))
    assoc = ae.associate(
        host, port, ae_title=called_ae, tls_args=(tls, host) if tls is not None else None
    )
    if not assoc.is_established:
        reason = "association rejected" if assoc.is_rejected else "association failed or aborted"
        return [
            SendResult(item.path, None, "failed", f"{reason} by {called_ae}@{host}:{port}")
            for item in batch
        ]
    results: list[SendResult] = []
    try:
        for item in batch:
            if not assoc.is_established:
                results.append(SendResult(item.path, None, "failed", "association ended early"))
                continue
            try:
                dataset = dcmread(item.path)
                response = assoc.send_c_store(dataset)
            except (AttributeError, ValueError, RuntimeError, OSError) as exc:
                results.append(SendResult(item.path, None, "failed", str(exc)))
                continue
            if "Status" not in response:
                results.append(
                    SendResult(item.path, None, "failed", "no response (timeout or abort)")
                )
                continue
            status = int(response.Status)
            comment = str(response.get("ErrorComment", ""))
            results.append(SendResult(item.path, status, _classify(status), comment))
    finally:
        if assoc.is_established:
            assoc.release()
    return results


def send_files(
    paths: Iterable[str | os.PathLike[str]],
    *,
    host: str,
    port: int,
    called_ae: str,
    calling_ae: str = "RADASSIST",
    max_pdu_size: int = 4 * 1024 * 1024,
    tls: ssl.SSLContext | None = None,
) -> list[SendResult]:
    """C-STORE every DICOM file in `paths` (files or folders) and report each one; over
    TLS when `tls` (a client context) is given.

    Non-DICOM files found inside folders are skipped; a non-DICOM file named
    explicitly fails. Files are sent in the order given, folders in sorted order.
    """
    _config.LOG_HANDLER_LEVEL = "none"
    files = list(_expand(paths))
    inspected = [_inspect(path, explicit) for path, explicit in files]
    results = [r for r in inspected if isinstance(r, SendResult)]
    items = [i for i in inspected if isinstance(i, _Item)]
    ae = AE(ae_title=calling_ae)
    ae.maximum_pdu_size = max_pdu_size
    for batch in _batches(items):
        results.extend(_send_batch(ae, batch, host, port, called_ae, tls))
    order = {path: n for n, (path, _) in enumerate(files)}
    return sorted(results, key=lambda r: order.get(r.path, len(order)))
