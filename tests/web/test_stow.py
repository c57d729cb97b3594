"""STOW-RS into the node with dicomweb-client: stored durably, completed and analysed
like a C-STORE; bad requests are 4xx with a message and store nothing."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from dicomweb_client.web import DICOMwebClient
from pydicom import dcmread
from sqlalchemy import func, select

from assistant.access.users import add_user
from assistant.analysis.imaging.synthetic import write_demo_series
from assistant.cli import build_receiver, build_web, build_worker
from assistant.db import Instance, Job, JobState, Series
from assistant.db.migrate import upgrade
from assistant.intake.receiver import Receiver
from assistant.intake.stow import StowIntake
from assistant.settings import (
    CompletionSettings,
    DatabaseSettings,
    DicomwebSettings,
    NodeSettings,
    Settings,
    StorageSettings,
    WebSettings,
)
from dicom_node import Status
from tests.helpers import NODE_AE
from tests.peers.tools import wait_until
from tests.support.ct import dicom_files, shared_ct
from web.server import WebServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOKEN = "stow-token-for-tests-0123456789"
USER = ("scanner", "a password for basic")


@dataclass
class Node:
    receiver: Receiver
    web: WebServer

    @property
    def root(self) -> str:
        return self.web.url + "dicomweb"

    def instance_count(self) -> int:
        with self.receiver.db.sessions() as session:
            return session.scalar(select(func.count(Instance.id))) or 0

    def files_on_disk(self) -> int:
        return sum(1 for p in self.receiver.store.root.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    root = tmp_path_factory.mktemp("stow")
    settings = Settings(
        node=NodeSettings(processes=1, ae_title=NODE_AE, host="127.0.0.1", port=0),
        web=WebSettings(host="127.0.0.1", port=0),
        storage=StorageSettings(data_dir=root / "var"),
        database=DatabaseSettings(url=f"sqlite:///{root / 'var' / 'radassist.db'}"),
        # The GE head's spacing changes mid-series: it completes by the quiet period.
        completion=CompletionSettings(quiet_seconds=2, check_interval_seconds=0.1),
        dicomweb=DicomwebSettings(token=TOKEN, max_body_mb=64),
    )
    upgrade(settings.database_url)
    receiver = build_receiver(settings)
    worker = build_worker(settings, receiver.db)
    web = build_web(settings, receiver.db, receiver.ingest)
    add_user(receiver.db, USER[0], USER[1], "uploader")
    receiver.start()
    worker.start()
    web.start()
    yield Node(receiver, web)
    web.stop()
    worker.stop()
    receiver.stop()


def client(node: Node, token: str = TOKEN) -> DICOMwebClient:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    return DICOMwebClient(url=node.root, session=session)


def post(
    node: Node,
    body: bytes,
    content_type: str,
    auth: str | None = f"Bearer {TOKEN}",
    path: str = "/studies",
) -> tuple[int, str]:
    req = urllib.request.Request(node.root + path, data=body, method="POST")
    req.add_header("Content-Type", content_type)
    if auth:
        req.add_header("Authorization", auth)
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def multipart(*parts: tuple[str, bytes], boundary: str = "b0undary", close: bool = True) -> bytes:
    out = b""
    for content_type, payload in parts:
        out += f"--{boundary}\r\nContent-Type: {content_type}\r\n\r\n".encode() + payload + b"\r\n"
    return out + (f"--{boundary}--\r\n".encode() if close else b"")


RELATED = 'multipart/related; type="application/dicom"; boundary=b0undary'


def test_stow_a_real_series_and_see_it_analysed(node: Node) -> None:
    files = dicom_files(shared_ct("ge_head_tilted"))
    response = client(node).store_instances([dcmread(f) for f in files])
    assert len(response.ReferencedSOPSequence) == len(files)
    assert len(response.get("FailedSOPSequence", [])) == 0
    series_uid = str(dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)

    def job_state() -> JobState | None:
        with node.receiver.db.sessions() as session:
            state = session.scalar(
                select(Job.state).join(Series).where(Series.series_instance_uid == series_uid)
            )
        return state if state in (JobState.DONE, JobState.FAILED) else None

    assert wait_until(job_state, timeout=60) is JobState.DONE
    with node.receiver.db.sessions() as session:
        caller = session.scalar(
            select(Series.calling_ae_title).where(Series.series_instance_uid == series_uid)
        )
    assert caller == "DICOMWEB"
    # Sent again: stored once, answered success.
    before = node.instance_count()
    again = client(node).store_instances([dcmread(f) for f in files[:3]])
    assert len(again.ReferencedSOPSequence) == 3 and node.instance_count() == before


def test_basic_auth_of_a_dashboard_user(node: Node, tmp_path: Path) -> None:
    (path,) = write_demo_series(tmp_path, count=1, seed=501)
    basic = "Basic " + base64.b64encode(f"{USER[0]}:{USER[1]}".encode()).decode()
    status, _ = post(node, multipart(("application/dicom", path.read_bytes())), RELATED, auth=basic)
    assert status == 200


@pytest.mark.parametrize(
    "auth", [None, "Bearer wrong-token", "Basic " + base64.b64encode(b"scanner:nope").decode()]
)
def test_wrong_credentials_are_401(node: Node, tmp_path: Path, auth: str | None) -> None:
    (path,) = write_demo_series(tmp_path, count=1, seed=502)
    before = node.instance_count()
    status, text = post(
        node, multipart(("application/dicom", path.read_bytes())), RELATED, auth=auth
    )
    assert status == 401 and "authentication required" in text
    assert node.instance_count() == before


@pytest.mark.parametrize(
    ("content_type", "status", "message"),
    [
        ("application/dicom", 415, "multipart/related"),
        ('multipart/related; type="application/dicom+xml"; boundary=b0undary', 415, "only type"),
        ('multipart/related; type="application/dicom"', 400, "no boundary"),
    ],
)
def test_wrong_content_type(
    node: Node, tmp_path: Path, content_type: str, status: int, message: str
) -> None:
    (path,) = write_demo_series(tmp_path, count=1, seed=503)
    before = node.instance_count(), node.files_on_disk()
    got, text = post(node, multipart(("application/dicom", path.read_bytes())), content_type)
    assert got == status and message in text
    assert (node.instance_count(), node.files_on_disk()) == before


def test_broken_multipart_stores_nothing(node: Node, tmp_path: Path) -> None:
    paths = write_demo_series(tmp_path, count=2, seed=504)
    parts = [("application/dicom", p.read_bytes()) for p in paths]
    before = node.instance_count(), node.files_on_disk()
    for body in (multipart(*parts, close=False), b"no boundary at all", multipart(*parts)[:-400]):
        status, text = post(node, body, RELATED)
        assert status == 400 and "broken multipart body" in text
    assert (node.instance_count(), node.files_on_disk()) == before


def test_a_non_dicom_part(node: Node, tmp_path: Path) -> None:
    (path,) = write_demo_series(tmp_path, count=1, seed=505)
    before = node.instance_count()
    status, text = post(node, multipart(("text/plain", b"hello")), RELATED)
    assert status == 415 and "not application/dicom" in text
    status, text = post(node, multipart(("application/dicom", b"hello, not DICOM")), RELATED)
    assert status == 409 and '"00081197"' in text and "49152" in text  # FailureReason 0xC000
    mixed = multipart(("application/dicom", path.read_bytes()), ("application/dicom", b"junk"))
    status, text = post(node, mixed, RELATED)
    assert status == 202
    assert node.instance_count() == before + 1


def test_study_in_the_url_must_match(node: Node, tmp_path: Path) -> None:
    (path,) = write_demo_series(tmp_path, count=1, seed=506)
    before = node.instance_count()
    status, text = post(
        node, multipart(("application/dicom", path.read_bytes())), RELATED, path="/studies/1.2.3.4"
    )
    assert status == 409 and str(0xA900) in text
    # The failure names the instance that failed, as the client sent it.
    [failed] = json.loads(text)["00081198"]["Value"]
    assert failed["00081155"]["Value"] == [str(dcmread(path).SOPInstanceUID)]
    assert failed["00081150"]["Value"] == [str(dcmread(path).SOPClassUID)]
    assert node.instance_count() == before


def test_body_over_the_limit_is_413(node: Node) -> None:
    before = node.instance_count(), node.files_on_disk()
    body = multipart(("application/dicom", b"\0" * (65 << 20)))
    status, text = post(node, body, RELATED)
    assert status == 413 and "max_body_mb" in text
    assert (node.instance_count(), node.files_on_disk()) == before


def test_qido_and_wado_round_trip(node: Node) -> None:
    """After the GE head was stored and analysed (the first test): list and fetch the
    inputs and our results with dicomweb-client."""
    files = dicom_files(shared_ct("ge_head_tilted"))
    source = dcmread(files[0])
    study_uid = str(source.StudyInstanceUID)
    web = client(node)
    studies = web.search_for_studies(search_filters={"StudyInstanceUID": study_uid})
    assert len(studies) == 1
    assert studies[0]["00201208"]["Value"][0] >= len(files)  # instances, ours included
    pattern = str(source.PatientID)[:3] + "*"
    assert any(
        s["0020000D"]["Value"][0] == study_uid
        for s in web.search_for_studies(search_filters={"PatientID": pattern})
    )
    series = web.search_for_series(study_uid)
    modalities = sorted(s["00080060"]["Value"][0] for s in series)
    # The clean head is negative: a report (SR), and no key images (KO) to point at.
    assert modalities == ["CT", "SR"]
    ct_uid = str(source.SeriesInstanceUID)
    listed = web.search_for_instances(study_uid, ct_uid)
    assert len(listed) == len(files)
    fetched = web.retrieve_instance(study_uid, ct_uid, str(source.SOPInstanceUID))
    assert fetched.SOPInstanceUID == source.SOPInstanceUID
    assert fetched.PixelData == source.PixelData
    sr = next(s for s in series if s["00080060"]["Value"][0] == "SR")
    sr_uid = sr["0020000E"]["Value"][0]
    [report] = web.retrieve_series(study_uid, sr_uid)
    assert report.Modality == "SR" and report.StudyInstanceUID == study_uid
    metadata = web.retrieve_series_metadata(study_uid, ct_uid)
    assert len(metadata) == len(files) and "7FE00010" not in metadata[0]


def test_qido_and_wado_need_credentials(node: Node) -> None:
    for path in ("/studies", "/studies/1.2.3/series", "/studies/1.2.3/metadata"):
        req = urllib.request.Request(node.root + path)
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(req, timeout=10)
        assert caught.value.code == 401
    with pytest.raises(requests.HTTPError) as caught:
        client(node, "wrong").search_for_studies()
    assert caught.value.response.status_code == 401
    with pytest.raises(requests.HTTPError) as caught:
        client(node).retrieve_study("1.2.3.4.5")
    assert caught.value.response.status_code == 404


def test_frames_for_viewers(node: Node) -> None:
    source = dcmread(dicom_files(shared_ct("ge_head_tilted"))[0])
    frames = client(node).retrieve_instance_frames(
        str(source.StudyInstanceUID),
        str(source.SeriesInstanceUID),
        str(source.SOPInstanceUID),
        frame_numbers=[1],
    )
    assert frames[0] == source.pixel_array.tobytes()
    with pytest.raises(requests.HTTPError) as caught:
        client(node).retrieve_instance_frames(
            str(source.StudyInstanceUID),
            str(source.SeriesInstanceUID),
            str(source.SOPInstanceUID),
            frame_numbers=[2],
        )
    assert caught.value.response.status_code == 404


class _BrokenIngest:
    """An ingest with a bug in it: every store raises something no sender caused."""

    def store(self, instance: object) -> None:
        raise AttributeError("a bug of ours")

    def association_ended(self, summary: object) -> None:
        raise AssertionError("nothing was stored")


def test_a_bug_of_ours_is_a_processing_failure_not_the_senders_fault(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A STOW-RS part that decodes but meets an error of ours is answered 0x0110 with a
    traceback in the log, never 0xC000 "cannot be decoded" (which blames the sender)."""
    (path,) = write_demo_series(tmp_path, count=1, seed=507)
    intake = StowIntake(_BrokenIngest())  # type: ignore[arg-type]
    [outcome] = intake.store_parts([memoryview(path.read_bytes())], None, "127.0.0.1")
    assert outcome.status is Status.PROCESSING_FAILURE
    assert outcome.reason == "internal error: AttributeError"
    assert outcome.sop_instance_uid == str(dcmread(path).SOPInstanceUID)
    assert any(r.exc_info and r.exc_info[0] is AttributeError for r in caplog.records)


def test_another_patients_instance_in_a_stored_study_is_a_409(node: Node, tmp_path: Path) -> None:
    """Never merged silently: the part fails with 0xC010 and the reason."""
    from pydicom.uid import generate_uid

    first, second = write_demo_series(tmp_path, count=2, seed=508)
    status, _ = post(node, multipart(("application/dicom", first.read_bytes())), RELATED)
    assert status == 200
    other = dcmread(second)
    other.PatientID = "SOMEONE-ELSE"
    other.SOPInstanceUID = other.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    moved = tmp_path / "other.dcm"
    other.save_as(moved)
    before = node.instance_count()
    status, text = post(node, multipart(("application/dicom", moved.read_bytes())), RELATED)
    assert status == 409
    [failed] = json.loads(text)["00081198"]["Value"]
    assert failed["00081197"]["Value"] == [0xC010]
    assert node.instance_count() == before
