"""The dashboard's test site: its users, its settings, a node with a worker, and what the
`site` fixture (tests/web/conftest.py) hands to the tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from flask import Flask
from sqlalchemy import select

from assistant.access.users import add_user
from assistant.cli import build_receiver, build_worker
from assistant.db import Delivery
from assistant.db.migrate import upgrade
from assistant.intake.receiver import Receiver
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
from tests.helpers import NODE_AE
from tests.peers.dcmtk import StoreSCP

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
        with self.receiver.db.sessions() as session:
            return list(session.scalars(select(Delivery).order_by(Delivery.id)))


def site_settings(root: Path, destinations: tuple[Destination, ...] = ()) -> Settings:
    return Settings(
        node=NodeSettings(processes=1, ae_title=NODE_AE, host="127.0.0.1", port=0),
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
    receiver = build_receiver(settings)
    worker = build_worker(settings, receiver.db)
    receiver.start()
    worker.start()
    try:
        yield receiver
    finally:
        worker.stop()
        receiver.stop()


def add_test_users(receiver: Receiver) -> None:
    add_user(receiver.db, ADMIN[0], ADMIN[1], "admin")
    add_user(receiver.db, VIEWER[0], VIEWER[1], "viewer")
