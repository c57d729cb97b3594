"""Query and retrieve from a PACS: C-FIND at study level to look a study up, C-MOVE to
have the PACS send it to us (our SCP stores it like any pushed study)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pydicom import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import uid_to_sop_class

LOGGER = logging.getLogger(__name__)

# pynetdicom.sop_class creates its named SOP classes at import time, so its type
# information does not declare them; uid_to_sop_class returns those same objects, typed.
StudyRootQueryRetrieveInformationModelFind = uid_to_sop_class("1.2.840.10008.5.1.4.1.2.2.1")
StudyRootQueryRetrieveInformationModelMove = uid_to_sop_class("1.2.840.10008.5.1.4.1.2.2.2")


class RetrieveError(RuntimeError):
    """The PACS could not be reached, or refused the query or the move."""


@dataclass(frozen=True)
class Peer:
    host: str
    port: int
    ae_title: str


@dataclass(frozen=True)
class FoundStudy:
    study_instance_uid: str
    patient_id: str
    accession_number: str
    study_date: str
    description: str
    instances: int | None


@dataclass(frozen=True)
class MoveOutcome:
    status: int
    completed: int
    failed: int
    warning: int

    @property
    def ok(self) -> bool:
        return self.status in (0x0000, 0xB000) and self.failed == 0


def _associate(peer: Peer, calling_ae: str, context: str, timeout: float):  # type: ignore[no-untyped-def]
    ae = AE(ae_title=calling_ae)
    ae.add_requested_context(context)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    assoc = ae.associate(peer.host, peer.port, ae_title=peer.ae_title)
    if not assoc.is_established:
        raise RetrieveError(f"cannot associate with {peer.ae_title}@{peer.host}:{peer.port}")
    return assoc


def find_studies(
    peer: Peer,
    calling_ae: str,
    *,
    study_uid: str = "",
    patient_id: str = "",
    accession_number: str = "",
    timeout: float = 30.0,
) -> list[FoundStudy]:
    """Studies on `peer` matching the keys given (at least one)."""
    if not (study_uid or patient_id or accession_number):
        raise ValueError("give a Study Instance UID, a patient ID or an accession number")
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = study_uid
    query.PatientID = patient_id
    query.AccessionNumber = accession_number
    query.StudyDate = ""
    query.StudyDescription = ""
    query.NumberOfStudyRelatedInstances = ""
    assoc = _associate(peer, calling_ae, StudyRootQueryRetrieveInformationModelFind, timeout)
    found = []
    try:
        for status, identifier in assoc.send_c_find(
            query, StudyRootQueryRetrieveInformationModelFind
        ):
            code = getattr(status, "Status", None)
            if code is None:
                raise RetrieveError("the PACS did not answer the query")
            if code in (0xFF00, 0xFF01) and identifier is not None:
                count = identifier.get("NumberOfStudyRelatedInstances")
                found.append(
                    FoundStudy(
                        str(identifier.get("StudyInstanceUID", "")),
                        str(identifier.get("PatientID", "")),
                        str(identifier.get("AccessionNumber", "")),
                        str(identifier.get("StudyDate", "")),
                        str(identifier.get("StudyDescription", "")),
                        int(count) if count not in (None, "") else None,
                    )
                )
            elif code != 0x0000:
                raise RetrieveError(f"the PACS refused the query (status 0x{code:04X})")
    finally:
        assoc.release()
    return found


def move_study(
    peer: Peer, calling_ae: str, study_uid: str, destination_ae: str, timeout: float = 600.0
) -> MoveOutcome:
    """Ask `peer` to send the study to `destination_ae` (which it must know); returns when
    the PACS has finished sending."""
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = study_uid
    assoc = _associate(peer, calling_ae, StudyRootQueryRetrieveInformationModelMove, timeout)
    last = MoveOutcome(0xC000, 0, 0, 0)
    try:
        for status, _identifier in assoc.send_c_move(
            query, destination_ae, StudyRootQueryRetrieveInformationModelMove
        ):
            code = getattr(status, "Status", None)
            if code is None:
                raise RetrieveError("the PACS did not answer the move")
            last = MoveOutcome(
                int(code),
                int(status.get("NumberOfCompletedSuboperations", 0) or 0),
                int(status.get("NumberOfFailedSuboperations", 0) or 0),
                int(status.get("NumberOfWarningSuboperations", 0) or 0),
            )
    finally:
        assoc.release()
    if last.status not in (0x0000, 0xB000, 0xFF00):
        raise RetrieveError(f"the PACS refused the move (status 0x{last.status:04X})")
    LOGGER.info("C-MOVE from %s: %d sent, %d failed", peer.ae_title, last.completed, last.failed)
    return last
