"""Request arguments → the studies they ask for: the worklist's filters, a page number,
one study with its analyses. Shared by the dashboard's pages and the JSON API; a bad
argument is a 400 and a study that is not here a 404."""

from __future__ import annotations

from datetime import date
from typing import Any

from flask import abort

from web.context import context
from web.studies import (
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
    """A study and the latest analysis of each of its series; 404 if it is not here."""
    with context().sessions() as session:
        study = get_study(session, study_uid)
        if study is None:
            abort(404)
        return study, job_details(session, study)
