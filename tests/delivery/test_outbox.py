"""The outbox against a real dcmtk storescp: sent once, retried with back-off, given up
after the last attempt, retried on request; two senders never send a row twice."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from assistant.db import (
    Database,
    Delivery,
    DeliveryState,
    make_engine,
)
from assistant.db.migrate import upgrade
from assistant.delivery.outbox import Outbox, backoff
from assistant.delivery.senders import Sender, make_senders
from assistant.settings import DeliverySettings, Destination
from dicom_node import SendResult
from tests.peers.dcmtk import StoreSCP
from tests.support.results import Clock, queue_results

pytestmark = pytest.mark.integration


@pytest.fixture
def pacs(tmp_path: Path) -> Iterator[StoreSCP]:
    scp = StoreSCP(tmp_path / "pacs")
    yield scp
    scp.stop()


@pytest.fixture
def outbox_env(tmp_path: Path, pacs: StoreSCP):
    url = f"sqlite:///{tmp_path / 'var' / 'radassist.db'}"
    upgrade(url)
    db = Database(make_engine(url))
    sessions = db.sessions
    data_dir = tmp_path / "var"
    clock = Clock()
    settings = DeliverySettings(max_attempts=3, backoff_seconds=10, max_backoff_seconds=60)
    destination = Destination("pacs", host="127.0.0.1", port=pacs.port, ae_title="PACS")

    def make_outbox(senders: dict[str, Sender] | None = None) -> Outbox:
        senders = senders if senders is not None else make_senders("RADASSIST")
        return Outbox(db, [destination], settings, data_dir, senders, clock=clock)

    outbox = make_outbox()
    queue_results(sessions, outbox, data_dir, clock.now)
    yield sessions, make_outbox, clock, outbox
    db.dispose()


def _states(sessions) -> list[tuple[DeliveryState, int]]:  # type: ignore[no-untyped-def]
    with sessions() as session:
        return [
            (d.state, d.attempts) for d in session.scalars(select(Delivery).order_by(Delivery.id))
        ]


def test_results_are_sent_once(outbox_env, pacs: StoreSCP) -> None:
    sessions, _make, _clock, outbox = outbox_env
    pacs.start()
    assert outbox.deliver_due() == 3
    assert outbox.deliver_due() == 0
    assert _states(sessions) == [(DeliveryState.SENT, 1)] * 3
    assert len(pacs.received()) == 3


def test_a_down_peer_is_retried_with_backoff_then_given_up(outbox_env, pacs: StoreSCP) -> None:
    sessions, _make, clock, outbox = outbox_env
    assert outbox.deliver_due() == 0
    assert _states(sessions) == [(DeliveryState.PENDING, 1)] * 3
    assert outbox.deliver_due() == 0  # not due yet: nothing tried
    assert _states(sessions) == [(DeliveryState.PENDING, 1)] * 3
    clock.now += timedelta(seconds=10)
    outbox.deliver_due()
    assert _states(sessions) == [(DeliveryState.PENDING, 2)] * 3
    clock.now += timedelta(seconds=20)
    outbox.deliver_due()
    assert _states(sessions) == [(DeliveryState.FAILED, 3)] * 3
    with sessions() as session:
        ids = list(session.scalars(select(Delivery.id)))
        assert all("association" in e for e in session.scalars(select(Delivery.last_error)))
    pacs.start()
    assert all(outbox.retry(i) for i in ids)
    assert outbox.deliver_due() == 3
    assert len(pacs.received()) == 3


def test_backoff_doubles_up_to_the_maximum() -> None:
    settings = DeliverySettings(backoff_seconds=5, max_backoff_seconds=30)
    assert [backoff(n, settings).total_seconds() for n in (1, 2, 3, 4, 5)] == [5, 10, 20, 30, 30]


def test_two_senders_never_send_a_row_twice(outbox_env, pacs: StoreSCP) -> None:
    _sessions, make_outbox, _clock, first = outbox_env
    pacs.start()
    second = make_outbox()
    counts: list[int] = []
    threads = [
        threading.Thread(target=lambda o=o: counts.append(o.deliver_due())) for o in (first, second)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(counts) == 3
    assert len(pacs.received()) == 3


def _raising(error: Exception) -> Sender:
    def send(paths: Sequence[Path], destination: Destination) -> list[SendResult]:
        raise error

    return send


def test_a_network_error_is_retried_but_a_fault_of_ours_is_not(outbox_env, caplog) -> None:
    """A sender that raises OSError met the network: back-off and try again. Any other
    exception is a bug that would fail the same way ten times: failed at once, logged
    with its traceback, and left for an admin to retry once fixed."""
    sessions, make_outbox, clock, _outbox = outbox_env
    make_outbox({"dimse": _raising(ConnectionResetError("reset by peer"))}).deliver_due()
    assert _states(sessions) == [(DeliveryState.PENDING, 1)] * 3
    clock.now += timedelta(seconds=10)
    make_outbox({"dimse": _raising(KeyError("tls_ca"))}).deliver_due()
    assert _states(sessions) == [(DeliveryState.FAILED, 2)] * 3
    with sessions() as session:
        errors = list(session.scalars(select(Delivery.last_error)))
    assert all(e.startswith("internal error: KeyError") for e in errors)
    assert any(r.exc_info and r.exc_info[0] is KeyError for r in caplog.records)


def test_a_destination_kind_without_a_sender_is_refused_at_start(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'radassist.db'}"
    upgrade(url)
    db = Database(make_engine(url))
    web = Destination("web", kind="dicomweb", url="http://127.0.0.1:1/dicom-web")
    with pytest.raises(ValueError, match="no sender for destination kind"):
        Outbox(db, [web], DeliverySettings(), tmp_path, {"dimse": _raising(OSError())})
    db.dispose()
