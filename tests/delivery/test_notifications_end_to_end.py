"""A positive study pushed by Orthanc reaches a webhook receiver, an HL7 MLLP listener
and a FHIR server once each, with its impression and measurements, no later than its
SR reaches the PACS; a negative study tells none of them; the study page shows every
delivery."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from sqlalchemy import select

from assistant.access.users import add_user
from assistant.cli import build_worker
from assistant.db import Delivery, DeliveryState, ResultKind, ResultObject
from assistant.intake.receiver import Receiver
from assistant.settings import DeliverySettings, Destination, Settings
from assistant.training.demo import write_demo_head
from tests.helpers import NODE_AE
from tests.peers.orthanc import Orthanc
from tests.peers.tools import wait_until
from tests.support.fhir_server import FhirServer, fhir_server
from tests.support.mllp_listener import MllpListener
from tests.support.site import VIEWER
from tests.support.webhook_receiver import WebhookReceiver
from web import create_app

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SECRET = "e2e-secret"
TOKEN = "e2e-token"


@pytest.fixture
def peers() -> Iterator[tuple[WebhookReceiver, MllpListener, FhirServer]]:
    hook = WebhookReceiver(secret=SECRET.encode())
    hook.start()
    listener = MllpListener().start()
    try:
        with fhir_server(token=TOKEN) as fhir:
            yield hook, listener, fhir
    finally:
        listener.stop()
        hook.stop()


@pytest.fixture
def pushed(
    start_node: Callable[..., Receiver],
    start_orthanc: Callable[..., Orthanc],
    peers: tuple[WebhookReceiver, MllpListener, FhirServer],
    tmp_path: Path,
) -> Iterator[tuple[Receiver, Orthanc, Callable[[Path], str]]]:
    """A node whose results go to an Orthanc (the PACS, which also pushes the studies)
    and to the three notification peers; returns a function that pushes a series folder
    through Orthanc and gives its Study Instance UID."""
    hook, listener, fhir = peers
    node = start_node(quiet_seconds=1.0)
    orthanc = start_orthanc({"radassist": (NODE_AE, "127.0.0.1", node.scp.port)})
    settings: Settings = dataclasses.replace(
        node.settings,
        destinations=(
            Destination("pacs", host="127.0.0.1", port=orthanc.dicom_port, ae_title="ORTHANC"),
            Destination("alerts", kind="webhook", url=hook.url, secret=SECRET),
            Destination(
                "ris",
                kind="hl7",
                host="127.0.0.1",
                port=listener.port,
                receiving_application="RIS",
                timeout_seconds=5.0,
            ),
            Destination("ehr", kind="fhir", url=fhir.url, token=TOKEN),
        ),
        delivery=DeliverySettings(backoff_seconds=1.0, max_backoff_seconds=2.0, poll_seconds=0.2),
    )
    worker = build_worker(settings, node.db)
    worker.start()

    def push(folder: Path) -> str:
        uploaded = [orthanc.upload(path) for path in sorted(folder.iterdir())]
        [study_id] = {item["ParentStudy"] for item in uploaded}
        answer = orthanc.post_json(
            "/modalities/radassist/store", {"Resources": [study_id], "Synchronous": True}
        )
        assert answer["FailedInstancesCount"] == 0
        first = dcmread(next(iter(sorted(folder.iterdir()))), stop_before_pixels=True)
        return str(first.StudyInstanceUID)

    try:
        yield node, orthanc, push
    finally:
        worker.stop()


def _deliveries(node: Receiver, study_uid: str) -> list[tuple[ResultKind, str, Any]]:
    with node.db.sessions() as session:
        rows = session.execute(
            select(ResultObject.kind, Delivery.destination, Delivery)
            .join(ResultObject, ResultObject.id == Delivery.result_pk)
            .where(ResultObject.study_instance_uid == study_uid)
        ).all()
        session.expunge_all()
    return [(row.kind, row.destination, row.Delivery) for row in rows]


def test_a_positive_study_is_told_to_every_peer_once_and_no_later_than_the_pacs(
    pushed: tuple[Receiver, Orthanc, Callable[[Path], str]],
    peers: tuple[WebhookReceiver, MllpListener, FhirServer],
    tmp_path: Path,
) -> None:
    node, _orthanc, push = pushed
    hook, listener, fhir = peers
    study_uid = push(Path(write_demo_head(tmp_path / "head")[0]).parent)

    def all_sent() -> list[tuple[ResultKind, str, Any]] | None:
        rows = _deliveries(node, study_uid)
        states = {d.state for _, _, d in rows}
        return rows if len(rows) == 6 and states == {DeliveryState.SENT} else None

    rows = wait_until(all_sent, timeout=240, interval=0.5)
    kinds = sorted((kind.value, destination) for kind, destination, _ in rows)
    assert kinds == [
        ("kos", "pacs"),
        ("notice", "alerts"),
        ("notice", "ehr"),
        ("notice", "ris"),
        ("seg", "pacs"),
        ("sr", "pacs"),
    ]
    sr_sent = next(d.sent_at for kind, _, d in rows if kind is ResultKind.SR)
    for kind, destination, delivery in rows:
        if kind is ResultKind.NOTICE:
            assert delivery.sent_at <= sr_sent, f"{destination} was told after the PACS"

    # the webhook: once, signed, with the impression and the lesion's measurements
    (received,) = hook.received
    assert hook.duplicates == 0 and not hook.refusals
    result = received.notice["result"]
    assert received.notice["study"]["study_instance_uid"] == study_uid
    assert result["positive"] and result["impression"].startswith("Small right frontal")
    (lesion,) = result["lesions"]
    assert lesion["place"]["side"] == "right" and lesion["volume_ml"] > 5
    assert lesion["abc2_volume_ml"] > 5

    # HL7: one ORU^R01 with the accession number and the impression
    (message,) = listener.received
    assert str(message.segment("MSH")[9]) == "ORU^R01^ORU_R01"
    assert str(message.segment("OBR")[25]) == "F"
    assert str(message.segment("PID")[3]) == "DEMO-0001"
    texts = [str(obx[5]) for obx in message.segments("OBX")]
    assert result["impression"] in texts

    # FHIR: one DiagnosticReport concluding with the impression, one Observation a lesion
    (report,) = fhir.state.of_kind("DiagnosticReport")
    assert report.resource["status"] == "final"
    assert report.resource["conclusion"] == result["impression"]
    assert len([o for o in fhir.state.of_kind("Observation")]) >= 1

    # the reader sees each notification's delivery beside the SR's, in the API and page
    add_user(node.db, *VIEWER, "viewer")
    client = create_app(node.settings, node.db).test_client()
    token = base64.b64encode(":".join(VIEWER).encode()).decode()
    answer = client.get(
        f"/api/v1/studies/{study_uid}/findings", headers={"Authorization": f"Basic {token}"}
    ).get_json()
    notices = [r for r in answer["analyses"][0]["results"] if r["kind"] == "notice"]
    assert sorted(d["destination"] for d in notices[0]["deliveries"]) == ["alerts", "ehr", "ris"]
    assert {d["state"] for d in notices[0]["deliveries"]} == {"sent"}


def test_a_negative_study_tells_nobody(
    pushed: tuple[Receiver, Orthanc, Callable[[Path], str]],
    peers: tuple[WebhookReceiver, MllpListener, FhirServer],
    tmp_path: Path,
) -> None:
    from assistant.analysis.imaging.synthetic import write_demo_series

    node, _orthanc, push = pushed
    hook, listener, fhir = peers
    study_uid = push(Path(write_demo_series(tmp_path / "negative", count=24)[0]).parent)

    def sr_sent() -> list[tuple[ResultKind, str, Any]] | None:
        rows = _deliveries(node, study_uid)
        done = [d for kind, _, d in rows if kind is ResultKind.SR]
        return rows if done and done[0].state is DeliveryState.SENT else None

    rows = wait_until(sr_sent, timeout=240, interval=0.5)
    assert {kind for kind, _, _ in rows} == {ResultKind.SR}
    assert hook.received == [] and listener.received == [] and fhir.state.bundles == []


def test_a_late_instance_sends_a_correction_that_replaces_the_first_notice(
    start_node: Callable[..., Receiver], tmp_path: Path
) -> None:
    """The series is analysed, told, then completed by a late instance: analysed again,
    and the receiver gets a second notice, "corrected", naming the first."""
    from tests.peers.dcmtk import storescu
    from tests.support.ct import dicom_files, shared_ct

    node = start_node(quiet_seconds=1.0)
    with WebhookReceiver(secret=SECRET.encode()) as hook:
        settings = dataclasses.replace(
            node.settings,
            destinations=(
                Destination("alerts", kind="webhook", url=hook.url, secret=SECRET, send_on="all"),
            ),
            delivery=DeliverySettings(
                backoff_seconds=1.0, max_backoff_seconds=2.0, poll_seconds=0.2
            ),
        )
        worker = build_worker(settings, node.db)
        worker.start()
        try:
            files = dicom_files(shared_ct("ge_head_tilted"))
            assert storescu(node.scp.port, files[:-1]).returncode == 0
            wait_until(lambda: len(hook.received) == 1, timeout=120, interval=0.3)
            assert storescu(node.scp.port, files[-1:]).returncode == 0
            wait_until(lambda: len(hook.received) == 2, timeout=120, interval=0.3)
        finally:
            worker.stop()
    first, second = (r.notice for r in hook.received)
    assert (first["status"], first["replaces"]) == ("final", None)
    assert (second["status"], second["replaces"]) == ("corrected", first["message_id"])
    assert second["message_id"] != first["message_id"]
    assert hook.duplicates == 0
