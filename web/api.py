"""The JSON API under /api/v1, described by /api/v1/openapi.json. Same login as the
dashboard (a session, or HTTP Basic for scripts); writes with a session need the CSRF
token in an X-CSRFToken header.

Every answer other than success has one body, the OpenAPI document's `Error`:
`{"error": "<what is wrong>"}`, and for a bad value also the `parameter` it came in,
the `value` sent and what is allowed (`allowed` values, or `minimum`/`maximum`). A query
value out of range is refused (400), never quietly replaced by one that fits."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import date
from typing import Any

from flask import Blueprint, Response, jsonify, request
from flask_login import current_user, login_required
from sqlalchemy import select
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from assistant.db import Job, Series
from assistant.registry import Registry, Routes
from web.actions import MAX_COMMENT, ActionError, NotFound, add_feedback
from web.api_json import (
    analysis_json,
    feedback_json,
    job_json,
    model_json,
    route_json,
    study_json,
)
from web.auth import MACHINE_PATHS, record
from web.context import context
from web.openapi import FEEDBACK_VERDICTS, JOB_STATES, LIMIT_MAX, PER_PAGE_MAX, openapi_document
from web.studies import (
    STATUSES,
    VERDICTS,
    JobDetail,
    StudyFilter,
    StudyView,
    delivery_summaries,
    get_study,
    job_details,
    list_studies,
    model_weights,
)

blueprint = Blueprint("api", __name__)


class ApiError(Exception):
    """An answer other than success, with the Error body that says why."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        parameter: str | None = None,
        value: str | None = None,
        allowed: Sequence[str] | None = None,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"error": message}
        extra = {
            "parameter": parameter,
            "value": value[:200] if value is not None else None,
            "allowed": list(allowed) if allowed is not None else None,
            "minimum": minimum,
            "maximum": maximum,
        }
        self.body.update({k: v for k, v in extra.items() if v is not None})


@blueprint.errorhandler(ApiError)
def _api_error(error: ApiError) -> Any:
    return jsonify(error.body), error.status


@blueprint.errorhandler(HTTPException)
def _http_error(error: HTTPException) -> Any:
    """Whatever Flask or werkzeug raises in a view of ours, as an Error body too."""
    return jsonify({"error": error.description or error.name}), error.code or 500


@blueprint.app_errorhandler(MethodNotAllowed)
def _method_not_allowed(error: MethodNotAllowed) -> Any:
    """405 is found before any view runs, so it is answered for the whole app: an Error
    body on the paths machines use (the API, DICOMweb, /metrics), the usual page
    elsewhere."""
    if not request.path.startswith(MACHINE_PATHS):
        return error
    methods = sorted(set(error.valid_methods or ()) - {"HEAD", "OPTIONS"})
    response: Response = jsonify(
        {"error": f"{request.method} is not allowed here", "allowed": methods}
    )
    response.status_code = 405
    response.headers["Allow"] = ", ".join(error.valid_methods or ())
    return response


# -- query values ---------------------------------------------------------------------

#: The longest `q`: Patient ID is LO (64 characters), Accession Number SH (16).
SEARCH_MAX = 64


def _text(name: str) -> str | None:
    """A query value; None when absent or empty (as a form sends an unused filter)."""
    return request.args.get(name) or None


def _choice(name: str, allowed: Sequence[str]) -> str | None:
    value = _text(name)
    if value is not None and value not in allowed:
        raise ApiError(
            400,
            f"{name} must be one of {', '.join(allowed)}, not {value[:60]!r}",
            parameter=name,
            value=value,
            allowed=allowed,
        )
    return value


def _integer(name: str, default: int, minimum: int, maximum: int | None = None) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    # ASCII digits only (no sign, no space), and few enough that int() takes them.
    value = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 18 else None
    if value is None or value < minimum or (maximum is not None and value > maximum):
        bounds = f"from {minimum} to {maximum}" if maximum is not None else f"from {minimum}"
        raise ApiError(
            400,
            f"{name} must be an integer {bounds}, not {raw[:60]!r}",
            parameter=name,
            value=raw,
            minimum=minimum,
            maximum=maximum,
        )
    return value


def _date(name: str) -> date | None:
    value = _text(name)
    if value is None:
        return None
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        raise ApiError(
            400,
            f"{name} must be a date, YYYY-MM-DD, not {value[:60]!r}",
            parameter=name,
            value=value,
        ) from None


def _study_filter() -> StudyFilter:
    received_from, received_to = _date("from"), _date("to")
    if received_from and received_to and received_to < received_from:
        raise ApiError(
            400,
            f"to ({received_to}) is before from ({received_from})",
            parameter="to",
            value=str(received_to),
        )
    return StudyFilter(
        received_from=received_from,
        received_to=received_to,
        status=_choice("status", STATUSES),
        verdict=_choice("verdict", VERDICTS),
        search=_search(),
    )


def _search() -> str:
    """`q`: the start of a Patient ID or accession number (64 characters at most, the
    longer of the two: a longer value could never match, and is a 400, not cut)."""
    value = (request.args.get("q") or "").strip()
    if len(value) > SEARCH_MAX:
        raise ApiError(
            400,
            f"q must be at most {SEARCH_MAX} characters, not {len(value)}",
            parameter="q",
            value=value[:60],
            maximum=SEARCH_MAX,
        )
    return value


def _study_and_analyses(study_uid: str) -> tuple[StudyView, list[JobDetail]]:
    with context().sessions() as session:
        study = get_study(session, study_uid)
        if study is None:
            raise ApiError(
                404,
                "no study with this Study Instance UID here",
                parameter="study_uid",
                value=study_uid,
            )
        return study, job_details(session, study)


# -- routes ---------------------------------------------------------------------------


@blueprint.route("/openapi.json")
@login_required
def openapi() -> Any:
    return jsonify(openapi_document())


@blueprint.route("/studies")
@login_required
def studies() -> Any:
    flt = _study_filter()
    page_number = _integer("page", 1, 1)
    per_page = _integer("per_page", 50, 1, PER_PAGE_MAX)
    with context().sessions() as session:
        page = list_studies(session, flt, page_number, per_page)
    searched = request.query_string.decode("latin-1")[:300]  # what was searched for
    record(
        "study_list",
        detail=f"api; {searched or 'all'}; {len(page.studies)} of {page.total}",
        coalesce=True,
    )
    return jsonify(
        {
            "total": page.total,
            "page": page.page,
            "per_page": page.per_page,
            "studies": [study_json(s) for s in page.studies],
        }
    )


@blueprint.route("/studies/<study_uid>")
@login_required
def study(study_uid: str) -> Any:
    view, _ = _study_and_analyses(study_uid)
    record("study_view", target=study_uid, detail="api")
    return jsonify(study_json(view, with_series=True))


@blueprint.route("/studies/<study_uid>/findings")
@login_required
def findings(study_uid: str) -> Any:
    _, jobs = _study_and_analyses(study_uid)
    record("study_view", target=study_uid, detail="api findings")
    return jsonify({"study_instance_uid": study_uid, "analyses": [analysis_json(j) for j in jobs]})


@blueprint.route("/studies/<study_uid>/feedback", methods=["GET", "POST"])
@login_required
def feedback(study_uid: str) -> Any:
    if request.method == "GET":
        _, jobs = _study_and_analyses(study_uid)
        record("study_view", target=study_uid, detail="api feedback", coalesce=True)
        return jsonify({"feedback": [f for j in jobs for f in feedback_json(j)]})
    job_id, finding, verdict, comment, slices = _feedback_body()
    try:
        feedback_id = add_feedback(
            context().db,
            study_uid,
            job_id,
            None if finding == "study" else int(finding),
            verdict,
            comment,
            current_user.username,
            slices,
        )
    except NotFound as exc:
        raise ApiError(404, str(exc)) from None
    except ActionError as exc:
        raise ApiError(400, str(exc)) from None
    record(
        "feedback",
        target=study_uid,
        detail=f"feedback {feedback_id} on job {job_id} finding {finding} (api)",
    )
    return jsonify({"id": feedback_id}), 201


def _feedback_body() -> tuple[int, int | str, str, str, tuple[int, int] | None]:
    """(job_id, finding, verdict, comment, slices) of a FeedbackIn body, or the 400
    naming the field that is wrong."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object (Content-Type: application/json)")
    job_id = body.get("job_id")
    if not isinstance(job_id, int) or isinstance(job_id, bool):
        raise ApiError(
            400, "job_id must be an integer", parameter="job_id", value=json.dumps(job_id)
        )
    finding = body.get("finding", "study")
    if finding != "study" and (
        not isinstance(finding, int) or isinstance(finding, bool) or finding < 0
    ):
        raise ApiError(
            400,
            "finding must be 'study' or the index of a lesion in the analysis's lesions (from 0)",
            parameter="finding",
            value=json.dumps(finding),
        )
    verdict = body.get("verdict")
    if verdict not in FEEDBACK_VERDICTS:
        raise ApiError(
            400,
            f"verdict must be one of {', '.join(FEEDBACK_VERDICTS)}",
            parameter="verdict",
            value=json.dumps(verdict),
            allowed=FEEDBACK_VERDICTS,
        )
    comment = body.get("comment", "")
    if not isinstance(comment, str) or len(comment.strip()) > MAX_COMMENT:
        raise ApiError(
            400,
            f"comment must be text of at most {MAX_COMMENT} characters",
            parameter="comment",
            maximum=MAX_COMMENT,
        )
    slices = None
    if "first_slice" in body or "last_slice" in body:
        first, last = body.get("first_slice"), body.get("last_slice")
        for name, value in (("first_slice", first), ("last_slice", last)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ApiError(
                    400,
                    f"{name} must be a slice number from 1 (with verdict 'missed')",
                    parameter=name,
                    value=json.dumps(value),
                )
        slices = (int(first), int(last))  # type: ignore[arg-type]
    return job_id, finding, str(verdict), comment, slices


@blueprint.route("/jobs")
@login_required
def jobs() -> Any:
    state = _choice("state", JOB_STATES)
    limit = _integer("limit", 50, 1, LIMIT_MAX)
    query = (
        select(Job, Series.series_instance_uid).join(Series).order_by(Job.id.desc()).limit(limit)
    )
    if state:
        query = query.where(Job.state == state)
    with context().sessions() as session:
        rows = session.execute(query).all()
        delivery = delivery_summaries(session, [job.id for job, _ in rows])
        weights = model_weights(session)
    record("job_list", detail=f"api; {len(rows)} job(s)", coalesce=True)
    return jsonify(
        {
            "jobs": [
                job_json(
                    job,
                    series_uid,
                    delivery.get(job.id, "none"),
                    weights.get((job.model_name, job.model_version), ""),
                )
                for job, series_uid in rows
            ]
        }
    )


@blueprint.route("/models")
@login_required
def models() -> Any:
    """The model registry (every version, each with its state) and the routes."""
    ctx = context()
    registry = Registry(ctx.db, ctx.settings.storage.data_dir)
    return jsonify(
        {
            "models": [model_json(entry) for entry in registry.models()],
            "routes": [route_json(route) for route in Routes(ctx.db).all()],
        }
    )
