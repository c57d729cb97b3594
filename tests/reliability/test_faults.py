"""Faults: the disk fills up (a small tmpfs), the database is locked for a while. The node
answers with the right status, leaves nothing partial, and recovers."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest

from assistant.analysis.imaging.synthetic import write_demo_series
from tests.helpers import instance_count
from tests.peers.dcmtk import storescu
from tests.peers.tools import unavailable

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def small_disk(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A 3 MiB tmpfs for the data folder (root only: it mounts a filesystem)."""
    if os.geteuid() != 0:
        unavailable("mounting a tmpfs needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        unavailable(f"cannot mount a tmpfs: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_is_out_of_resources_and_recovers(
    start_node, small_disk: Path, tmp_path: Path
) -> None:
    from assistant.settings import DatabaseSettings, StorageSettings

    node = start_node(
        storage=StorageSettings(data_dir=small_disk / "var"),
        database=DatabaseSettings(url=f"sqlite:///{tmp_path / 'radassist.db'}"),
    )
    files = write_demo_series(tmp_path / "series", count=10, seed=901)  # 512 KiB each
    done = storescu(node.scp.port, files, extra=("-v",))
    assert done.returncode != 0
    output = (done.stdout + done.stderr).lower().replace(" ", "")
    assert "outofresources" in output or "a700" in output, output[-500:]
    stored = instance_count(node)
    assert 0 < stored < len(files)
    leftovers = [
        p
        for p in (small_disk / "var" / "instances").rglob("*")
        if p.is_file() and not p.name.endswith(".dcm")
    ]
    assert leftovers == []  # no partial files
    assert len(list((small_disk / "var").rglob("*.dcm"))) == stored
    # Space returns: the same files go through, the ones stored before are not doubled.
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    assert storescu(node.scp.port, files).returncode == 0
    assert instance_count(node) == len(files)


def test_a_locked_database_delays_but_loses_nothing(node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    files = write_demo_series(tmp_path / "series", count=5, seed=902)
    database = node.settings.database_url.removeprefix("sqlite:///")
    locked = threading.Event()

    def hold_lock() -> None:
        connection = sqlite3.connect(database, timeout=30, isolation_level=None)
        connection.execute("BEGIN EXCLUSIVE")
        locked.set()
        time.sleep(2.0)
        connection.execute("COMMIT")
        connection.close()

    holder = threading.Thread(target=hold_lock)
    holder.start()
    locked.wait(10)
    started = time.monotonic()
    done = storescu(node.scp.port, files)
    holder.join()
    assert done.returncode == 0, done.stdout + done.stderr
    assert time.monotonic() - started >= 1.0  # it waited for the lock
    assert instance_count(node) == len(files)
