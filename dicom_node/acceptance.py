"""What the node accepts, the same for C-STORE and STOW-RS: a dataset that decodes whole,
the four identifying UIDs present and valid, a storage SOP class, and UIDs that agree
with the request. Each refusal is a `StoreRefused` with its named status (status.py)."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from pydicom.dataset import Dataset

from dicom_node.contexts import STORAGE_SOP_CLASSES, STORAGE_TRANSFER_SYNTAXES
from dicom_node.encoding import NotPart10, decode_header, split_part10
from dicom_node.status import Status, StoreRefused
from dicom_node.uids import is_valid_uid

REQUIRED_UIDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
_STORAGE = frozenset(STORAGE_SOP_CLASSES)
_TRANSFER_SYNTAXES = frozenset(STORAGE_TRANSFER_SYNTAXES)
#: What decoding malformed bytes raises (pydicom's reader, our element walker, zlib):
#: the sender's fault, 0xC000. Anything else is a fault of ours and is not caught here.
DECODE_ERRORS: tuple[type[Exception], ...] = (
    ValueError,  # TruncatedDataset, NotPart10, UnicodeDecodeError, bad values
    struct.error,
    zlib.error,
    EOFError,
    KeyError,
    IndexError,
    OverflowError,
    NotImplementedError,
)


@dataclass(frozen=True)
class AcceptedHeader:
    """A dataset's header that passed every check, with its identifying UIDs."""

    header: Dataset
    transfer_syntax_uid: str
    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str


def raw_uid(header: Dataset, keyword: str) -> str:
    """A UID value as sent, without pydicom's conversion (which warns on bad UIDs); ""
    when it is absent or cannot be read."""
    try:
        if keyword not in header:
            return ""
        value = header.get_item(keyword).value
    except DECODE_ERRORS:  # a broken element decodes lazily
        return ""
    if isinstance(value, bytes):
        return value.decode("ascii", errors="replace").rstrip("\0 ")
    return "" if value is None else str(value).strip()


def accept_dataset(
    encoded: bytes | memoryview,
    transfer_syntax_uid: str,
    *,
    sop_class_uid: str | None = None,
    sop_instance_uid: str | None = None,
    study_instance_uid: str | None = None,
) -> AcceptedHeader:
    """Check an encoded dataset (as a C-STORE carries it) and decode its header.

    `sop_class_uid`/`sop_instance_uid`: what the C-STORE request names (the dataset must
    agree); `study_instance_uid`: the study a STOW-RS URL names, if any."""
    if not len(encoded):
        raise StoreRefused(Status.CANNOT_UNDERSTAND, "empty dataset")
    try:
        header = decode_header(encoded, transfer_syntax_uid)
        uids = {keyword: raw_uid(header, keyword) for keyword in REQUIRED_UIDS}
    except DECODE_ERRORS as exc:
        raise StoreRefused(
            Status.CANNOT_UNDERSTAND, f"dataset does not decode: {type(exc).__name__}"
        ) from exc
    known = {key: value for key, value in uids.items() if value and is_valid_uid(value)}

    def refuse(status: Status, reason: str) -> StoreRefused:
        return StoreRefused(status, reason, known)

    for key, value in uids.items():
        if not value:
            raise refuse(Status.MISSING_OR_INVALID_UID, f"{key} is missing")
        if not is_valid_uid(value):
            raise refuse(Status.MISSING_OR_INVALID_UID, f"{key} is not a valid UID")
    if (sop_instance_uid is not None and uids["SOPInstanceUID"] != sop_instance_uid) or (
        sop_class_uid is not None and uids["SOPClassUID"] != sop_class_uid
    ):
        raise refuse(
            Status.DATASET_DOES_NOT_MATCH_SOP_CLASS,
            "SOP Class/Instance UID in the dataset differ from the request",
        )
    if uids["SOPClassUID"] not in _STORAGE:
        raise refuse(Status.SOP_CLASS_NOT_SUPPORTED, "not a storage SOP class")
    if study_instance_uid and uids["StudyInstanceUID"] != study_instance_uid:
        raise refuse(
            Status.DATASET_DOES_NOT_MATCH_SOP_CLASS,
            "Study Instance UID differs from the one in the URL",
        )
    return AcceptedHeader(
        header,
        transfer_syntax_uid,
        uids["SOPClassUID"],
        uids["SOPInstanceUID"],
        uids["StudyInstanceUID"],
        uids["SeriesInstanceUID"],
    )


def accept_part10(
    blob: bytes | memoryview, *, study_instance_uid: str | None = None
) -> AcceptedHeader:
    """Check a DICOM Part 10 file (as a STOW-RS part carries it) like a C-STORE dataset;
    its File Meta Information must name a transfer syntax and agree with the dataset."""
    try:
        meta, encoded = split_part10(blob)
        transfer_syntax = raw_uid(meta, "TransferSyntaxUID")
        meta_sop_class = raw_uid(meta, "MediaStorageSOPClassUID") or None
        meta_sop_instance = raw_uid(meta, "MediaStorageSOPInstanceUID") or None
    except NotPart10 as exc:
        raise StoreRefused(Status.CANNOT_UNDERSTAND, f"not a DICOM Part 10 file: {exc}") from exc
    except DECODE_ERRORS as exc:
        raise StoreRefused(
            Status.CANNOT_UNDERSTAND, f"File Meta Information does not decode: {type(exc).__name__}"
        ) from exc
    if not transfer_syntax:
        raise StoreRefused(
            Status.CANNOT_UNDERSTAND, "no Transfer Syntax UID in the File Meta Information"
        )
    if transfer_syntax not in _TRANSFER_SYNTAXES:
        # What the SCP would not have accepted in association negotiation.
        raise StoreRefused(
            Status.CANNOT_UNDERSTAND, f"transfer syntax {transfer_syntax} is not supported"
        )
    return accept_dataset(
        encoded,
        transfer_syntax,
        sop_class_uid=meta_sop_class,
        sop_instance_uid=meta_sop_instance,
        study_instance_uid=study_instance_uid,
    )
