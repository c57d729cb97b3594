"""The data folder is the node user's alone: the folder 0700, the database, the queue and
the session key 0600, instance and result files 0600 in 0700 folders, whatever the umask;
what an older version or a hand left more open is corrected at start-up, one log line
per path."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from assistant.analysis.imaging.synthetic import write_demo_series
from assistant.db import Database, make_engine
from assistant.db.files import (
    create_private_file,
    make_private_dirs,
    secure_data_folder,
    secure_node_files,
)
from assistant.db.migrate import upgrade
from assistant.intake.receiver import Receiver
from assistant.settings import DatabaseSettings, Settings, StorageSettings, WebSettings
from assistant.storage import InstanceStore
from dicom_node import send_files
from tests.helpers import NODE_AE
from tests.peers.tools import wait_until


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask() -> Iterator[Callable[[int], None]]:
    """Set the process's umask for one test (0o022, a common default, unless told)."""
    before = os.umask(0o022)

    def set_umask(value: int) -> None:
        os.umask(value)

    yield set_umask
    os.umask(before)


def _sqlite_files(data_dir: Path, name: str) -> list[Path]:
    return [p for p in data_dir.glob(f"{name}*") if p.is_file()]


def test_a_started_node_keeps_its_files_private(
    umask: Callable[[int], None], start_node: Callable[..., Receiver], tmp_path: Path
) -> None:
    node = start_node()
    data_dir = node.settings.storage.data_dir
    files = write_demo_series(tmp_path / "series", count=2)
    results = send_files(files, host="127.0.0.1", port=node.scp.port, called_ae=NODE_AE)
    assert [r.outcome for r in results] == ["sent", "sent"]
    stored = wait_until(lambda: sorted(node.settings.storage.instances_dir.rglob("*.dcm")))
    assert len(stored) == 2
    assert mode(data_dir) == 0o700
    database = _sqlite_files(data_dir, "radassist.db")
    queue = _sqlite_files(data_dir, "queue.db")
    assert data_dir / "radassist.db" in database and data_dir / "radassist.db-wal" in database
    assert data_dir / "queue.db" in queue
    assert {p.name: mode(p) for p in database + queue} == {p.name: 0o600 for p in database + queue}
    for path in stored:
        assert mode(path) == 0o600
        for folder in (path.parent, path.parent.parent, path.parent.parent.parent):
            assert mode(folder) == 0o700, folder


def test_the_web_apps_session_key_is_private(umask: Callable[[int], None], tmp_path: Path) -> None:
    from web import create_app

    data_dir = tmp_path / "var"
    url = f"sqlite:///{data_dir / 'radassist.db'}"
    upgrade(url)
    settings = Settings(
        storage=StorageSettings(data_dir=data_dir), database=DatabaseSettings(url=url)
    )
    db = Database(make_engine(url))
    try:
        create_app(settings, db)
    finally:
        db.dispose()
    assert mode(data_dir) == 0o700 and mode(settings.secret_key_path) == 0o600
    assert mode(data_dir / "radassist.db") == 0o600


def test_modes_do_not_depend_on_the_umask(umask: Callable[[int], None], tmp_path: Path) -> None:
    umask(0o222)  # would make folders 0500 and files 0400
    make_private_dirs(tmp_path / "a" / "b")
    assert mode(tmp_path / "a") == mode(tmp_path / "a" / "b") == 0o700
    assert create_private_file(tmp_path / "a" / "f") and mode(tmp_path / "a" / "f") == 0o600
    assert not create_private_file(tmp_path / "a" / "f")  # there already: left alone
    umask(0o000)  # would make folders 0777 and files 0666
    store = InstanceStore(tmp_path / "instances")
    written = store.write("1.2", "1.2.3", "1.2.3.4", [b"instance"])
    assert mode(written.path) == 0o600
    assert mode(written.path.parent) == mode(tmp_path / "instances" / "1.2") == 0o700
    assert mode(tmp_path / "instances") == 0o700
    engine = make_engine(f"sqlite:///{tmp_path / 'db' / 'x.db'}")
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE t (x)")
            assert {p.name: mode(p) for p in _sqlite_files(tmp_path / "db", "x.db")} == {
                "x.db": 0o600,
                "x.db-wal": 0o600,
                "x.db-shm": 0o600,
            }
    finally:
        engine.dispose()
    assert mode(tmp_path / "db") == 0o700


def _world_readable_node(data_dir: Path) -> None:
    """A data folder as the node left it before file modes were looked after."""
    data_dir.mkdir(0o755)
    os.chmod(data_dir, 0o755)
    for name in ("radassist.db", "queue.db"):
        connection = sqlite3.connect(data_dir / name)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("CREATE TABLE t (x)")
        connection.close()  # the last connection's close removes -wal and -shm
        os.chmod(data_dir / name, 0o644)
    (data_dir / "radassist.db-wal").write_bytes(b"")  # left by a crash
    os.chmod(data_dir / "radassist.db-wal", 0o644)
    (data_dir / "secret_key").write_text("k" * 64)
    os.chmod(data_dir / "secret_key", 0o644)
    (data_dir / "instances").mkdir(0o755)
    os.chmod(data_dir / "instances", 0o755)


def test_world_readable_files_are_corrected_with_a_log_line(
    umask: Callable[[int], None], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "var"
    _world_readable_node(data_dir)
    outside_key = tmp_path / "etc" / "key"
    outside_key.parent.mkdir()
    outside_key.write_text("k" * 64)
    os.chmod(outside_key, 0o640)
    caplog.set_level(logging.WARNING, logger="assistant.db.files")
    corrected = secure_data_folder(data_dir, [outside_key])
    assert corrected == [
        f"{data_dir} was mode 0755; now 0700",
        f"{data_dir / 'instances'} was mode 0755; now 0700",
        f"{data_dir / 'radassist.db'} was mode 0644; now 0600",
        f"{data_dir / 'radassist.db-wal'} was mode 0644; now 0600",
        f"{data_dir / 'queue.db'} was mode 0644; now 0600",
        f"{data_dir / 'secret_key'} was mode 0644; now 0600",
        f"{outside_key} was mode 0640; now 0600",
    ]
    assert [r.getMessage() for r in caplog.records] == corrected
    assert mode(data_dir) == mode(data_dir / "instances") == 0o700
    for path in (data_dir / "radassist.db", data_dir / "queue.db", outside_key):
        assert mode(path) == 0o600
    caplog.clear()
    assert secure_data_folder(data_dir, [outside_key]) == []  # nothing more to do
    assert caplog.records == []


def test_a_missing_data_folder_is_made_private(
    umask: Callable[[int], None], tmp_path: Path
) -> None:
    assert secure_data_folder(tmp_path / "new" / "var") == []
    assert mode(tmp_path / "new" / "var") == 0o700


def test_a_node_started_on_a_world_readable_folder_is_corrected(
    umask: Callable[[int], None],
    make_settings: Callable[..., Settings],
    start_node: Callable[..., Receiver],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    data_dir = tmp_path / "var"
    _world_readable_node(data_dir)
    (data_dir / "queue.db").unlink()  # huey makes its own tables
    (data_dir / "radassist.db").unlink()
    (data_dir / "radassist.db-wal").unlink()
    settings = make_settings()
    upgrade(settings.database_url)  # as SQLite made it before: with the umask's 0644
    os.chmod(data_dir / "radassist.db", 0o644)
    elsewhere = tmp_path / "keys" / "session.key"
    elsewhere.parent.mkdir()
    elsewhere.write_text("k" * 64)
    os.chmod(elsewhere, 0o644)
    keyed = Settings(
        storage=settings.storage,
        database=settings.database,
        web=WebSettings(secret_key_file=str(elsewhere)),
    )
    caplog.set_level(logging.WARNING, logger="assistant.db.files")
    # What the composition root runs before it starts a node.
    corrected = secure_node_files(keyed)
    assert f"{data_dir / 'radassist.db'} was mode 0644; now 0600" in corrected
    assert f"{data_dir} was mode 0755; now 0700" in corrected
    assert f"{elsewhere} was mode 0644; now 0600" in corrected
    assert len(caplog.records) == len(corrected)
    node = start_node()
    assert node.settings.storage.data_dir == data_dir
    assert mode(data_dir) == 0o700
    for path in _sqlite_files(data_dir, "radassist.db") + _sqlite_files(data_dir, "queue.db"):
        assert mode(path) == 0o600, path
    assert mode(elsewhere) == 0o600
