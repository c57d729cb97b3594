"""Failed logins cannot stall storage: a client sending wrong HTTP Basic credentials to
/metrics as fast as it can, while dcmtk pushes a series, leaves the push within twice its
quiet time. (Before, the password was hashed inside a SQLite write transaction: a
28-file push took 88 s instead of 0.2 s.)"""

from __future__ import annotations

import base64
import http.client
import secrets
import threading
import time
from pathlib import Path

import pytest

from assistant.analysis.imaging.synthetic import write_demo_series
from assistant.cli import build_receiver, build_web
from assistant.db.migrate import upgrade
from assistant.settings import AuthSettings, WebSettings
from tests.peers.dcmtk import storescu

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _push(port: int, folder: Path, seed: int) -> float:
    files = write_demo_series(folder, count=28, seed=seed)
    started = time.perf_counter()
    assert storescu(port, files).returncode == 0
    return time.perf_counter() - started


def test_a_wrong_password_flood_does_not_slow_a_push(make_settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # No address throttle here: every request checks a password (unknown names, so no
    # account locks either). What is measured is that checking does not hold the database.
    settings = make_settings(
        web=WebSettings(port=0), auth=AuthSettings(address_max_failures=1_000_000)
    )
    upgrade(settings.database_url)
    receiver = build_receiver(settings)
    web = build_web(settings, receiver.db, receiver.ingest)
    receiver.start()
    web.start()
    stop, attempts = threading.Event(), [0]

    def flood() -> None:
        while not stop.is_set():
            name = f"intruder{secrets.randbelow(10**6)}"
            token = base64.b64encode(f"{name}:wrong password".encode()).decode()
            connection = http.client.HTTPConnection("127.0.0.1", web.port, timeout=10)
            try:
                connection.request("GET", "/metrics", headers={"Authorization": f"Basic {token}"})
                assert connection.getresponse().status == 401
                attempts[0] += 1
            finally:
                connection.close()

    try:
        _push(receiver.scp.port, tmp_path / "warm", seed=600)  # first-use costs out of the way
        quiet = _push(receiver.scp.port, tmp_path / "quiet", seed=601)
        attacker = threading.Thread(target=flood, daemon=True)
        attacker.start()
        time.sleep(1.0)  # the flood under way
        flooded = _push(receiver.scp.port, tmp_path / "flooded", seed=602)
        stop.set()
        attacker.join(timeout=15)
    finally:
        stop.set()
        web.stop()
        receiver.stop()
    assert attempts[0] >= 5, "the flood did not run"
    assert flooded <= 2 * quiet + 0.5, f"push {flooded:.2f} s under the flood, {quiet:.2f} s quiet"
