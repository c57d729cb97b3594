"""From a complete series to its jobs: the selection rules, the routes, then one job
per model that reads it (queued), or one skipped job saying why none does.

Runs wherever series complete (the SCP process); imports no torch. A job is unique per
(series, model, version, input digest): the same series completing again with the same
instances makes no second job; with new instances it makes new ones. The registry and
the routes are read for every series, so a model added, promoted or retired, or a route
changed, counts from the next series on, without a restart.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from assistant.db import (
    Database,
    Instance,
    Job,
    JobState,
    ModelState,
    Series,
    SeriesState,
    input_digest,
    utcnow,
)
from assistant.intake.completion import CompletedSeries
from assistant.intake.selection import SeriesFacts, skip_reason
from assistant.registry import ModelEntry, Registry, RouteFacts, Routes, routed_names
from assistant.settings import SelectionSettings

LOGGER = logging.getLogger(__name__)

#: The model name of a job that no model ran: the series was skipped before routing.
NO_MODEL = ""


class SubmitRefused(ValueError):
    """A job asked for cannot be made: the message says why."""


class JobSubmitter:
    """The completion hook: records the jobs of each complete series and enqueues them."""

    def __init__(
        self,
        db: Database,
        selection: SelectionSettings,
        registry: Registry,
        routes: Routes,
        enqueue: Callable[[int], None],
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._sessions = db.sessions
        self._selection = selection
        self._registry = registry
        self._routes = routes
        self._enqueue = enqueue
        self._write_lock = db.write_lock
        self._clock = clock

    def __call__(self, completed: CompletedSeries) -> None:
        self.submit(completed.series_pk)

    def submit_unjobbed(self, completed_before: datetime | None = None) -> int:
        """Submit every complete series that has no job at all: a crash between completion
        and submission leaves such series; returns how many. `completed_before`: only
        those completed before then (while other processes run, one that completed a
        series a moment ago is about to submit it itself)."""
        query = (
            select(Series.id)
            .where(Series.state == SeriesState.COMPLETE)
            .where(~select(Job.id).where(Job.series_pk == Series.id).exists())
        )
        if completed_before is not None:
            query = query.where(Series.completed_at < completed_before)
        with self._sessions() as session:
            pks = list(session.scalars(query))
        for pk in pks:
            LOGGER.warning("series %d was complete without a job; submitting it now", pk)
            self.submit(pk)
        return len(pks)

    def submit(self, series_pk: int, model: ModelEntry | None = None) -> list[int]:
        """Record the series' jobs as it is now; returns the ids of those queued.

        With `model` (a person asking for it: `radassist jobs run`), that model's job
        alone, whatever the routes say; the selection rules still apply."""
        # Read before the write lock: the registry and routes are small, and the lock is
        # the one every C-STORE's commit takes.
        active = self._registry.active() if model is None else [model]
        routes = self._routes.all() if model is None else []
        queued: list[int] = []
        skipped: tuple[int, str] | None = None
        with self._write_lock, self._sessions() as session, session.begin():
            series = session.get(Series, series_pk)
            if series is None:
                return []
            rows = session.execute(
                select(
                    Instance.sop_instance_uid,
                    Instance.version,
                    Instance.frame_count,
                    Instance.image_orientation,
                ).where(Instance.series_pk == series_pk)
            ).all()
            digest = input_digest((row.sop_instance_uid, row.version) for row in rows)
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
            readers: list[ModelEntry] = []
            if reason is None:
                names = routed_names(
                    routes,
                    RouteFacts(
                        modality=series.modality,
                        series_description=series.series_description,
                        body_part_examined=series.body_part_examined,
                        calling_ae_title=series.calling_ae_title,
                        slice_thickness_mm=series.slice_thickness_mm,
                    ),
                    [entry.name for entry in active],
                )
                # Live models first: with one job thread, a shadow model's analysis
                # never delays a result that is sent.
                readers = sorted(
                    (entry for entry in active if entry.name in names),
                    key=lambda entry: entry.state is ModelState.SHADOW,
                )
                if not readers:
                    reason = (
                        "no route sends it to a live or shadow model"
                        if routes
                        else "no live or shadow model in the registry"
                    )
            if reason is not None and model is not None:
                raise SubmitRefused(f"series {series.series_instance_uid} is not read: {reason}")
            if reason is not None:
                job_id = self._add_job(session, series_pk, None, digest, len(rows), reason)
                if job_id is not None:
                    skipped = (job_id, reason)
            for entry in readers:
                job_id = self._add_job(session, series_pk, entry, digest, len(rows), None)
                if job_id is not None:
                    queued.append(job_id)
        if skipped is not None:
            LOGGER.info("series %d skipped (job %d): %s", series_pk, *skipped)
        for job_id in queued:
            LOGGER.info("series %d queued as job %d", series_pk, job_id)
            self._enqueue(job_id)
        return queued

    def _add_job(
        self,
        session: Session,
        series_pk: int,
        model: ModelEntry | None,
        digest: str,
        count: int,
        reason: str | None,
    ) -> int | None:
        """Add the job of `model` (None: the skipped job no model ran) unless these inputs
        have one; returns its id when added."""
        name = model.name if model else NO_MODEL
        version = model.version if model else NO_MODEL
        existing = session.scalar(
            select(Job.id).where(
                Job.series_pk == series_pk,
                Job.model_name == name,
                Job.model_version == version,
                Job.input_digest == digest,
            )
        )
        if existing is not None:
            LOGGER.info("series %d: job %d exists for these instances", series_pk, existing)
            return None
        now = self._clock()
        job = Job(
            series_pk=series_pk,
            model_name=name,
            model_version=version,
            input_digest=digest,
            instance_count=count,
            state=JobState.SKIPPED if reason else JobState.QUEUED,
            reason=reason or "",
            attempts=0,
            worker="",
            created_at=now,
            finished_at=now if reason else None,
            summary="",
            findings_json="",
            shadow=model is not None and model.state is ModelState.SHADOW,
        )
        session.add(job)
        session.flush()
        return job.id


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
