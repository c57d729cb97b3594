"""OHIF at /viewer, behind the dashboard's login, reading the node's own DICOMweb.

The viewer is installed into the data folder by `radassist viewer install` (`make
viewer`); without it the node runs as before and /viewer says how to enable it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, abort, render_template, send_from_directory
from flask_login import login_required
from sqlalchemy import func, select

from assistant.db import Job, JobState, ResultKind, ResultObject, Series, Study
from web.context import context
from web.studies import read_findings
from web.viewer_install import MOUNT, is_installed, viewer_dir

blueprint = Blueprint("viewer", __name__)

#: OHIF compiles WebAssembly decoders, starts workers from blob: URLs and sets inline
#: styles; its scripts still come from this origin only.
VIEWER_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self' 'unsafe-eval' 'wasm-unsafe-eval' blob:; worker-src 'self' blob:; "
    "connect-src 'self' blob: data:; font-src 'self' data:; object-src 'none'; "
    "frame-ancestors 'self'; base-uri 'self'; form-action 'self'"
)
#: Files whose names do not change between versions: always asked again.
_UNHASHED = ("index.html", "app-config.js", "radassist-init.js")


def viewer_installed() -> bool:
    return is_installed(context().settings.storage.data_dir)


def study_viewer_url(study_uid: str) -> str:
    """OHIF's longitudinal viewer opened on one study, showing our SR of its latest
    finding on that finding's key slice when an analysis found one.

    OHIF 3.13 hangs first the display set named by `initialSeriesInstanceUID`, and its
    SR viewport opens a report on the image its first measurement references, with the
    outline and values drawn. The key slice itself is not named: `initialSOPInstanceUID`
    would make OHIF hang the CT series (which holds that slice) instead of the report."""
    query = {"StudyInstanceUIDs": study_uid}
    report = report_to_open(study_uid)
    if report is not None:
        query["initialSeriesInstanceUID"] = report
    return f"{MOUNT}/viewer?{urlencode(query)}"


def report_to_open(study_uid: str) -> str | None:
    """The Series Instance UID of the SR of the newest analysis of this study (each
    series' latest job) that found a lesion; None when none did."""
    latest = (
        select(func.max(Job.id))
        .join(Series, Series.id == Job.series_pk)
        .join(Study, Study.id == Series.study_pk)
        .where(Study.study_instance_uid == study_uid)
        .group_by(Job.series_pk)
    )
    with context().sessions() as session:
        rows = session.execute(
            select(ResultObject.series_instance_uid, Job.findings_json)
            .join(Job, Job.id == ResultObject.job_pk)
            .where(
                Job.id.in_(latest),
                Job.state == JobState.DONE,
                Job.positive.is_(True),
                ResultObject.kind == ResultKind.SR,
            )
            .order_by(Job.id.desc())
        ).all()
    for series_uid, record in rows:
        findings = read_findings(record)
        if findings is not None and findings.lesions:
            return str(series_uid)
    return None


def _is_inside(path: str) -> bool:
    """Whether `path` (as routed: percent-escapes decoded) names something under the
    viewer's folder by its text alone: relative, no `.` or `..` part, no backslash or NUL.
    Decided before any file is looked at, so that paths leading elsewhere answer alike
    whether or not their target exists."""
    if not path:
        return True
    if path.startswith("/") or "\\" in path or "\x00" in path:
        return False
    return not any(part in (".", "..") for part in path.split("/"))


def installed_file(root: Path, path: str) -> str | None:
    """`path` when it names a file of the installed viewer (a symbolic link leading out
    of it does not count); None otherwise."""
    if not path or not _is_inside(path):
        return None
    top = root.resolve()
    try:
        target = (top / path).resolve()
        if not target.is_relative_to(top) or not target.is_file():
            return None
    except (OSError, RuntimeError):  # a name too long, a loop of links: no file of ours
        return None
    return target.relative_to(top).as_posix()


@blueprint.route(f"{MOUNT}/", defaults={"path": ""})
# Slashes are not merged: `/viewer//etc/passwd` is an absolute path, refused as such, not
# a redirect to `/viewer/etc/passwd` that would name the file.
@blueprint.route(f"{MOUNT}/<path:path>", merge_slashes=False)
@login_required
def viewer(path: str) -> Any:
    if not viewer_installed():
        return render_template("viewer_missing.html"), 404
    root = viewer_dir(context().settings.storage.data_dir)
    name = installed_file(root, path)
    if name is None:
        if not _is_inside(path) or "." in path.rsplit("/", 1)[-1]:
            abort(404)  # outside the viewer, or a missing file, not one of OHIF's routes
        name = "index.html"  # OHIF routes its own paths in the page
    response = send_from_directory(root, name)
    response.headers["Content-Security-Policy"] = VIEWER_CSP
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    response.headers["Cache-Control"] = (
        "no-cache" if name in _UNHASHED else "private, max-age=604800"
    )
    return response
