"""Debian's PostgreSQL server as a peer: a throwaway cluster on a free loopback port, and
a fresh database in it for each test."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.peers.tools import free_port, unavailable


def postgres_bin(name: str) -> str:
    matches = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not matches:
        unavailable("PostgreSQL server is not installed (Debian package postgresql)")
    return matches[-1]


@contextmanager
def postgres_cluster() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on a free loopback port; yields its base URL."""
    initdb, pg_ctl = postgres_bin("initdb"), postgres_bin("pg_ctl")
    # Not under pytest's tmp folder: its 0700 parents would lock the postgres user out.
    root = Path(tempfile.mkdtemp(prefix="radassist-pg-"))
    data, sockets, port = root / "data", root / "sockets", free_port()
    sockets.mkdir()
    as_user: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
        root.chmod(0o755)
        as_user = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*as_user, initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"],
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        [*as_user, pg_ctl, "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run(
            [*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def scratch_database(base: str) -> Iterator[str]:
    """A new empty database in the cluster at `base`, dropped on the way out; yields its URL."""
    import psycopg

    name = f"test_{uuid.uuid4().hex[:12]}"
    plain = base.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(f"{plain}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(f"{plain}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
