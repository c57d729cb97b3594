"""Instances that arrive over HTTP (STOW-RS) go into the same durable store, database and
series completion as C-STORE: each part is checked like a C-STORE dataset and gets the
same failure statuses."""

from __future__ import annotations

import io
import itertools
import logging
from dataclasses import dataclass

from pydicom import Dataset, dcmread
from pydicom.errors import InvalidDicomError

from assistant.ingest import Ingest
from dicom_node import AssociationSummary, ReceivedInstance, Status, StoreRefused, is_valid_uid
from dicom_node.contexts import STORAGE_SOP_CLASSES

LOGGER = logging.getLogger(__name__)
#: What series selection sees as the "calling AE title" of instances stored by STOW-RS.
STOW_CALLER = "DICOMWEB"
_STORAGE = frozenset(STORAGE_SOP_CLASSES)
#: Request ids, negative so they never collide with pynetdicom's association ids.
_REQUEST_IDS = itertools.count(-1, -1)


@dataclass(frozen=True)
class PartOutcome:
    """What became of one part: stored (status SUCCESS) or failed, and why."""

    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    status: Status
    reason: str = ""

    @property
    def stored(self) -> bool:
        return self.status is Status.SUCCESS


def _uid(header: Dataset | None, keyword: str) -> str:
    """A UID from a header that may be malformed anywhere; "" when it cannot be read."""
    if header is None:
        return ""
    try:
        value = str(header.get(keyword, "") or "")
    except Exception:  # a broken element decodes lazily and can fail in any way
        return ""
    return value if is_valid_uid(value) else ""


def _outcome(status: Status, reason: str, header: Dataset | None = None) -> PartOutcome:
    return PartOutcome(
        _uid(header, "SOPClassUID"),
        _uid(header, "SOPInstanceUID"),
        _uid(header, "StudyInstanceUID"),
        _uid(header, "SeriesInstanceUID"),
        status,
        reason,
    )


class StowIntake:
    """Stores the parts of one or more STOW-RS requests through an Ingest."""

    def __init__(self, ingest: Ingest) -> None:
        self._ingest = ingest

    def store_parts(
        self, parts: list[memoryview], expected_study: str | None, remote: str
    ) -> list[PartOutcome]:
        """Store each Part 10 blob; then tell completion, as an association release does."""
        request_id = next(_REQUEST_IDS)
        outcomes = [self._store_one(request_id, blob, expected_study) for blob in parts]
        stored = [o for o in outcomes if o.stored]
        series = tuple(dict.fromkeys((o.study_instance_uid, o.series_instance_uid) for o in stored))
        LOGGER.info(
            "STOW-RS from %s: %d stored, %d failed",
            remote,
            len(stored),
            len(outcomes) - len(stored),
        )
        if series:
            self._ingest.association_ended(
                AssociationSummary(request_id, STOW_CALLER, remote, True, series, len(stored))
            )
        return outcomes

    def _store_one(
        self, request_id: int, blob: memoryview, expected_study: str | None
    ) -> PartOutcome:
        try:
            return self._checked_store(request_id, blob, expected_study)
        except Exception as exc:  # a malformed dataset can fail anywhere as it is decoded
            LOGGER.warning("a STOW-RS part could not be read: %s", type(exc).__name__)
            return _outcome(Status.CANNOT_UNDERSTAND, "the dataset cannot be decoded")

    def _checked_store(
        self, request_id: int, blob: memoryview, expected_study: str | None
    ) -> PartOutcome:
        try:
            dataset = dcmread(io.BytesIO(blob), stop_before_pixels=True)
        except (InvalidDicomError, ValueError, EOFError, OSError, KeyError) as exc:
            return _outcome(Status.CANNOT_UNDERSTAND, f"not a DICOM Part 10 file: {exc}")
        meta = getattr(dataset, "file_meta", None)
        transfer_syntax = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
        if not transfer_syntax:
            return _outcome(Status.CANNOT_UNDERSTAND, "no File Meta Information", dataset)
        for keyword in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
            if not is_valid_uid(str(dataset.get(keyword, "") or "")):
                return _outcome(
                    Status.MISSING_OR_INVALID_UID, f"{keyword} missing or invalid", dataset
                )
        if str(dataset.SOPClassUID) not in _STORAGE:
            return _outcome(Status.SOP_CLASS_NOT_SUPPORTED, "not a storage SOP class", dataset)
        if expected_study and str(dataset.StudyInstanceUID) != expected_study:
            return _outcome(
                Status.DATASET_DOES_NOT_MATCH_SOP_CLASS,
                "Study Instance UID differs from the one in the URL",
                dataset,
            )
        instance = ReceivedInstance(
            association_id=request_id,
            calling_ae_title=STOW_CALLER,
            sop_class_uid=str(dataset.SOPClassUID),
            sop_instance_uid=str(dataset.SOPInstanceUID),
            study_instance_uid=str(dataset.StudyInstanceUID),
            series_instance_uid=str(dataset.SeriesInstanceUID),
            transfer_syntax_uid=transfer_syntax,
            header=dataset,
            file_meta_bytes=b"",
            encoded=blob,
        )
        try:
            self._ingest.store(instance)
        except StoreRefused as exc:
            return _outcome(exc.status, exc.reason, dataset)
        except OSError as exc:
            LOGGER.error("cannot store a STOW-RS instance: %s", exc)
            return _outcome(Status.OUT_OF_RESOURCES, "cannot write the instance", dataset)
        return _outcome(Status.SUCCESS, "", dataset)
