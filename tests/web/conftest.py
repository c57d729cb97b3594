"""A real site for the dashboard's tests: a migrated database, the DICOM node and a worker
with the bundled model, a synthetic head CT with a lesion pushed in by dcmtk's storescu
and analysed, and a destination PACS (dcmtk's storescp) that is down at first."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from assistant.db import Delivery, DeliveryState, Job, JobState, make_session_factory
from assistant.db.migrate import upgrade
from assistant.demo_series import write_demo_head
from assistant.jobs.worker import Worker
from assistant.receiver import Receiver
from assistant.settings import (
    CompletionSettings,
    DatabaseSettings,
    DeliverySettings,
    Destination,
    NodeSettings,
    Settings,
    StorageSettings,
    WebSettings,
)
from assistant.users import add_user
from tests.conftest import NODE_AE, require_tool, storescu, wait_until
from tests.helpers import login
from tests.jobs.test_outbox import StoreSCP
from web import create_app

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    executable = require_tool("/usr/bin/chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        yield instance
        instance.close()


ADMIN = ("alice", "correct horse battery")
VIEWER = ("victor", "staple fifteen words")


@dataclass
class Site:
    settings: Settings
    receiver: Receiver
    app: Flask
    pacs: StoreSCP
    study_uid: str
    job_id: int
    delivery_ids: list[int]
    instances: int  # slices of the demo head that was sent

    def deliveries(self) -> list[Delivery]:
        with self.receiver.sessions() as session:
            return list(session.scalars(select(Delivery).order_by(Delivery.id)))


def site_settings(root: Path, destinations: tuple[Destination, ...] = ()) -> Settings:
    return Settings(
        node=NodeSettings(ae_title=NODE_AE, host="127.0.0.1", port=0),
        web=WebSettings(host="127.0.0.1", port=0),
        storage=StorageSettings(data_dir=root / "var"),
        database=DatabaseSettings(url=f"sqlite:///{root / 'var' / 'radassist.db'}"),
        completion=CompletionSettings(quiet_seconds=60, check_interval_seconds=0.1),
        destinations=destinations,
        delivery=DeliverySettings(max_attempts=1, backoff_seconds=0.2, poll_seconds=0.2),
    )


@contextmanager
def running_node(settings: Settings) -> Iterator[Receiver]:
    """Receiver and worker on a migrated database, stopped on the way out."""
    upgrade(settings.database_url)
    receiver = Receiver(settings)
    worker = Worker(settings, receiver.engine, receiver.write_lock)
    receiver.start()
    worker.start()
    try:
        yield receiver
    finally:
        worker.stop()
        receiver.stop()


def add_test_users(receiver: Receiver) -> None:
    sessions = make_session_factory(receiver.engine)
    add_user(sessions, ADMIN[0], ADMIN[1], "admin")
    add_user(sessions, VIEWER[0], VIEWER[1], "viewer")


@pytest.fixture(scope="package")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("site")
    pacs = StoreSCP(root / "pacs")  # not started yet: the PACS is down
    settings = site_settings(
        root,
        (
            Destination(
                name="pacs", kind="dimse", host="127.0.0.1", port=pacs.port, ae_title="PACS"
            ),
        ),
    )
    try:
        with running_node(settings) as receiver:
            files = write_demo_head(root / "series")
            storescu(receiver.scp.port, files)
            sessions = make_session_factory(receiver.engine)

            def finished() -> list[Delivery] | None:
                with sessions() as session:
                    job = session.scalar(select(Job))
                    rows = list(session.scalars(select(Delivery)))
                if job is None or job.state is not JobState.DONE:
                    return None
                return rows if rows and all(d.state is DeliveryState.FAILED for d in rows) else None

            deliveries = wait_until(finished, timeout=120)
            with sessions() as session:
                job = session.scalars(select(Job)).one()
                study_uid = job.series.study.study_instance_uid
            add_test_users(receiver)
            yield Site(
                settings,
                receiver,
                create_app(settings, receiver.engine),
                pacs,
                study_uid,
                job.id,
                [d.id for d in deliveries],
                len(files),
            )
    finally:
        pacs.stop()


@pytest.fixture
def anonymous(site: Site) -> FlaskClient:
    return site.app.test_client()


@pytest.fixture
def admin(site: Site) -> FlaskClient:
    client = site.app.test_client()
    login(client, ADMIN)
    return client


@pytest.fixture
def viewer(site: Site) -> FlaskClient:
    client = site.app.test_client()
    login(client, VIEWER)
    return client
