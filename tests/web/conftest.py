"""A real site for the dashboard's tests: a migrated database, the DICOM node and a worker
with the bundled model, a synthetic head CT with a lesion pushed in by dcmtk's storescu
and analysed, and a destination PACS (dcmtk's storescp) that is down at first. Beside
it, `readings`: analyses written as records (tests/web/readings.py), for the wording."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from assistant.db import Delivery, DeliveryState, Job, JobState
from assistant.settings import Destination
from assistant.training.demo import write_demo_head
from tests.helpers import login
from tests.peers.chromium import chromium
from tests.peers.dcmtk import StoreSCP, storescu
from tests.peers.tools import wait_until
from tests.support.site import ADMIN, VIEWER, Site, add_test_users, running_node, site_settings
from tests.web.readings import Readings, readings_site
from web import create_app

if TYPE_CHECKING:
    from playwright.sync_api import Browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as instance:
        yield instance


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
            sessions = receiver.db.sessions

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
                create_app(settings, receiver.db),
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


@pytest.fixture(scope="package")
def readings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Readings]:
    with readings_site(tmp_path_factory.mktemp("readings")) as found:
        yield found
