"""No patient names or IDs in the log at INFO, from the DICOM node through the analysis
to the dashboard; no passwords or tokens either."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy import select

from assistant.access.users import add_user
from assistant.cli import build_worker
from assistant.db import Job, JobState
from assistant.training.demo import write_demo_head
from tests.helpers import csrf_token, login
from tests.peers.dcmtk import storescu
from tests.peers.tools import wait_until
from web import create_app

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_no_phi_or_secrets_in_the_log(
    start_node, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO)
    node = start_node(quiet_seconds=1.0)
    worker = build_worker(node.settings, node.db)
    worker.start()
    try:
        files = write_demo_head(tmp_path / "series")
        assert storescu(node.scp.port, files).returncode == 0
        sessions = node.db.sessions

        def done() -> bool:
            with sessions() as session:
                return session.scalar(select(Job.state)) in (JobState.DONE, JobState.FAILED)

        wait_until(done, timeout=120)
        password = "a very secret password"
        add_user(node.db, "reader", password, "viewer")
        app = create_app(node.settings, node.db)
        client = app.test_client()
        failed = client.post(
            "/login",
            data={
                "username": "reader",
                "password": "wrong " + password,
                "csrf_token": csrf_token(client),
            },
        )
        assert failed.status_code == 401
        login(client, ("reader", password))
        html = client.get("/").get_data(as_text=True)
        assert "DEMO-0001" in html  # the page shows it; the log must not
    finally:
        worker.stop()
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "job" in text and "series" in text  # the log does say what happened
    for secret in ("DEMO-0001", "PHANTOM", password):
        assert secret not in text, f"{secret!r} appears in the log"
