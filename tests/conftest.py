"""Fixtures that start real things: migrated databases (SQLite and PostgreSQL), the node
on a free port, and Orthanc. The peers themselves live in tests.peers: a missing tool
skips its tests on a user's machine and fails them under CI=true."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from assistant.cli import build_receiver
from assistant.db.migrate import upgrade
from assistant.intake.receiver import Receiver
from assistant.settings import (
    CompletionSettings,
    DatabaseSettings,
    NodeSettings,
    Settings,
    StorageSettings,
)
from tests.helpers import NODE_AE
from tests.peers.orthanc import Orthanc
from tests.peers.postgres import postgres_cluster, scratch_database

# -- databases ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on a free loopback port; yields its base URL."""
    with postgres_cluster() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each kind (not yet migrated)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'radassist.db'}"
        return
    with scratch_database(request.getfixturevalue("postgres_server")) as url:
        yield url


@pytest.fixture
def migrated_url(database_url: str) -> str:
    upgrade(database_url)
    return database_url


# -- the node ---------------------------------------------------------------------------


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Settings for a node under tmp_path, on any free port; override sections by name."""

    def build(
        *,
        database_url: str | None = None,
        quiet_seconds: float = 60.0,
        allowed_callers: tuple[str, ...] = (),
        **sections: Any,
    ) -> Settings:
        """`sections`: whole sections to replace (destinations=, delivery=, model=…)."""
        settings = Settings(
            node=NodeSettings(
                processes=1,
                ae_title=NODE_AE,
                host="127.0.0.1",
                port=0,
                allowed_callers=allowed_callers,
            ),
            storage=StorageSettings(data_dir=tmp_path / "var"),
            database=DatabaseSettings(
                url=database_url or f"sqlite:///{tmp_path / 'var' / 'radassist.db'}"
            ),
            completion=CompletionSettings(quiet_seconds=quiet_seconds, check_interval_seconds=0.1),
        )
        return dataclasses.replace(settings, **sections)

    return build


@pytest.fixture
def start_node(make_settings: Callable[..., Settings]) -> Iterator[Callable[..., Receiver]]:
    """Start a migrated node (SCP + completion); each is stopped at teardown."""
    started: list[Receiver] = []

    def start(**overrides: Any) -> Receiver:
        settings = make_settings(**overrides)
        upgrade(settings.database_url)
        receiver = build_receiver(settings)
        receiver.start()
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.stop()


@pytest.fixture
def node(start_node: Callable[..., Receiver]) -> Receiver:
    return start_node()


# -- Orthanc ----------------------------------------------------------------------------


@pytest.fixture
def start_orthanc(tmp_path: Path) -> Iterator[Callable[..., Orthanc]]:
    started: list[Orthanc] = []

    def start(modalities: dict[str, tuple[str, str, int]], dicomweb: bool = False) -> Orthanc:
        root = tmp_path / f"orthanc{len(started)}"
        root.mkdir()
        orthanc = Orthanc(root, modalities, dicomweb)
        started.append(orthanc)
        return orthanc

    yield start
    for orthanc in started:
        orthanc.close()
