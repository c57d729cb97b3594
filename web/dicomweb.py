"""DICOMweb under /dicomweb. STOW-RS: POST /studies[/{study}] with multipart/related;
type="application/dicom", authenticated by the site's bearer token (dicomweb.token) or
a dashboard user's HTTP Basic credentials; instances go through the same durable store
and series completion as C-STORE, and the answer is a PS3.18 Store Instances Response.
QIDO-RS (studies, series, instances) and WADO-RS (instances as stored, metadata) serve
what the node holds, received and ours, to the same credentials or a dashboard session."""

from __future__ import annotations

import hmac
import mmap
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request, stream_with_context
from flask_login import current_user
from pydicom import Dataset, dcmread
from pydicom.sequence import Sequence as DicomSequence
from werkzeug.exceptions import HTTPException

from assistant.intake.stow import PartOutcome, StowIntake
from web import holdings
from web.auth import count_failure, must_wait
from web.context import context, stored_file
from web.holdings import HeldInstance, HeldSeries, HeldStudy
from web.multipart import MultipartError, split_parts

blueprint = Blueprint("dicomweb", __name__)
_CHUNK = 1 << 20
_SPOOL_IN_MEMORY = 64 << 20


def _error(status: int, message: str, parameter: str = "", **headers: str) -> Response:
    """A request refused as a whole: a JSON body naming why (and the query parameter at
    fault), the same shape as the API's Error. PS3.18 leaves the body of an error to
    the origin server; a STOW-RS request whose parts were read is answered with the
    Store Instances Response instead (`_response`), failed parts named in it."""
    body = {"error": message}
    if parameter:
        body["parameter"] = parameter
    response = jsonify(body)
    response.status_code = status
    response.headers.update(headers)
    return response


class _QueryError(Exception):
    """A QIDO-RS query value that cannot be used: a 400 naming it."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter


@blueprint.errorhandler(_QueryError)
def _query_error(error: _QueryError) -> Response:
    return _error(400, str(error), parameter=error.parameter)


@blueprint.errorhandler(HTTPException)
def _http_error(error: HTTPException) -> Response:
    """What Flask or werkzeug raises in a view of ours, as the same JSON body."""
    return _error(error.code or 500, error.description or error.name)


def authorised() -> bool:
    """A matching bearer token, or a dashboard user's HTTP Basic credentials (never the
    browser's session cookie: machines send their credentials with every request)."""
    token = context().settings.dicomweb.token
    credentials = request.authorization
    if credentials is None:
        return False
    if credentials.type == "bearer":
        if must_wait("dicomweb token"):  # guessing from here: not even checked
            return False
        if bool(token) and hmac.compare_digest((credentials.token or "").encode(), token.encode()):
            return True
        count_failure("dicomweb token")
        return False
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
    if current_user.is_authenticated and not current_user.may_upload:
        _audit_stow([], study_uid, refused="role viewer may not upload")
        return _error(403, "uploading needs the uploader or admin role")
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
        _audit_stow([], study_uid, refused=f"HTTP {result.status_code}")
        return result
    _audit_stow(result, study_uid)
    study_url = (
        f"{request.url_root.rstrip('/')}/dicomweb/studies/{study_uid}" if study_uid else None
    )
    return _response(result, study_url)


def _audit_stow(outcomes: list[PartOutcome], study_uid: str | None, refused: str = "") -> None:
    """Every STOW-RS request: who, from where, how many instances, which studies."""
    stored = [o for o in outcomes if o.stored]
    studies = sorted({o.study_instance_uid for o in stored} | ({study_uid} if study_uid else set()))
    detail = refused or f"{len(stored)} stored, {len(outcomes) - len(stored)} failed"
    if len(studies) > 1:
        detail += f"; studies {', '.join(studies[:20])}"
    context().audit.record(
        "stow",
        username=_who(),
        target=studies[0] if len(studies) == 1 else "",
        remote_addr=request.remote_addr or "",
        detail=detail,
    )


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


# -- QIDO-RS and WADO-RS: what the node holds --------------------------------------------


def _may_read() -> bool:
    """Reading also accepts the dashboard's session (a viewer in the same browser)."""
    return authorised() or bool(current_user.is_authenticated)


def _who() -> str:
    if current_user.is_authenticated:
        return current_user.username
    return "dicomweb token"


def _query(keyword: str, tag: str) -> str:
    return (request.args.get(keyword) or request.args.get(tag) or "").strip()


def _count(name: str) -> int:
    """A QIDO-RS `offset` or `limit`: an unsigned integer, 0 when absent or empty."""
    raw = request.args.get(name) or "0"
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):
        raise _QueryError(name, f"{name} must be an unsigned integer, not {raw[:60]!r}")
    return int(raw)


def _page(items: list[Any]) -> list[Any]:
    """`offset` items skipped, then at most `limit` of them (0: all)."""
    offset, limit = _count("offset"), _count("limit")
    return items[offset : offset + (limit or len(items))]


def _dicom_json(datasets: list[Dataset]) -> Response:
    body = current_app.json.dumps([d.to_json_dict() for d in datasets])
    return Response(body, mimetype="application/dicom+json")


def _study_json(study: HeldStudy) -> Dataset:
    ds = Dataset()
    ds.StudyInstanceUID = study.study_uid
    ds.PatientID = study.patient_id
    ds.PatientName = study.patient_name
    ds.PatientBirthDate = study.birth_date
    ds.PatientSex = study.sex
    ds.StudyDate = study.study_date
    ds.StudyTime = study.study_time
    ds.AccessionNumber = study.accession_number
    ds.StudyID = study.study_id
    ds.StudyDescription = study.description
    ds.ReferringPhysicianName = study.referring_physician
    ds.ModalitiesInStudy = study.modalities
    ds.NumberOfStudyRelatedSeries = len(study.series)
    ds.NumberOfStudyRelatedInstances = study.instances
    ds.RetrieveURL = f"{_root()}/studies/{study.study_uid}"
    return ds


def _series_json(series: HeldSeries) -> Dataset:
    ds = Dataset()
    ds.StudyInstanceUID = series.study_uid
    ds.SeriesInstanceUID = series.series_uid
    ds.Modality = series.modality
    ds.SeriesNumber = series.number if series.number is not None else ""
    ds.SeriesDescription = series.description
    ds.NumberOfSeriesRelatedInstances = series.instances
    ds.RetrieveURL = f"{_root()}/studies/{series.study_uid}/series/{series.series_uid}"
    return ds


def _instance_json(instance: HeldInstance) -> Dataset:
    ds = Dataset()
    ds.StudyInstanceUID = instance.study_uid
    ds.SeriesInstanceUID = instance.series_uid
    ds.SOPClassUID = instance.sop_class_uid
    ds.SOPInstanceUID = instance.sop_uid
    ds.InstanceNumber = instance.instance_number if instance.instance_number is not None else ""
    ds.RetrieveURL = (
        f"{_root()}/studies/{instance.study_uid}/series/{instance.series_uid}"
        f"/instances/{instance.sop_uid}"
    )
    return ds


def _root() -> str:
    return request.url_root.rstrip("/") + "/dicomweb"


def _matching_studies() -> list[HeldStudy]:
    with context().sessions() as session:
        found = holdings.studies(session)
    filters = [
        ("StudyInstanceUID", "0020000D", lambda s: s.study_uid),
        ("PatientID", "00100020", lambda s: s.patient_id),
        ("PatientName", "00100010", lambda s: s.patient_name),
        ("AccessionNumber", "00080050", lambda s: s.accession_number),
        ("StudyDate", "00080020", lambda s: s.study_date),
        ("StudyDescription", "00081030", lambda s: s.description),
    ]
    for keyword, tag, value in filters:
        pattern = _query(keyword, tag)
        found = [s for s in found if holdings.matches(value(s), pattern)]
    modality = _query("ModalitiesInStudy", "00080061")
    if modality:
        found = [s for s in found if any(holdings.matches(m, modality) for m in s.modalities)]
    return found


@blueprint.route("/studies", methods=["GET"])
def search_studies() -> Response:
    if not _may_read():
        return _unauthorised()
    found = _page(_matching_studies())
    _audit_query("", len(found))
    return _dicom_json([_study_json(s) for s in found])


def _audit_query(study_uid: str, matches: int) -> None:
    """A QIDO-RS query (ATNA Query): who asked what, from where, how much came back."""
    context().audit.record(
        "dicomweb_query",
        username=_who(),
        target=study_uid,
        remote_addr=request.remote_addr or "",
        detail=f"{request.path}?{request.query_string.decode('latin-1')[:300]}; {matches} match(es)",
        coalesce=True,
    )


def _series_list(study_uid: str | None) -> list[HeldSeries]:
    with context().sessions() as session:
        by_study = holdings.series_of(session, study_uid)
    found = [s for group in by_study.values() for s in group]
    for keyword, tag, value in (
        ("SeriesInstanceUID", "0020000E", lambda s: s.series_uid),
        ("Modality", "00080060", lambda s: s.modality),
        ("SeriesNumber", "00200011", lambda s: str(s.number if s.number is not None else "")),
    ):
        pattern = _query(keyword, tag)
        found = [s for s in found if holdings.matches(value(s), pattern)]
    return found


@blueprint.route("/series", methods=["GET"])
@blueprint.route("/studies/<study_uid>/series", methods=["GET"])
def search_series(study_uid: str | None = None) -> Response:
    if not _may_read():
        return _unauthorised()
    found = _page(_series_list(study_uid))
    _audit_query(study_uid or "", len(found))
    return _dicom_json([_series_json(s) for s in found])


def _instances(
    study_uid: str, series_uid: str | None = None, sop_uid: str | None = None
) -> list[HeldInstance]:
    with context().sessions() as session:
        found = holdings.instances(session, study_uid, series_uid, sop_uid)
    for keyword, tag, value in (
        ("SOPInstanceUID", "00080018", lambda i: i.sop_uid),
        ("SOPClassUID", "00080016", lambda i: i.sop_class_uid),
    ):
        pattern = _query(keyword, tag)
        found = [i for i in found if holdings.matches(value(i), pattern)]
    return found


@blueprint.route("/studies/<study_uid>/instances", methods=["GET"])
@blueprint.route("/studies/<study_uid>/series/<series_uid>/instances", methods=["GET"])
def search_instances(study_uid: str, series_uid: str | None = None) -> Response:
    if not _may_read():
        return _unauthorised()
    found = _page(_instances(study_uid, series_uid))
    _audit_query(study_uid, len(found))
    return _dicom_json([_instance_json(i) for i in found])


def _paths(study_uid: str, series_uid: str | None, sop_uid: str | None) -> list[Path]:
    found = _instances(study_uid, series_uid, sop_uid)
    return [path for instance in found if (path := stored_file(instance.path)) is not None]


def _audited_paths(
    action: str, study_uid: str, series_uid: str | None, sop_uid: str | None
) -> list[Path] | Response:
    """The files asked for, with an audit row; or the 401/404 to answer instead."""
    if not _may_read():
        return _unauthorised()
    paths = _paths(study_uid, series_uid, sop_uid)
    if not paths:
        return _error(404, "no such study, series or instance here")
    context().audit.record(
        action,
        username=_who(),
        target=study_uid,
        remote_addr=request.remote_addr or "",
        detail=f"{len(paths)} instance(s)",
        coalesce=True,  # a viewer fetches many frames and instances a study
    )
    return paths


def _retrieve(study_uid: str, series_uid: str | None, sop_uid: str | None) -> Response:
    paths = _audited_paths("dicomweb_retrieve", study_uid, series_uid, sop_uid)
    if isinstance(paths, Response):
        return paths
    boundary = uuid.uuid4().hex

    def body() -> Iterator[bytes]:
        for path in paths:
            yield f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
            with path.open("rb") as handle:
                while chunk := handle.read(_CHUNK):
                    yield chunk
            yield b"\r\n"
        yield f"--{boundary}--\r\n".encode()

    return Response(
        stream_with_context(body()),
        content_type=f'multipart/related; type="application/dicom"; boundary={boundary}',
    )


@blueprint.route("/studies/<study_uid>", methods=["GET"])
def retrieve_study(study_uid: str) -> Response:
    return _retrieve(study_uid, None, None)


@blueprint.route("/studies/<study_uid>/series/<series_uid>", methods=["GET"])
def retrieve_series(study_uid: str, series_uid: str) -> Response:
    return _retrieve(study_uid, series_uid, None)


@blueprint.route("/studies/<study_uid>/series/<series_uid>/instances/<sop_uid>", methods=["GET"])
def retrieve_instance(study_uid: str, series_uid: str, sop_uid: str) -> Response:
    return _retrieve(study_uid, series_uid, sop_uid)


@blueprint.route("/studies/<study_uid>/metadata", methods=["GET"])
@blueprint.route("/studies/<study_uid>/series/<series_uid>/metadata", methods=["GET"])
@blueprint.route(
    "/studies/<study_uid>/series/<series_uid>/instances/<sop_uid>/metadata", methods=["GET"]
)
def retrieve_metadata(
    study_uid: str, series_uid: str | None = None, sop_uid: str | None = None
) -> Response:
    paths = _audited_paths("dicomweb_metadata", study_uid, series_uid, sop_uid)
    if isinstance(paths, Response):
        return paths
    return _dicom_json([dcmread(p, stop_before_pixels=True) for p in paths])


@blueprint.route(
    "/studies/<study_uid>/series/<series_uid>/instances/<sop_uid>/frames/<frame_list>",
    methods=["GET"],
)
def retrieve_frames(study_uid: str, series_uid: str, sop_uid: str, frame_list: str) -> Response:
    """Frames as uncompressed little-endian pixel data (what DICOMweb viewers such as
    OHIF ask for), decoded from whatever transfer syntax the instance was stored in."""
    if not _may_read():
        return _unauthorised()
    try:
        numbers = [int(n) for n in frame_list.split(",")]
    except ValueError:
        return _error(400, "frame numbers are integers from 1, separated by commas")
    paths = _audited_paths("dicomweb_frames", study_uid, series_uid, sop_uid)
    if isinstance(paths, Response):
        return paths
    dataset = dcmread(paths[0])
    if "PixelData" not in dataset:
        return _error(404, "this instance has no pixel data")
    count = int(dataset.get("NumberOfFrames", 1) or 1)
    if any(not 1 <= n <= count for n in numbers):
        return _error(404, f"this instance has frames 1 to {count}")
    pixels = dataset.pixel_array
    if count == 1:
        pixels = pixels[None, ...]
    boundary = uuid.uuid4().hex
    body = (
        b"".join(
            f"--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n".encode()
            + pixels[n - 1].astype(pixels.dtype.newbyteorder("<"), copy=False).tobytes()
            + b"\r\n"
            for n in numbers
        )
        + f"--{boundary}--\r\n".encode()
    )
    return Response(
        body,
        content_type=(
            'multipart/related; type="application/octet-stream"; '
            f"transfer-syntax=1.2.840.10008.1.2.1; boundary={boundary}"
        ),
    )
