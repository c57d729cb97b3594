"""Finding the peers and waiting for them: a missing tool skips (or fails under CI), free
loopback ports, polling until something is ready."""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def unavailable(reason: str) -> None:
    """Skip, or fail under CI where every tool must be present."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: a missing tool is a failure)")
    pytest.skip(reason)


def require_tool(path: str) -> str:
    found = path if os.path.isabs(path) and os.access(path, os.X_OK) else shutil.which(path)
    if not found:
        unavailable(f"{path} is not installed (make system-deps installs it)")
    return str(found)


def require_file(path: str) -> str:
    if not Path(path).is_file():
        unavailable(f"{path} is not installed (make system-deps)")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05) -> Any:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)
