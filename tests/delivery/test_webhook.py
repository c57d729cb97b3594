"""Webhook destinations against a real HTTP receiver that checks what a site is told to
check (docs/notifications.md): a notice goes out once, signed, valid against its schema;
a receiver that is down or busy is retried, one that refuses is not; a replay is refused;
the published schema is the code's."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from assistant.db import (
    Database,
    Delivery,
    DeliveryState,
    ResultKind,
    make_engine,
)
from assistant.db.migrate import upgrade
from assistant.delivery.notice import NOTICE_SCHEMA, NoticeSubject, build_notice, notice_bytes
from assistant.delivery.outbox import Outbox
from assistant.delivery.webhook import USER_AGENT, WebhookSender, signature
from assistant.findings import Findings, Lesion, ModelIdentity, Place, SliceProbability
from assistant.settings import DeliverySettings, Destination
from tests.support.results import Clock, record_result
from tests.support.webhook_receiver import SignatureError, WebhookReceiver, verify

ROOT = Path(__file__).resolve().parents[2]
SECRET = b"a-test-key-nobody-uses"
MESSAGE_ID = "2.25.318546298462518367162783524135415368291"


# -- a notice, and its row in the outbox ----------------------------------------------------


def _notice(message_id: str = MESSAGE_ID) -> dict[str, Any]:
    """The notice of a positive analysis with one placed lesion."""
    uids = [f"1.2.826.0.1.{n}" for n in range(8)]
    lesion = Lesion(
        first_slice=3,
        last_slice=5,
        key_slice=4,
        key_sop_instance_uid=uids[4],
        outline=[(10.0, 10.0), (20.0, 10.0), (15.5, 18.0)],
        area_mm2=80.0,
        longest_diameter_mm=12.5,
        volume_ml=1.2,
        mean_hu=62.0,
        probability=0.91,
        label=1,
        place=Place("right", "supratentorial", "parietal", "intra-axial"),
        abc2_volume_ml=1.4,
        severity="small",
    )
    findings = Findings(
        series_instance_uid="1.2.826.0.1.99",
        study_probability=0.93,
        positive=True,
        threshold=0.5,
        slices=[SliceProbability(u, 0.9 if 3 <= n <= 5 else 0.1) for n, u in enumerate(uids)],
        flagged_instance_uids=uids[3:6],
        model=ModelIdentity("radassist-hyperdense", "0.1.0", "ab" * 32),
        lesions=[lesion],
        midline_shift_mm=-3.5,
        anatomy_read=True,
    )
    subject = NoticeSubject(
        patient_id="P1",
        patient_name="Doe^Jane",
        patient_birth_date="19700101",
        patient_sex="F",
        study_instance_uid="1.2.826.0.1.98",
        accession_number="A1",
        study_date="20260101",
        study_description="CT HEAD",
        series_instance_uid="1.2.826.0.1.99",
        series_number=2,
        series_description="AXIAL 5mm",
        modality="CT",
        body_part="HEAD",
        calling_ae="PACS",
    )
    return build_notice(
        findings,
        subject,
        message_id=message_id,
        created_at=datetime(2026, 1, 1, 12, 0, 0),
        replaces=None,
        use_statement="Not for clinical use.",
        clinical_use=False,
        study_page="http://node.example.org/studies/1",
        viewer=None,
        sr_sop_instance_uid="1.2.826.0.1.100",
        sr_series_instance_uid="1.2.826.0.1.101",
    )


def _queue_notice(sessions: sessionmaker[Session], data_dir: Path, now: datetime) -> Path:
    """The notice written under results/, its ResultObject and one pending Delivery to
    "alerts" (made here, not by Outbox.add, whose routing of notices is not under test)."""
    path = data_dir / "results" / "notice.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(notice_bytes(_notice()))
    with sessions() as session, session.begin():
        relative = path.relative_to(data_dir).as_posix()
        result = record_result(session, ResultKind.NOTICE, MESSAGE_ID, relative, now)
        session.add(
            Delivery(
                result_pk=result.id,
                destination="alerts",
                state=DeliveryState.PENDING,
                attempts=0,
                next_attempt_at=now,
                last_error="",
            )
        )
    return path


@dataclass
class Env:
    sessions: sessionmaker[Session]
    outbox: Outbox
    clock: Clock
    path: Path

    def delivery(self) -> Delivery:
        with self.sessions() as session:
            return session.scalars(select(Delivery)).one()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(SECRET) as running:
        yield running


def _destination(url: str, **changes: Any) -> Destination:
    values: dict[str, Any] = {"secret": SECRET.decode(), "timeout_seconds": 5.0}
    values.update(changes)
    return Destination("alerts", kind="webhook", url=url, **values)


@pytest.fixture
def env(tmp_path: Path, receiver: WebhookReceiver) -> Iterator[Env]:
    url = f"sqlite:///{tmp_path / 'var' / 'radassist.db'}"
    upgrade(url)
    db = Database(make_engine(url))
    data_dir = tmp_path / "var"
    clock = Clock()
    path = _queue_notice(db.sessions, data_dir, clock.now)
    settings = DeliverySettings(max_attempts=3, backoff_seconds=10, max_backoff_seconds=60)
    outbox = Outbox(
        db,
        [_destination(receiver.url)],
        settings,
        data_dir,
        {"webhook": WebhookSender()},
        clock=clock,
    )
    yield Env(db.sessions, outbox, clock, path)
    db.dispose()


# -- through the outbox ---------------------------------------------------------------------


def test_a_notice_is_received_once_signed_and_valid(env: Env, receiver: WebhookReceiver) -> None:
    assert env.outbox.deliver_due() == 1
    assert env.outbox.deliver_due() == 0
    assert receiver.refusals == []  # signature, freshness and schema all held
    assert receiver.attempts == 1
    [got] = receiver.received
    assert got.message_id == MESSAGE_ID
    assert got.headers["Idempotency-Key"] == MESSAGE_ID
    assert got.headers["User-Agent"] == USER_AGENT
    assert got.body == env.path.read_bytes()  # the stored bytes, not a re-serialisation
    assert got.notice["result"]["lesions"][0]["place"]["region"] == "parietal"
    delivery = env.delivery()
    assert (delivery.state, delivery.attempts, delivery.peer_status) == (DeliveryState.SENT, 1, 200)


def test_a_receiver_that_is_down_is_retried_until_it_is_up(
    env: Env, receiver: WebhookReceiver
) -> None:
    receiver.stop()
    assert env.outbox.deliver_due() == 0
    delivery = env.delivery()
    assert (delivery.state, delivery.attempts) == (DeliveryState.PENDING, 1)
    assert "cannot connect to http://127.0.0.1:" in delivery.last_error
    assert "refused" in delivery.last_error
    assert receiver.path not in delivery.last_error  # a URL's path may hold a token
    receiver.start()
    assert env.outbox.deliver_due() == 0  # not due before its back-off
    env.clock.now += timedelta(seconds=10)
    assert env.outbox.deliver_due() == 1
    assert len(receiver.received) == 1 and receiver.attempts == 1
    assert env.delivery().state == DeliveryState.SENT


def test_a_400_fails_at_once_with_the_code_and_the_receivers_words(
    env: Env, receiver: WebhookReceiver
) -> None:
    receiver.answer(400, body='{"error": "unknown accession number A1"}')
    assert env.outbox.deliver_due() == 0
    delivery = env.delivery()
    assert (delivery.state, delivery.attempts) == (DeliveryState.FAILED, 1)
    assert delivery.peer_status == 400
    assert "HTTP 400" in delivery.last_error
    assert "unknown accession number A1" in delivery.last_error
    env.clock.now += timedelta(hours=1)
    assert env.outbox.deliver_due() == 0
    assert receiver.attempts == 1  # never asked again


@pytest.mark.parametrize("status", [408, 429, 500, 503])
def test_a_busy_receiver_is_retried(env: Env, receiver: WebhookReceiver, status: int) -> None:
    receiver.answer(status, body="down for maintenance")
    assert env.outbox.deliver_due() == 0
    delivery = env.delivery()
    assert (delivery.state, delivery.attempts, delivery.peer_status) == (
        DeliveryState.PENDING,
        1,
        status,
    )
    assert f"HTTP {status}" in delivery.last_error and "maintenance" in delivery.last_error
    env.clock.now += timedelta(seconds=10)
    assert env.outbox.deliver_due() == 1
    assert len(receiver.received) == 1


def test_a_receiver_with_another_secret_refuses_and_the_study_page_says_so(
    env: Env, receiver: WebhookReceiver
) -> None:
    receiver.secret = b"the-receivers-idea-of-the-key"
    assert env.outbox.deliver_due() == 0
    delivery = env.delivery()
    assert (delivery.state, delivery.attempts, delivery.peer_status) == (
        DeliveryState.FAILED,
        1,
        401,
    )
    assert "refused with HTTP 401" in delivery.last_error
    assert "signature does not match" in delivery.last_error
    assert SECRET.decode() not in delivery.last_error
    assert receiver.received == []


# -- the signature and replays ---------------------------------------------------------------


def _signed(body: bytes, at: float) -> tuple[str, str]:
    timestamp = int(at)
    return str(timestamp), signature(SECRET, timestamp, body)


def test_the_check_refuses_a_replay_a_forgery_and_a_wrong_key() -> None:
    body = notice_bytes(_notice())
    now = time.time()
    verify(SECRET, *_signed(body, now - 60), body, now=now)  # a minute late: fine
    with pytest.raises(SignatureError, match="old"):
        verify(SECRET, *_signed(body, now - 301), body, now=now)
    with pytest.raises(SignatureError, match="old"):
        verify(SECRET, *_signed(body, now + 301), body, now=now)  # from the future
    timestamp, good = _signed(body, now)
    with pytest.raises(SignatureError, match="does not match"):
        verify(SECRET, timestamp, good, body.replace(b"Doe^Jane", b"Roe^Jane"), now=now)
    with pytest.raises(SignatureError, match="does not match"):
        verify(SECRET, str(int(now) - 1), good, body, now=now)  # moved timestamp
    with pytest.raises(SignatureError, match="does not match"):
        verify(b"another key", timestamp, good, body, now=now)
    with pytest.raises(SignatureError, match="no v1"):
        verify(SECRET, timestamp, good.removeprefix("v1="), body, now=now)
    verify(SECRET, timestamp, f"v1={'0' * 64}, {good}", body, now=now)  # a key being changed


def test_a_captured_request_replayed_later_is_refused(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    path = tmp_path / "notice.json"
    path.write_bytes(notice_bytes(_notice()))
    [result] = WebhookSender()([path], _destination(receiver.url))
    assert result.outcome == "sent"
    [captured] = receiver.received
    receiver.clock = lambda: time.time() + 600  # ten minutes later, the same request
    with requests.post(receiver.url, data=captured.body, headers=captured.headers) as answer:
        assert answer.status_code == 401
    [(status, why)] = receiver.refusals
    assert status == 401 and why.endswith("s old (a replay?)")


def test_a_node_whose_clock_is_wrong_is_refused_not_retried(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    path = tmp_path / "notice.json"
    path.write_bytes(notice_bytes(_notice()))
    sender = WebhookSender(clock=lambda: time.time() - 3600)
    [result] = sender([path], _destination(receiver.url))
    assert (result.outcome, result.status) == ("rejected", 401)
    assert "old" in result.detail


def _docs_verify() -> Callable[[bytes, str, str, bytes], bool]:
    """The `verify` of the Python snippet in docs/notifications.md, run as it is."""
    text = (ROOT / "docs" / "notifications.md").read_text()
    [snippet] = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    namespace: dict[str, Any] = {}
    exec(compile(snippet, "docs/notifications.md", "exec"), namespace)
    return namespace["verify"]


def test_the_documented_check_accepts_what_the_node_sends_and_refuses_a_replay() -> None:
    verify_as_documented = _docs_verify()
    body = notice_bytes(_notice())
    assert verify_as_documented(SECRET, *_signed(body, time.time()), body)
    assert not verify_as_documented(SECRET, *_signed(body, time.time() - 600), body)
    assert not verify_as_documented(SECRET, *_signed(body, time.time()), body + b" ")
    assert not verify_as_documented(b"another key", *_signed(body, time.time()), body)


# -- the sender alone ------------------------------------------------------------------------


@pytest.mark.parametrize("content", [b"{}", b"not json", b'{"schema": "something/else"}'])
def test_a_file_that_is_not_a_notice_is_rejected_unsent(
    tmp_path: Path, receiver: WebhookReceiver, content: bytes
) -> None:
    path = tmp_path / "other.json"
    path.write_bytes(content)
    [result] = WebhookSender()([path], _destination(receiver.url))
    assert (result.outcome, result.status) == ("rejected", None)
    assert result.detail.startswith("not sent:")
    assert receiver.attempts == 0


def test_an_unreadable_secret_file_sends_nothing_and_is_retried(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    path = tmp_path / "notice.json"
    path.write_bytes(notice_bytes(_notice()))
    destination = _destination(receiver.url, secret="", secret_file=str(tmp_path / "missing"))
    [result] = WebhookSender()([path], destination)
    assert result.outcome == "failed" and "secret_file" in result.detail
    assert receiver.attempts == 0


def test_a_second_send_of_the_same_notice_is_kept_once(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    """What a sender that died after the receiver answered leads to: the same
    Idempotency-Key again, a success, kept once."""
    path = tmp_path / "notice.json"
    path.write_bytes(notice_bytes(_notice()))
    sender = WebhookSender()
    results = sender([path], _destination(receiver.url)) + sender(
        [path], _destination(receiver.url)
    )
    assert [r.outcome for r in results] == ["sent", "sent"]
    assert len(receiver.received) == 1 and receiver.duplicates == 1


def test_what_is_shown_never_holds_the_urls_path_or_query(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    """Slack- and Teams-style webhook URLs carry their token in the path or query."""
    path = tmp_path / "notice.json"
    path.write_bytes(notice_bytes(_notice()))
    url = receiver.url + "?token=T0KEN"
    receiver.answer(404, body=f"nothing at {receiver.path}?token=T0KEN")
    [result] = WebhookSender()([path], _destination(url))
    assert result.outcome == "rejected" and "HTTP 404" in result.detail
    assert receiver.path not in result.detail and "T0KEN" not in result.detail


def test_no_answer_in_time_is_retried(tmp_path: Path, receiver: WebhookReceiver) -> None:
    path = tmp_path / "notice.json"
    path.write_bytes(notice_bytes(_notice()))
    receiver.answer(200, delay=2.0)
    [result] = WebhookSender()([path], _destination(receiver.url, timeout_seconds=0.3))
    assert (result.outcome, result.status) == ("failed", None)
    assert result.detail.startswith("no answer from http://127.0.0.1:")
    assert result.detail.endswith("within 0.3 s")


def test_a_same_host_307_or_308_is_followed_with_the_body_and_signature(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    path = tmp_path / "notice.json"
    path.write_bytes(notice_bytes(_notice()))
    receiver.answer(308, headers={"Location": receiver.path})
    [result] = WebhookSender()([path], _destination(receiver.url + "-old"))
    assert (result.outcome, result.status) == ("sent", 200)
    assert receiver.attempts == 2 and receiver.refusals == []
    assert len(receiver.received) == 1


@pytest.mark.parametrize(
    ("status", "location", "says"),
    [
        (307, "http://localhost:{port}/hooks/radassist", "another host"),  # another name
        (302, "/hooks/radassist", "would not keep the POST"),
        (301, "https://127.0.0.1:{port}/hooks/radassist", "would not keep the POST"),
    ],
)
def test_other_redirects_are_not_followed(
    tmp_path: Path, receiver: WebhookReceiver, status: int, location: str, says: str
) -> None:
    path = tmp_path / "notice.json"
    path.write_bytes(notice_bytes(_notice()))
    receiver.answer(status, headers={"Location": location.format(port=receiver.port)})
    [result] = WebhookSender()([path], _destination(receiver.url))
    assert (result.outcome, result.status) == ("rejected", status)
    assert says in result.detail
    assert receiver.attempts == 1


# -- the published schema --------------------------------------------------------------------


def test_the_published_schema_is_the_one_the_code_writes_to() -> None:
    """docs/notification.schema.json is NOTICE_SCHEMA; after changing the schema, write it
    again with: python -c "import json; from assistant.delivery.notice import NOTICE_SCHEMA;
    print(json.dumps(NOTICE_SCHEMA, indent=2))" > docs/notification.schema.json"""
    published = (ROOT / "docs" / "notification.schema.json").read_text()
    assert published == json.dumps(NOTICE_SCHEMA, indent=2) + "\n"
