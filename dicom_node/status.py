"""DIMSE status codes we answer with, by name (PS3.4 Annex B and PS3.7 Annex C)."""

from __future__ import annotations

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

    @property
    def is_success(self) -> bool:
        return self is Status.SUCCESS


class StoreRefused(Exception):
    """Raised by an instance sink to answer a C-STORE with a failure status."""

    def __init__(self, status: Status, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
