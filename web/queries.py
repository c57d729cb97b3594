"""Request arguments → the studies they ask for: the worklist's filters, a page number,
one study with its analyses. Shared by the dashboard's pages and the JSON API; a bad
argument is a 400 and a study that is not here a 404. And what changed in the worklist
since a page last looked, cheaply enough for every open worklist to ask every few seconds.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from flask import abort
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from assistant.db import Delivery, DeliveryState, Job, JobState, Series, SeriesState, Study
from web.context import context
from web.studies import (
    RECEIVING_WINDOW,
    STATUSES,
    VERDICTS,
    JobDetail,
    StudyFilter,
    StudyView,
    get_study,
    job_details,
)


def _date(value: str | None) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        abort(400)


def study_filter(args: Any) -> StudyFilter:
    """The worklist's filters from query arguments; unknown values are a 400."""
    status = args.get("status") or None
    verdict = args.get("verdict") or None
    if status is not None and status not in STATUSES:
        abort(400)
    if verdict is not None and verdict not in VERDICTS:
        abort(400)
    return StudyFilter(
        received_from=_date(args.get("from")),
        received_to=_date(args.get("to")),
        status=status,
        verdict=verdict,
        search=(args.get("q") or "").strip()[:64],
    )


def page_number(args: Any) -> int:
    try:
        return max(1, int(args.get("page", 1)))
    except ValueError:
        abort(400)


def study_and_jobs(study_uid: str) -> tuple[StudyView, list[JobDetail]]:
    """A study and the latest analysis of each model of each of its series; 404 if it
    is not here."""
    with context().sessions() as session:
        study = get_study(session, study_uid)
        if study is None:
            abort(404)
        return study, job_details(session, study)


# --- What changed in the worklist: polled by the page every few seconds -----------------

#: A positive that finished this long before the previous poll still counts as new: a
#: worker stamps `finished_at` a moment before it commits, and a poll can fall in between
#: (and workers on other hosts have clocks of their own). The page drops the studies it
#: has already shown, so the overlap costs nothing.
NEW_POSITIVE_SLACK = timedelta(seconds=60)
#: How far back a token reaches at most, whatever it says: an old or made-up token must
#: not make a poll read the whole job table.
MAX_LOOKBACK = timedelta(hours=1)
MAX_LOOKBACK_JOBS = 10_000
#: New positive studies one answer names at most.
MAX_NEW_POSITIVES = 10
_EPOCH = datetime(1970, 1, 1)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class ChangeToken:
    """Where the worklist stood when a page last looked: a digest of what its rows show,
    when (the server's clock), and the lowest id of a job that could still finish after
    that. Written into the page and handed back by each poll, opaque to the browser."""

    digest: str
    at: datetime
    first_job: int

    def __str__(self) -> str:
        return f"{(self.at - _EPOCH) // _MICROSECOND}.{self.first_job}.{self.digest}"

    @classmethod
    def parse(cls, text: str) -> ChangeToken | None:
        """The token `str()` wrote, or None for anything else."""
        parts = text.split(".")
        if len(parts) != 3 or not all(parts) or not parts[2].isalnum():
            return None
        try:
            at = _EPOCH + int(parts[0]) * _MICROSECOND
            return cls(parts[2][:64], at, max(0, int(parts[1])))
        except (ValueError, OverflowError):
            return None


def change_token(session: Session, now: datetime) -> ChangeToken:
    """The worklist's state now, from a few aggregates that the indexes answer (primary
    keys, job and delivery state, receiving series) without reading the big tables:

    - a study or series arrives: their highest ids;
    - a series completes, or is reopened: the count of receiving series; one stops
      "receiving" and starts "waiting" (RECEIVING_WINDOW after its last instance);
    - a job is queued, starts, finishes or is tried again: the highest job id, the
      counts of queued and running jobs, their attempts and latest start;
    - a delivery is queued, claimed, sent, fails (for now or for good) or is retried:
      the highest delivery id, the counts of pending, sending and failed deliveries,
      the attempts of those not done and their latest claim.
    """
    receiving = Series.state == SeriesState.RECEIVING
    active_job = Job.state.in_((JobState.QUEUED, JobState.RUNNING))
    active_delivery = Delivery.state.in_((DeliveryState.PENDING, DeliveryState.SENDING))

    def one(column: Any, *where: Any) -> Any:
        return select(column).where(*where).scalar_subquery()

    row = session.execute(
        select(
            one(func.max(Study.id)),
            one(func.max(Series.id)),
            one(func.count(Series.id), receiving),
            one(func.max(Series.last_received_at), receiving),
            one(func.max(Job.id)),
            one(func.count(Job.id), Job.state == JobState.QUEUED),
            one(func.count(Job.id), Job.state == JobState.RUNNING),
            one(func.min(Job.id), active_job),
            one(func.sum(Job.attempts), active_job),
            one(func.max(Job.started_at), active_job),
            one(func.max(Delivery.id)),
            one(func.count(Delivery.id), Delivery.state == DeliveryState.PENDING),
            one(func.count(Delivery.id), Delivery.state == DeliveryState.SENDING),
            one(func.count(Delivery.id), Delivery.state == DeliveryState.FAILED),
            one(func.sum(Delivery.attempts), active_delivery),
            one(func.max(Delivery.claimed_at), active_delivery),
        )
    ).one()
    last_received, max_job, min_active_job = row[3], row[4], row[7]
    shown = (
        *row[:3],
        last_received is not None and now - last_received < RECEIVING_WINDOW,
        *row[4:7],
        *row[8:],
    )
    digest = hashlib.sha256(repr(shown).encode()).hexdigest()[:20]
    first_job = min_active_job if min_active_job is not None else (max_job or 0) + 1
    return ChangeToken(digest, now, first_job)


def new_positives(session: Session, since: ChangeToken, now: datetime) -> list[StudyView]:
    """The studies whose analysis came out positive after `since` (less the slack), as
    their rows show them now, the first to finish first; at most MAX_NEW_POSITIVES.
    Those whose latest analyses are no longer positive are left out."""
    after = max(since.at, now - MAX_LOOKBACK) - NEW_POSITIVE_SLACK
    last_job = session.scalar(select(func.max(Job.id))) or 0
    first_job = max(since.first_job, last_job - MAX_LOOKBACK_JOBS)
    uids = session.scalars(
        select(Study.study_instance_uid)
        .join(Series, Series.study_pk == Study.id)
        .join(Job, Job.series_pk == Series.id)
        .where(
            Job.id >= first_job,
            Job.state == JobState.DONE,
            Job.positive.is_(True),
            Job.shadow.is_(False),  # a model in shadow never announces a study
            Job.finished_at > after,
        )
        .group_by(Study.study_instance_uid)
        .order_by(func.max(Job.finished_at))
        .limit(MAX_NEW_POSITIVES)
    ).all()
    views = (get_study(session, uid) for uid in uids)
    return [view for view in views if view is not None and view.positive]
