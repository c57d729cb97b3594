"""Result objects of a done job, queued for the outbox, without running an analysis."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from pydicom.uid import generate_uid
from sqlalchemy import select

from assistant.analysis.imaging.synthetic import write_demo_series
from assistant.db import (
    Job,
    JobState,
    Patient,
    ResultKind,
    ResultObject,
    Series,
    SeriesState,
    Study,
    utcnow,
)
from assistant.delivery.outbox import Outbox


class Clock:
    """A clock the test sets: the outbox's `clock`, moved on to make rows due."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now


def record_result(session, kind: ResultKind, uid: str, path: str, now: datetime) -> ResultObject:  # type: ignore[no-untyped-def]
    """A done job of the one test series (made on first use) and its result row: an
    object of `kind` with SOP Instance UID (a notice's message id) `uid`, at `path`
    relative to the data folder."""
    series_pk = session.scalar(
        select(Series.id).where(Series.series_instance_uid == "1.2.3.4")
    ) or make_series(session)
    job = Job(
        series_pk=series_pk,
        model_name="m",
        model_version="1",
        input_digest=uid,
        instance_count=1,
        state=JobState.DONE,
        reason="",
        attempts=1,
        worker="",
        created_at=now,
        summary="",
        findings_json="",
    )
    session.add(job)
    session.flush()
    result = ResultObject(
        job_pk=job.id,
        kind=kind,
        sop_class_uid="" if kind is ResultKind.NOTICE else "1.2",
        sop_instance_uid=uid,
        series_instance_uid="1.2.3.4",
        study_instance_uid="1.2.3",
        path=path,
        created_at=now,
    )
    session.add(result)
    session.flush()
    return result


def queue_results(sessions, outbox: Outbox, data_dir: Path, now, count: int = 3) -> None:  # type: ignore[no-untyped-def]
    """`count` result files of one done job, each queued for the outbox's destinations."""
    files = data_dir / "results"
    write_demo_series(files, count=count)
    with sessions() as session, session.begin():
        job = Job(
            series_pk=make_series(session),
            model_name="m",
            model_version="1",
            input_digest="d",
            instance_count=count,
            state=JobState.DONE,
            reason="",
            attempts=1,
            worker="",
            created_at=now,
            summary="",
            findings_json="",
        )
        session.add(job)
        session.flush()
        for path in sorted(files.iterdir()):
            result = ResultObject(
                job_pk=job.id,
                kind=ResultKind.SR,
                sop_class_uid="1.2",
                sop_instance_uid=generate_uid(),
                series_instance_uid="1.2.3",
                study_instance_uid="1.2.3",
                path=path.relative_to(data_dir).as_posix(),
                created_at=now,
            )
            session.add(result)
            session.flush()
            outbox.add(session, result)
            outbox.add(session, result)  # twice: still one row


def make_series(session) -> int:  # type: ignore[no-untyped-def]
    """A complete series of one patient's study, for the job to belong to."""
    now = utcnow()
    patient = Patient(
        patient_id="P",
        issuer_of_patient_id="",
        patient_name="",
        birth_date="",
        sex="",
        created_at=now,
    )
    study = Study(study_instance_uid="1.2.3", patient=patient, received_at=now)
    series = Series(
        series_instance_uid="1.2.3.4",
        study=study,
        state=SeriesState.COMPLETE,
        first_received_at=now,
        last_received_at=now,
    )
    session.add_all([patient, study, series])
    session.flush()
    return series.id
