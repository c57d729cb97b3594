"""Instances that arrive over HTTP (STOW-RS) go into the same durable store, database and
series completion as C-STORE: each part passes the same checks (dicom_node.acceptance)
and gets the same failure statuses."""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass

from assistant.intake.ingest import Ingest
from dicom_node import AssociationSummary, ReceivedInstance, Status, StoreRefused
from dicom_node.acceptance import AcceptedHeader, accept_part10
from dicom_node.status import status_for_os_error

LOGGER = logging.getLogger(__name__)
#: What series selection sees as the "calling AE title" of instances stored by STOW-RS.
STOW_CALLER = "DICOMWEB"
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


def _outcome(status: Status, reason: str, accepted: AcceptedHeader | None = None) -> PartOutcome:
    if accepted is None:
        return PartOutcome("", "", "", "", status, reason)
    return PartOutcome(
        accepted.sop_class_uid,
        accepted.sop_instance_uid,
        accepted.study_instance_uid,
        accepted.series_instance_uid,
        status,
        reason,
    )


def _refused(refusal: StoreRefused) -> PartOutcome:
    """A refused part, named by whatever of its identity could be read."""
    uids = refusal.uids
    return PartOutcome(
        uids.get("SOPClassUID", ""),
        uids.get("SOPInstanceUID", ""),
        uids.get("StudyInstanceUID", ""),
        uids.get("SeriesInstanceUID", ""),
        refusal.status,
        refusal.reason,
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
        """Check a part as a C-STORE dataset is checked (dicom_node.acceptance), then store
        it. A fault of ours is logged with its traceback and answered 0x0110, never
        mistaken for the sender's 0xC000."""
        try:
            accepted = accept_part10(blob, study_instance_uid=expected_study)
        except StoreRefused as refusal:
            LOGGER.warning(
                "a STOW-RS part refused with 0x%04X %s: %s",
                refusal.status,
                refusal.status.name,
                refusal.reason,
            )
            return _refused(refusal)
        except Exception as exc:  # a bug of ours in the checks: not the sender's fault
            LOGGER.exception("unexpected error checking a STOW-RS part")
            return _outcome(Status.PROCESSING_FAILURE, f"internal error: {type(exc).__name__}")
        instance = ReceivedInstance(
            association_id=request_id,
            calling_ae_title=STOW_CALLER,
            sop_class_uid=accepted.sop_class_uid,
            sop_instance_uid=accepted.sop_instance_uid,
            study_instance_uid=accepted.study_instance_uid,
            series_instance_uid=accepted.series_instance_uid,
            transfer_syntax_uid=accepted.transfer_syntax_uid,
            header=accepted.header,
            file_meta_bytes=b"",
            encoded=blob,
        )
        try:
            self._ingest.store(instance)
        except StoreRefused as exc:
            return _outcome(exc.status, exc.reason, accepted)
        except OSError as exc:  # the same statuses as a C-STORE that cannot be written
            LOGGER.error("cannot store a STOW-RS instance: %s", exc)
            return _outcome(status_for_os_error(exc), exc.strerror or str(exc), accepted)
        except Exception as exc:  # a bug of ours: the sender is not to blame
            LOGGER.exception("unexpected error storing a STOW-RS instance")
            return _outcome(
                Status.PROCESSING_FAILURE, f"internal error: {type(exc).__name__}", accepted
            )
        return _outcome(Status.SUCCESS, "", accepted)
