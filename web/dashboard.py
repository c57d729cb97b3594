"""The radiologist's pages: the worklist, a study, its pictures and report, feedback,
and the admin's audit trail."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from flask_login import current_user, login_required
from sqlalchemy import func, select

from assistant.db import AuditEvent, Instance, ResultKind, ResultObject, Series, Study, utcnow
from web.actions import ActionError, add_feedback, retry_delivery
from web.auth import admin_required, record
from web.context import context, stored_file
from web.queries import (
    ChangeToken,
    change_token,
    new_positives,
    page_number,
    study_and_jobs,
    study_filter,
)
from web.render import WINDOWS, key_image_png, probability_svg
from web.sr_text import sr_as_text
from web.studies import STATUS_LABELS, STATUSES, VERDICTS, JobDetail, list_studies
from web.viewer import study_viewer_url, viewer_installed

blueprint = Blueprint("dashboard", __name__)
PER_PAGE = 25
#: The per-slice threshold drawn on the curve (the models' slice_threshold).
SLICE_THRESHOLD = 0.5


@blueprint.route("/")
@login_required
def worklist() -> Any:
    flt = study_filter(request.args)
    partial = bool(request.args.get("partial"))
    with context().sessions() as session:
        # Taken before the rows are read: a change in between shows at the first poll.
        token = None if partial else change_token(session, utcnow())
        page = list_studies(session, flt, page_number(request.args), PER_PAGE)
    # The worklist shows names and IDs (and refreshes itself): one row a minute per user.
    searched = request.query_string.decode("latin-1")[:300]  # what was searched for
    record(
        "study_list",
        detail=f"worklist; {searched or 'all'}; {len(page.studies)} of {page.total}",
        coalesce=True,
    )
    return render_template(
        "_worklist_rows.html" if partial else "worklist.html",
        page=page,
        changes_token=str(token) if token else "",
        flt=flt,
        statuses=STATUSES,
        status_labels=STATUS_LABELS,
        verdicts=VERDICTS,
        args={k: v for k, v in request.args.items() if k not in ("page", "partial")},
    )


@blueprint.route("/worklist/changes")
@login_required
def worklist_changes() -> Any:
    """Whether the worklist changed since `since` (a token from the page or from the
    last answer), and the studies that turned positive since, with their impression:
    `{"token", "changed", "new_positives": [{"study_uid", "impression", "url"}]}`.
    Without `since`, only a token. The page polls it every few seconds with
    `partial=1`, which (as for the rows' refresh) does not count as use of the session:
    an unattended screen is still logged out when it has been idle too long."""
    given = request.args.get("since", "")
    since = ChangeToken.parse(given) if given else None
    if given and since is None:
        abort(400)
    now = utcnow()
    with context().sessions() as session:
        token = change_token(session, now)
        changed = since is not None and token.digest != since.digest
        found = new_positives(session, since, now) if since is not None and changed else []
    for view in found:
        record(
            "study_list",
            target=view.study_instance_uid,
            detail="worklist: new positive",
            coalesce=True,
        )
    return {
        "token": str(token),
        "changed": changed,
        "new_positives": [
            {
                "study_uid": view.study_instance_uid,
                "impression": view.reading.impression if view.reading else view.finding,
                "url": url_for("dashboard.study", study_uid=view.study_instance_uid),
            }
            for view in found
        ],
    }


@blueprint.route("/studies/<study_uid>")
@login_required
def study(study_uid: str) -> Any:
    view, jobs = study_and_jobs(study_uid)
    record("study_view", target=study_uid)
    curves, reports = {}, {}
    for job in jobs:
        if job.slice_probabilities:
            curves[job.id] = probability_svg(
                job.slice_probabilities, SLICE_THRESHOLD, job.flagged_slice_indices
            )
        for result in job.results:
            if result.kind == "sr":
                path = stored_file(result.path)
                reports[job.id] = (result, sr_as_text(path) if path else "(file missing)")
    return render_template(
        "study.html",
        study=view,
        jobs=jobs,
        curves=curves,
        reports=reports,
        viewer_url=study_viewer_url(study_uid) if viewer_installed() else None,
    )


@blueprint.route("/studies/<study_uid>/jobs/<int:job_id>/lesions/<int:index>.png")
@login_required
def lesion_image(study_uid: str, job_id: int, index: int) -> Any:
    """A lesion's key slice with its outline, in the window asked for (?window=)."""
    job = _job(study_uid, job_id)
    if not 0 <= index < len(job.lesions):
        abort(404)
    lesion = job.lesions[index]
    return _slice_png(study_uid, job, lesion.key_slice + 1, lesion.outline)


@blueprint.route("/studies/<study_uid>/jobs/<int:job_id>/slices/<int:number>.png")
@login_required
def slice_image(study_uid: str, job_id: int, number: int) -> Any:
    """Slice `number` (1-based, along the analysed stack) in the window asked for
    (?window=brain|subdural|bone), with the outline of any lesion keyed on it."""
    job = _job(study_uid, job_id)
    if job.findings is None or not 1 <= number <= len(job.findings.slices):
        abort(404)
    keyed = [lesion.outline for lesion in job.lesions if lesion.key_slice + 1 == number]
    return _slice_png(study_uid, job, number, keyed[0] if keyed else ())


def _job(study_uid: str, job_id: int) -> JobDetail:
    _, jobs = study_and_jobs(study_uid)
    job = next((j for j in jobs if j.id == job_id), None)
    if job is None:
        abort(404)
    return job


def _slice_png(
    study_uid: str, job: JobDetail, number: int, outline: Sequence[Sequence[float]]
) -> Response:
    window = request.args.get("window", "brain")
    if window not in WINDOWS or job.findings is None:
        abort(404)
    record("image_view", target=study_uid, detail=f"slice images, job {job.id}", coalesce=True)
    shown = job.findings.slices[number - 1]
    with context().sessions() as session:
        path = session.scalar(
            select(Instance.path)
            .join(Series, Series.id == Instance.series_pk)
            .where(
                Instance.sop_instance_uid == shown.sop_instance_uid,
                Series.id == job.series_pk,
            )
        )
    file = stored_file(path) if path is not None else None
    if file is None:
        abort(404)
    png = key_image_png(file, outline, WINDOWS[window], frame=shown.frame_number)
    return Response(png, mimetype="image/png", headers={"Cache-Control": "private, max-age=3600"})


@blueprint.route("/studies/<study_uid>/results/<int:result_id>.dcm")
@login_required
def result_file(study_uid: str, result_id: int) -> Any:
    with context().sessions() as session:
        row = session.execute(
            select(ResultObject.path, ResultObject.kind, ResultObject.sop_instance_uid).where(
                ResultObject.id == result_id, ResultObject.study_instance_uid == study_uid
            )
        ).first()
    if row is None:
        abort(404)
    path = stored_file(row.path)
    if path is None:
        abort(404)
    record("result_download", target=study_uid, detail=f"{row.kind.value} {row.sop_instance_uid}")
    notice = row.kind is ResultKind.NOTICE  # the notification document, JSON
    return send_file(
        path,
        mimetype="application/json" if notice else "application/dicom",
        as_attachment=True,
        download_name=f"{row.kind.value}-{row.sop_instance_uid}{'.json' if notice else '.dcm'}",
    )


@blueprint.route("/studies/<study_uid>/jobs/<int:job_id>/feedback", methods=["POST"])
@login_required
def feedback(study_uid: str, job_id: int) -> Any:
    finding = request.form.get("finding", "study")
    try:
        lesion_index = None if finding == "study" else int(finding)
        slices = None
        if request.form.get("verdict") == "missed":
            slices = (
                int(request.form.get("first_slice", "")),
                int(request.form.get("last_slice", "")),
            )
        feedback_id = add_feedback(
            context().db,
            study_uid,
            job_id,
            lesion_index,
            request.form.get("verdict", ""),
            request.form.get("comment", ""),
            current_user.username,
            slices,
        )
    except (ActionError, ValueError) as exc:
        flash(f"Feedback not saved: {exc}", "error")
        return redirect(url_for("dashboard.study", study_uid=study_uid), 303)
    record(
        "feedback",
        target=study_uid,
        detail=f"feedback {feedback_id} on job {job_id} finding {finding}: {request.form.get('verdict')}",
    )
    flash("Feedback saved.", "info")
    return redirect(url_for("dashboard.study", study_uid=study_uid) + f"#job-{job_id}", 303)


@blueprint.route("/deliveries/<int:delivery_id>/retry", methods=["POST"])
@admin_required
def retry(delivery_id: int) -> Any:
    try:
        study_uid = retry_delivery(context().db, delivery_id)
    except ActionError as exc:
        flash(f"Not retried: {exc}", "error")
        return redirect(request.referrer or url_for("dashboard.worklist"), 303)
    record("delivery_retry", target=study_uid, detail=f"delivery {delivery_id}")
    flash("Delivery queued again: the outbox sends it within seconds.", "info")
    return redirect(url_for("dashboard.study", study_uid=study_uid), 303)


@blueprint.route("/admin/audit")
@admin_required
def audit_log() -> Any:
    page = page_number(request.args)
    with context().sessions() as session:
        total = session.scalar(select(func.count(AuditEvent.id))) or 0
        events = session.scalars(
            select(AuditEvent).order_by(AuditEvent.id.desc()).offset((page - 1) * 100).limit(100)
        ).all()
        studies = dict(
            session.execute(
                select(Study.study_instance_uid, Study.accession_number).where(
                    Study.study_instance_uid.in_({e.target for e in events})
                )
            ).all()
        )
    return render_template(
        "audit.html", events=events, studies=studies, page=page, pages=max(1, -(-total // 100))
    )


@blueprint.route("/admin/fetch", methods=["GET", "POST"])
@admin_required
def fetch_study() -> Any:
    """Have a configured PACS send a study here (C-FIND, then C-MOVE); it is then stored
    and analysed like a pushed study."""
    from assistant.intake.fetch import FetchError, fetch, source_names

    settings = context().settings
    if request.method == "POST":
        key = request.form.get("key", "accession")
        value = request.form.get("value", "").strip()[:64]
        source = request.form.get("source", "")
        if key not in ("accession", "patient_id", "study") or not value:
            flash("Give an accession number, a patient ID or a Study Instance UID.", "error")
            return redirect(url_for("dashboard.fetch_study"), 303)
        query = {
            "accession": {"accession_number": value},
            "patient_id": {"patient_id": value},
            "study": {"study_uid": value},
        }[key]
        try:
            fetched = fetch(settings, source, **query)
        except (FetchError, OSError) as exc:
            flash(f"Not fetched: {exc}", "error")
            return redirect(url_for("dashboard.fetch_study"), 303)
        for item in fetched:
            record("fetch", target=item.study.study_instance_uid, detail=f"from {source}")
            flash(
                f"{item.study.accession_number or item.study.study_instance_uid}: "
                f"{item.outcome.completed} instance(s) received from {source}, "
                f"{item.outcome.failed} failed.",
                "info" if item.outcome.ok else "error",
            )
        return redirect(url_for("dashboard.worklist"), 303)
    return render_template("fetch.html", sources=source_names(settings))
