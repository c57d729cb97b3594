"""DICOMweb STOW-RS: POST /dicomweb/studies[/{study}] with multipart/related;
type="application/dicom". Authenticated by the site's bearer token (dicomweb.token) or
a dashboard user's HTTP Basic credentials. Instances go through the same durable store
and series completion as C-STORE; the response is a PS3.18 Store Instances Response."""

from __future__ import annotations

import hmac
import mmap
import tempfile
from typing import Any

from flask import Blueprint, Response, current_app, request
from flask_login import current_user
from pydicom import Dataset
from pydicom.sequence import Sequence as DicomSequence

from assistant.stow import PartOutcome, StowIntake
from web.context import context
from web.multipart import MultipartError, split_parts

blueprint = Blueprint("dicomweb", __name__)
_CHUNK = 1 << 20
_SPOOL_IN_MEMORY = 64 << 20


def _error(status: int, message: str, **headers: str) -> Response:
    response = current_app.json.response({"error": message})
    response.status_code = status
    response.headers.update(headers)
    return response


def authorised() -> bool:
    """A matching bearer token, or a dashboard user's HTTP Basic credentials (never the
    browser's session cookie: machines send their credentials with every request)."""
    token = context().settings.dicomweb.token
    credentials = request.authorization
    if credentials is None:
        return False
    if credentials.type == "bearer":
        return bool(token) and hmac.compare_digest(
            (credentials.token or "").encode(), token.encode()
        )
    return credentials.type == "basic" and bool(current_user.is_authenticated)


def _unauthorised() -> Response:
    schemes = 'Bearer realm="radassist", Basic realm="radassist"'
    return _error(
        401,
        "authentication required: a bearer token or Basic credentials",
        **{"WWW-Authenticate": schemes},
    )


def _boundary() -> str | Response:
    mimetype = request.mimetype
    params = request.mimetype_params
    if mimetype != "multipart/related":
        return _error(415, 'STOW-RS takes multipart/related; type="application/dicom"')
    if params.get("type", "").strip('"').lower() != "application/dicom":
        return _error(
            415, 'only type="application/dicom" parts are accepted (no metadata+bulkdata)'
        )
    boundary = params.get("boundary", "").strip('"')
    if not boundary:
        return _error(400, "the Content-Type has no boundary")
    return boundary


def _spool(limit: int) -> Any:
    """The request body in a temporary file (memory up to 64 MiB), or None if too big."""
    if request.content_length is not None and request.content_length > limit:
        return None
    spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY)  # noqa: SIM115 - closed by the caller
    total = 0
    stream = request.stream
    while chunk := stream.read(_CHUNK):
        total += len(chunk)
        if total > limit:
            spool.close()
            return None
        spool.write(chunk)
    spool.flush()
    return spool


def _response(outcomes: list[PartOutcome], study_url: str | None) -> Response:
    root = request.url_root.rstrip("/") + "/dicomweb"
    body = Dataset()
    if study_url:
        body.RetrieveURL = study_url
    stored, failed = DicomSequence(), DicomSequence()
    for outcome in outcomes:
        item = Dataset()
        item.ReferencedSOPClassUID = outcome.sop_class_uid or "1.2.840.10008.5.1.4.1.1.1"
        item.ReferencedSOPInstanceUID = outcome.sop_instance_uid or "2.25.0"
        if outcome.stored:
            item.RetrieveURL = (
                f"{root}/studies/{outcome.study_instance_uid}/series/"
                f"{outcome.series_instance_uid}/instances/{outcome.sop_instance_uid}"
            )
            stored.append(item)
        else:
            item.FailureReason = int(outcome.status)
            failed.append(item)
    body.ReferencedSOPSequence = stored
    body.FailedSOPSequence = failed
    status = 200 if not failed else (409 if not stored else 202)
    return Response(
        current_app.json.dumps(body.to_json_dict()),
        status=status,
        mimetype="application/dicom+json",
    )


@blueprint.route("/studies", methods=["POST"])
@blueprint.route("/studies/<study_uid>", methods=["POST"])
def store_instances(study_uid: str | None = None) -> Response:
    if not authorised():
        return _unauthorised()
    boundary = _boundary()
    if isinstance(boundary, Response):
        return boundary
    settings = context().settings
    limit = settings.dicomweb.max_body_mb << 20
    request.max_content_length = limit
    spool = _spool(limit)
    if spool is None:
        return _error(
            413,
            f"the body is larger than dicomweb.max_body_mb ({settings.dicomweb.max_body_mb} MiB)",
        )
    with spool:
        size = spool.tell()
        if size == 0:
            return _error(400, "the body is empty")
        spool.seek(0)
        if size <= _SPOOL_IN_MEMORY:
            result = _store(spool.read(), boundary, study_uid)
        else:  # on disk: map it rather than read it into memory
            with mmap.mmap(spool.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                result = _store(mapped, boundary, study_uid)
    if isinstance(result, Response):
        return result
    study_url = (
        f"{request.url_root.rstrip('/')}/dicomweb/studies/{study_uid}" if study_uid else None
    )
    return _response(result, study_url)


def _store(
    body: bytes | mmap.mmap, boundary: str, study_uid: str | None
) -> list[PartOutcome] | Response:
    """Parse every part first (a broken body stores nothing), then store them."""
    try:
        parts = split_parts(body, boundary)
    except MultipartError as exc:
        return _error(400, f"broken multipart body: {exc}")
    for number, part in enumerate(parts, start=1):
        if part.content_type not in ("application/dicom", ""):
            return _error(415, f"part {number} is {part.content_type}, not application/dicom")
    intake: StowIntake | None = current_app.extensions.get("radassist.stow")
    if intake is None:
        return _error(503, "this process does not receive instances")
    outcomes = intake.store_parts(
        [part.body for part in parts], study_uid, request.remote_addr or ""
    )
    for part in parts:
        part.body.release()
    return outcomes
