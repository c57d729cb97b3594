"""Notices for the delivery tests: a subject, and a notice of given findings, built by
the node's own `build_notice`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from assistant.delivery.notice import NoticeSubject, build_notice
from assistant.findings import Findings

SUBJECT = NoticeSubject(
    patient_id="P1",
    patient_name="DOE^JANE",
    patient_birth_date="19600101",
    patient_sex="F",
    study_instance_uid="1.2.3",
    accession_number="A1",
    study_date="20261205",
    study_description="CT HEAD",
    series_instance_uid="1.2.3.4",
    series_number=2,
    series_description="HEAD 5MM",
    modality="CT",
    body_part="HEAD",
    calling_ae="ORTHANC",
)


def notice_of(
    findings: Findings,
    message_id: str = "1.2.5",
    replaces: str | None = None,
    subject: NoticeSubject = SUBJECT,
) -> dict[str, Any]:
    """The notice of `findings` about `subject`, made on 2026-12-05 at 08:00."""
    return build_notice(
        findings,
        subject,
        message_id=message_id,
        created_at=datetime(2026, 12, 5, 8, 0, 0),
        replaces=replaces,
        use_statement="NOT FOR CLINICAL USE",
        clinical_use=False,
        study_page="http://node/studies/1.2.3",
        viewer="http://node/viewer/viewer?StudyInstanceUIDs=1.2.3",
        sr_sop_instance_uid="1.2.3.9",
        sr_series_instance_uid="1.2.3.8",
    )
