"""The outbox against a real dcmtk storescp: sent once, retried with back-off, given up
after the last attempt, retried on request; two senders never send a row twice."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from pydicom.uid import generate_uid
from sqlalchemy import select

from assistant.db import (
    Delivery,
    DeliveryState,
    Job,
    JobState,
    ResultKind,
    ResultObject,
    make_engine,
    make_session_factory,
    utcnow,
)
from assistant.db.migrate import upgrade
from assistant.demo_series import write_demo_series
from assistant.jobs.outbox import Outbox, backoff
from assistant.settings import DeliverySettings, Destination
from tests.conftest import free_port, require_tool, wait_until

pytestmark = pytest.mark.integration


class StoreSCP:
    """dcmtk's storescp writing every object it receives to a new file."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.port = folder, free_port()
        folder.mkdir(parents=True, exist_ok=True)
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(
            [
                require_tool("/usr/bin/storescp"),
                "-aet",
                "PACS",
                "-od",
                str(self.folder),
                "-uf",
                str(self.port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "TCP_NODELAY": "1"},
        )
        wait_until(self._listening, timeout=10)

    def _listening(self) -> bool:
        done = subprocess.run(
            [require_tool("/usr/bin/echoscu"), "-aec", "PACS", "127.0.0.1", str(self.port)],
            capture_output=True,
        )
        return done.returncode == 0

    def received(self) -> list[Path]:
        return sorted(p for p in self.folder.iterdir() if p.is_file())

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None


@pytest.fixture
def pacs(tmp_path: Path) -> Iterator[StoreSCP]:
    scp = StoreSCP(tmp_path / "pacs")
    yield scp
    scp.stop()


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def outbox_env(tmp_path: Path, pacs: StoreSCP):
    url = f"sqlite:///{tmp_path / 'var' / 'radassist.db'}"
    upgrade(url)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    data_dir = tmp_path / "var"
    clock = Clock()
    settings = DeliverySettings(max_attempts=3, backoff_seconds=10, max_backoff_seconds=60)
    destination = Destination("pacs", host="127.0.0.1", port=pacs.port, ae_title="PACS")

    def make_outbox() -> Outbox:
        return Outbox(sessions, [destination], settings, data_dir, "RADASSIST", clock=clock)

    outbox = make_outbox()
    queue_results(sessions, outbox, data_dir, clock.now)
    yield sessions, make_outbox, clock, outbox
    engine.dispose()


def queue_results(sessions, outbox: Outbox, data_dir: Path, now, count: int = 3) -> None:  # type: ignore[no-untyped-def]
    """`count` result files of one done job, each queued for the outbox's destinations."""
    files = data_dir / "results"
    write_demo_series(files, count=count)
    with sessions() as session, session.begin():
        job = Job(
            series_pk=_series(session),
            model_name="m",
            model_version="1",
            input_digest="d",
            instance_count=count,
            state=JobState.DONE,
            reason="",
            attempts=1,
            worker="",
            created_at=now,
            summary="",
            findings_json="",
        )
        session.add(job)
        session.flush()
        for path in sorted(files.iterdir()):
            result = ResultObject(
                job_pk=job.id,
                kind=ResultKind.SR,
                sop_class_uid="1.2",
                sop_instance_uid=generate_uid(),
                series_instance_uid="1.2.3",
                study_instance_uid="1.2.3",
                path=path.relative_to(data_dir).as_posix(),
                created_at=now,
            )
            session.add(result)
            session.flush()
            outbox.add(session, result)
            outbox.add(session, result)  # twice: still one row


def _series(session) -> int:  # type: ignore[no-untyped-def]
    from assistant.db import Patient, Series, SeriesState, Study

    now = utcnow()
    patient = Patient(
        patient_id="P",
        issuer_of_patient_id="",
        patient_name="",
        birth_date="",
        sex="",
        created_at=now,
    )
    study = Study(study_instance_uid="1.2.3", patient=patient, received_at=now)
    series = Series(
        series_instance_uid="1.2.3.4",
        study=study,
        state=SeriesState.COMPLETE,
        first_received_at=now,
        last_received_at=now,
    )
    session.add_all([patient, study, series])
    session.flush()
    return series.id


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
