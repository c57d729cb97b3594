"""What a user may change: feedback on findings, and a failed delivery sent again. Each
is audited by the caller."""

from __future__ import annotations

import json

from sqlalchemy import select

from assistant.db import (
    Database,
    Delivery,
    Feedback,
    FeedbackVerdict,
    Job,
    JobState,
    ResultObject,
    Series,
    Study,
    utcnow,
)
from assistant.delivery.outbox import make_due
from assistant.findings import Findings

MAX_COMMENT = 2000


class ActionError(ValueError):
    """A request that cannot be done as asked."""


class NotFound(ActionError):
    """The request names something that is not there."""


def add_feedback(
    db: Database,
    study_instance_uid: str,
    job_id: int,
    lesion_index: int | None,
    verdict: str,
    comment: str,
    username: str,
    slices: tuple[int, int] | None = None,
) -> int:
    """Store a verdict on one finding of a job of this study; returns the feedback id.

    `missed` is a reader's mark of a finding the model did not report: study level, with
    `slices` (first, last; 1-based along the stack, as the study page numbers them)."""
    try:
        verdict_value = FeedbackVerdict(verdict)
    except ValueError:
        raise ActionError("verdict must be accept, reject or missed") from None
    if verdict_value is FeedbackVerdict.MISSED:
        if lesion_index is not None:
            raise ActionError("a missed finding is marked on the study, not on a finding")
        if slices is None:
            raise ActionError("say on which slices the missed finding is (first and last)")
    elif slices is not None:
        raise ActionError("slices go with a missed finding only")
    comment = comment.strip()
    if len(comment) > MAX_COMMENT:
        raise ActionError(f"a comment has at most {MAX_COMMENT} characters")
    with db.writing() as session:
        job = session.execute(
            select(Job)
            .join(Series, Series.id == Job.series_pk)
            .join(Study, Study.id == Series.study_pk)
            .where(Job.id == job_id, Study.study_instance_uid == study_instance_uid)
        ).scalar_one_or_none()
        if job is None or job.state is not JobState.DONE:
            raise NotFound("no finished analysis with that id in this study")
        if job.shadow:
            # Readers judge what was sent; a shadow model is judged against their verdicts
            # on the live one (assistant/registry/compare.py).
            raise ActionError("a shadow model's analysis takes no feedback: judge the live one")
        try:
            findings = Findings.from_dict(json.loads(job.findings_json or "null") or {})
        except ValueError:  # FindingsError or bad JSON: the record, not the user, is wrong
            findings = None
        if findings is None and lesion_index is not None:
            raise NotFound("this analysis's findings cannot be read")
        lesions = findings.lesions if findings else []
        if lesion_index is not None and not 0 <= lesion_index < len(lesions):
            raise NotFound("no such finding")
        if slices is not None:
            count = len(findings.slices) if findings else job.instance_count
            first, last = slices
            if not 1 <= first <= last <= count:
                raise ActionError(
                    f"slices {first} to {last}: the series has slices 1 to {count}, first <= last"
                )
        row = Feedback(
            job_pk=job.id,
            lesion_index=lesion_index,
            verdict=verdict_value,
            first_slice=slices[0] if slices else None,
            last_slice=slices[1] if slices else None,
            comment=comment,
            username=username,
            created_at=utcnow(),
        )
        session.add(row)
        session.flush()
        return row.id


def retry_delivery(db: Database, delivery_id: int) -> str:
    """Make a failed delivery due now; returns the Study Instance UID it belongs to."""
    with db.sessions() as session:
        study_uid = session.scalar(
            select(ResultObject.study_instance_uid)
            .join(Delivery, Delivery.result_pk == ResultObject.id)
            .where(Delivery.id == delivery_id)
        )
    if study_uid is None:
        raise NotFound("no such delivery")
    if not make_due(db, delivery_id, utcnow()):
        raise ActionError("that delivery was sent already")
    return study_uid
