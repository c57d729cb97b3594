"""Debian's redis-server as a peer: on a free loopback port, no persistence."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.peers.tools import free_port, require_tool, wait_until


@contextmanager
def redis_server(folder: Path) -> Iterator[str]:
    """Debian's redis-server on a free loopback port, no persistence; yields its URL."""
    port = free_port()
    process = subprocess.Popen(
        [
            require_tool("redis-server"),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ),
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        _wait_for(url)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def _wait_for(url: str) -> None:
    import redis

    def ping() -> bool:
        try:
            return bool(redis.Redis.from_url(url).ping())
        except redis.ConnectionError:
            return False

    wait_until(ping, timeout=10, interval=0.1)
