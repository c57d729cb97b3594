"""Result objects of a done job, queued for the outbox, without running an analysis."""

from __future__ import annotations

from pathlib import Path

from pydicom.uid import generate_uid

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


def queue_results(sessions, outbox: Outbox, data_dir: Path, now, count: int = 3) -> None:  # type: ignore[no-untyped-def]
    """`count` result files of one done job, each queued for the outbox's destinations."""
    files = data_dir / "results"
    write_demo_series(files, count=count)
    with sessions() as session, session.begin():
        job = Job(
            series_pk=_series(session),
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


def _series(session) -> int:  # type: ignore[no-untyped-def]
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
