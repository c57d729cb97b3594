"""DIMSE status codes we answer with, by name (PS3.4 Annex B and PS3.7 Annex C)."""

from __future__ import annotations

import errno
from collections.abc import Mapping
from enum import IntEnum


class Status(IntEnum):
    """C-STORE and C-ECHO response statuses used by the node."""

    SUCCESS = 0x0000
    #: Failure: the SOP class is not a storage class we accept.
    SOP_CLASS_NOT_SUPPORTED = 0x0122
    #: Failure: something went wrong that is not the sender's fault (logged).
    PROCESSING_FAILURE = 0x0110
    #: Failure: refused, out of resources (disk full, database unavailable).
    OUT_OF_RESOURCES = 0xA700
    #: Failure: the dataset's SOP Class or Instance UID differs from the command's.
    DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
    #: Failure: cannot understand (the dataset does not decode).
    CANNOT_UNDERSTAND = 0xC000
    #: Failure: cannot understand, a required UID is missing or breaks the UID grammar.
    MISSING_OR_INVALID_UID = 0xC001
    #: Failure: the instance's patient (Patient ID + Issuer) is not its study's patient.
    PATIENT_MISMATCH = 0xC010
    #: Failure: an instance already stored arrived again with other content, and the node
    #: is set to refuse changed copies (storage.on_changed_duplicate = "reject").
    CHANGED_DUPLICATE = 0xC011

    @property
    def is_success(self) -> bool:
        return self is Status.SUCCESS


class StoreRefused(Exception):
    """Raised by an instance sink to answer a C-STORE with a failure status.

    `uids`: what could be read of the instance's identity (SOPClassUID, SOPInstanceUID,
    StudyInstanceUID, SeriesInstanceUID; only valid UIDs), so a STOW-RS answer can say
    which instance failed."""

    def __init__(self, status: Status, reason: str, uids: Mapping[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.uids: Mapping[str, str] = dict(uids or {})


#: errno values that mean the disk is full (or a quota reached): out of resources.
_DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def status_for_os_error(exc: OSError) -> Status:
    """The status an instance that could not be written gets: 0xA700 when the disk is
    full (the sender should retry later), 0x0110 for any other I/O failure."""
    return Status.OUT_OF_RESOURCES if exc.errno in _DISK_FULL_ERRNOS else Status.PROCESSING_FAILURE
