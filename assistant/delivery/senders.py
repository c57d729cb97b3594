"""One sender per destination kind, behind a registry the outbox looks kinds up in.

A sender takes the files of one batch and a destination and reports each file's
outcome; it does not raise for a peer that refuses or cannot be reached (that is a
failed `SendResult`, retried by the outbox, or a rejected one, not retried). Adding a
kind is adding a class and a line in `SENDERS`; the notification kinds (webhook, HL7,
FHIR) live in their own modules and read the notice a result file holds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from assistant.delivery.fhir_report import FhirSender
from assistant.delivery.hl7_oru import Hl7Sender
from assistant.delivery.webhook import WebhookSender
from assistant.settings import Destination
from dicom_node import SendResult, send_files
from dicom_node.stow import stow_files
from dicom_node.tls import client_context


class Sender(Protocol):
    def __call__(self, paths: Sequence[Path], destination: Destination) -> list[SendResult]: ...


class DimseSender:
    """C-STORE to a DICOM SCP, over DICOM TLS when the destination asks for it."""

    def __init__(self, calling_ae: str, send: Callable[..., list[SendResult]] = send_files) -> None:
        self._calling_ae = calling_ae
        self._send = send

    def __call__(self, paths: Sequence[Path], destination: Destination) -> list[SendResult]:
        tls = (
            client_context(destination.tls_ca, destination.tls_cert, destination.tls_key)
            if destination.tls
            else None
        )
        extra = {"tls": tls} if tls is not None else {}
        return self._send(
            list(paths),
            host=destination.host,
            port=destination.port,
            called_ae=destination.ae_title,
            calling_ae=self._calling_ae,
            **extra,
        )


class DicomwebSender:
    """STOW-RS to a DICOMweb root, with the destination's bearer token."""

    def __init__(self, stow: Callable[..., list[SendResult]] = stow_files) -> None:
        self._stow = stow

    def __call__(self, paths: Sequence[Path], destination: Destination) -> list[SendResult]:
        return self._stow(list(paths), url=destination.url, token=destination.token)


#: How the node's settings name each kind, and how to make its sender (calling AE title in).
SENDERS: Mapping[str, Callable[[str], Sender]] = {
    "dimse": lambda calling_ae: DimseSender(calling_ae),
    "dicomweb": lambda _calling_ae: DicomwebSender(),
    "webhook": lambda _calling_ae: WebhookSender(),
    "hl7": lambda _calling_ae: Hl7Sender(),
    "fhir": lambda _calling_ae: FhirSender(),
}


def make_senders(calling_ae: str) -> dict[str, Sender]:
    """A sender for each destination kind the node knows."""
    return {kind: make(calling_ae) for kind, make in SENDERS.items()}
