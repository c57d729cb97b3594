"""The JSON API under /api/v1, described by /api/v1/openapi.json. Same login as the
dashboard (a session, or HTTP Basic for scripts); writes with a session need the CSRF
token in an X-CSRFToken header."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, jsonify, request
from flask_login import current_user, login_required
from sqlalchemy import select

from assistant.db import Job, JobState, Series
from web.actions import ActionError, NotFound, add_feedback
from web.auth import record
from web.context import context
from web.openapi import openapi_document
from web.queries import page_number, study_and_jobs, study_filter
from web.studies import JobDetail, StudyView, list_studies

blueprint = Blueprint("api", __name__)


def _iso(value: Any) -> str | None:
    return value.isoformat() + "Z" if value is not None else None


def study_json(study: StudyView, *, with_series: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "study_instance_uid": study.study_instance_uid,
        "patient_id": study.patient_id,
        # As the dashboard shows it: DICOM's "^" between family and given names kept.
        "patient_name": study.patient_name,
        "accession_number": study.accession_number,
        "study_date": study.study_date,
        "description": study.description,
        "received_at": _iso(study.received_at),
        "status": study.status,
        "verdict": study.verdict,
        "probability": study.probability,
        "finding": study.finding,
    }
    if with_series:
        data["series"] = [
            {
                "series_instance_uid": s.series_instance_uid,
                "series_number": s.number,
                "description": s.description,
                "modality": s.modality,
                "instances": s.instance_count,
                "status": s.status,
                "reason": s.reason,
                "job_id": s.job_id,
                "instance_changes": dict(s.instance_changes),
            }
            for s in study.series
        ]
    return data


def findings_json(job: JobDetail) -> dict[str, Any]:
    return {
        "job_id": job.id,
        "series_instance_uid": job.series_instance_uid,
        "series_number": job.series_number,
        "series_description": job.series_description,
        "model": job.model,
        "state": job.state,
        "positive": job.positive,
        "probability": job.probability,
        "summary": job.summary,
        "notes": list(job.findings.notes) if job.findings else [],
        "lesions": [lesion.to_dict() for lesion in job.lesions],
        "slices": job.findings.to_dict()["slices"] if job.findings else [],
        "results": [
            {
                "kind": r.kind,
                "sop_instance_uid": r.sop_instance_uid,
                "deliveries": [
                    {
                        "id": d.id,
                        "destination": d.destination,
                        "state": d.state,
                        "attempts": d.attempts,
                        "peer_status": d.peer_status,
                        "sent_at": _iso(d.sent_at),
                    }
                    for d in r.deliveries
                ],
            }
            for r in job.results
        ],
    }


def feedback_json(job: JobDetail) -> list[dict[str, Any]]:
    return [
        {
            "id": f.id,
            "job_id": job.id,
            "finding": "study" if f.lesion_index is None else f.lesion_index,
            "verdict": f.verdict,
            "comment": f.comment,
            "username": f.username,
            "created_at": _iso(f.created_at),
        }
        for f in job.feedback
    ]


@blueprint.route("/openapi.json")
@login_required
def openapi() -> Any:
    return jsonify(openapi_document())


@blueprint.route("/studies")
@login_required
def studies() -> Any:
    try:
        per_page = min(200, max(1, int(request.args.get("per_page", 50))))
    except ValueError:
        abort(400)
    with context().sessions() as session:
        page = list_studies(
            session, study_filter(request.args), page_number(request.args), per_page
        )
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
    view, _ = study_and_jobs(study_uid)
    record("study_view", target=study_uid, detail="api")
    return jsonify(study_json(view, with_series=True))


@blueprint.route("/studies/<study_uid>/findings")
@login_required
def findings(study_uid: str) -> Any:
    _, jobs = study_and_jobs(study_uid)
    record("study_view", target=study_uid, detail="api findings")
    return jsonify({"study_instance_uid": study_uid, "analyses": [findings_json(j) for j in jobs]})


@blueprint.route("/studies/<study_uid>/feedback", methods=["GET", "POST"])
@login_required
def feedback(study_uid: str) -> Any:
    if request.method == "GET":
        _, jobs = study_and_jobs(study_uid)
        record("study_view", target=study_uid, detail="api feedback", coalesce=True)
        return jsonify({"feedback": [f for j in jobs for f in feedback_json(j)]})
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return jsonify({"error": "expected a JSON object"}), 400
    finding = body.get("finding", "study")
    job_id = body.get("job_id")
    if not isinstance(job_id, int) or not (finding == "study" or isinstance(finding, int)):
        return jsonify({"error": "job_id must be an integer and finding 'study' or an index"}), 400
    try:
        feedback_id = add_feedback(
            context().db,
            study_uid,
            job_id,
            None if finding == "study" else finding,
            str(body.get("verdict", "")),
            str(body.get("comment", "")),
            current_user.username,
        )
    except ActionError as exc:
        return jsonify({"error": str(exc)}), 404 if isinstance(exc, NotFound) else 400
    record(
        "feedback",
        target=study_uid,
        detail=f"feedback {feedback_id} on job {job_id} finding {finding} (api)",
    )
    return jsonify({"id": feedback_id}), 201


@blueprint.route("/jobs")
@login_required
def jobs() -> Any:
    state = request.args.get("state")
    if state is not None and state not in {s.value for s in JobState}:
        abort(400)
    try:
        limit = min(500, max(1, int(request.args.get("limit", 50))))
    except ValueError:
        abort(400)
    query = (
        select(Job, Series.series_instance_uid).join(Series).order_by(Job.id.desc()).limit(limit)
    )
    if state:
        query = query.where(Job.state == state)
    with context().sessions() as session:
        rows = session.execute(query).all()
    record("job_list", detail=f"api; {len(rows)} job(s)", coalesce=True)
    return jsonify(
        {
            "jobs": [
                {
                    "id": job.id,
                    "series_instance_uid": series_uid,
                    "state": job.state.value,
                    "reason": job.reason,
                    "model": f"{job.model_name} {job.model_version}",
                    "attempts": job.attempts,
                    "created_at": _iso(job.created_at),
                    "started_at": _iso(job.started_at),
                    "finished_at": _iso(job.finished_at),
                    "inference_seconds": job.inference_seconds,
                    "positive": job.positive,
                    "probability": job.study_probability,
                }
                for job, series_uid in rows
            ]
        }
    )
