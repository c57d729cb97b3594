"""From a complete series to a job: the selection rules, then queued or skipped.

Runs wherever series complete (the SCP process); imports no torch. A job is unique per
(series, model, input digest): the same series completing again with the same
instances makes no second job; with new instances it makes a new one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, select, update

from assistant.db import (
    Database,
    Instance,
    Job,
    JobState,
    Series,
    SeriesState,
    input_digest,
    utcnow,
)
from assistant.findings import ModelIdentity
from assistant.intake.completion import CompletedSeries
from assistant.intake.selection import SeriesFacts, skip_reason
from assistant.settings import SelectionSettings

LOGGER = logging.getLogger(__name__)


class JobSubmitter:
    """The completion hook: records a job for each complete series and enqueues it."""

    def __init__(
        self,
        db: Database,
        selection: SelectionSettings,
        model: ModelIdentity,
        enqueue: Callable[[int], None],
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._sessions = db.sessions
        self._selection = selection
        self._model_name, self._model_version = model.name, model.version
        self._enqueue = enqueue
        self._write_lock = db.write_lock
        self._clock = clock

    def __call__(self, completed: CompletedSeries) -> None:
        self.submit(completed.series_pk)

    def submit_unjobbed(self) -> int:
        """Submit every complete series that has no job for this model: a crash between
        completion and submission leaves such series; returns how many."""
        with self._sessions() as session:
            pks = list(
                session.scalars(
                    select(Series.id)
                    .where(Series.state == SeriesState.COMPLETE)
                    .where(
                        ~select(Job.id)
                        .where(
                            Job.series_pk == Series.id,
                            Job.model_name == self._model_name,
                            Job.model_version == self._model_version,
                        )
                        .exists()
                    )
                )
            )
        for pk in pks:
            LOGGER.warning("series %d was complete without a job; submitting it now", pk)
            self.submit(pk)
        return len(pks)

    def submit(self, series_pk: int) -> int | None:
        """Record the job for the series as it is now; returns its id if it was queued."""
        with self._write_lock, self._sessions() as session, session.begin():
            series = session.get(Series, series_pk)
            if series is None:
                return None
            rows = session.execute(
                select(
                    Instance.sop_instance_uid,
                    Instance.version,
                    Instance.frame_count,
                    Instance.image_orientation,
                ).where(Instance.series_pk == series_pk)
            ).all()
            digest = input_digest((row.sop_instance_uid, row.version) for row in rows)
            existing = session.scalar(
                select(Job.id).where(
                    Job.series_pk == series_pk,
                    Job.model_name == self._model_name,
                    Job.model_version == self._model_version,
                    Job.input_digest == digest,
                )
            )
            if existing is not None:
                LOGGER.info("series %d: job %d exists for these instances", series_pk, existing)
                return None
            facts = SeriesFacts(
                modality=series.modality,
                series_description=series.series_description,
                body_part_examined=series.body_part_examined,
                calling_ae_title=series.calling_ae_title,
                instance_count=len(rows),
                frame_count=sum(row.frame_count for row in rows),
                orientations=[row.image_orientation for row in rows],
            )
            reason = skip_reason(facts, self._selection)
            now = self._clock()
            job = Job(
                series_pk=series_pk,
                model_name=self._model_name,
                model_version=self._model_version,
                input_digest=digest,
                instance_count=len(rows),
                state=JobState.SKIPPED if reason else JobState.QUEUED,
                reason=reason or "",
                attempts=0,
                worker="",
                created_at=now,
                finished_at=now if reason else None,
                summary="",
                findings_json="",
            )
            session.add(job)
            session.flush()
            job_id = job.id
        if reason:
            LOGGER.info("series %d skipped (job %d): %s", series_pk, job_id, reason)
            return None
        LOGGER.info("series %d queued as job %d", series_pk, job_id)
        self._enqueue(job_id)
        return job_id


def retry_job(db: Database, job_id: int, enqueue: Callable[[int], None]) -> bool:
    """Queue a failed job again; False when the job is not failed."""
    with db.writing() as session:
        # An UPDATE executes to a CursorResult (which has rowcount); Session.execute
        # is typed as returning the general Result.
        changed = cast(
            CursorResult[Any],
            session.execute(
                update(Job)
                .where(Job.id == job_id, Job.state == JobState.FAILED)
                .values(state=JobState.QUEUED, finished_at=None)
            ),
        ).rowcount
    if changed != 1:
        return False
    LOGGER.info("job %d queued again", job_id)
    enqueue(job_id)
    return True
