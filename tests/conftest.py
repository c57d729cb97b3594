"""Fixtures that start real things: migrated databases (SQLite and PostgreSQL), the node
on a free port, dcmtk's tools and Orthanc. A missing tool skips its tests on a user's
machine and fails them under CI=true."""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from assistant.db.migrate import upgrade
from assistant.receiver import Receiver
from assistant.settings import (
    CompletionSettings,
    DatabaseSettings,
    NodeSettings,
    Settings,
    StorageSettings,
)

SHARED_CT = Path(__file__).resolve().parents[2] / "shared" / "data" / "ct"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
NODE_AE = "RADASSIST"


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


def shared_ct(name: str) -> Path:
    folder = SHARED_CT / name
    if not folder.is_dir():
        unavailable(f"shared test data {folder} is absent")
    return folder


def dicom_files(folder: Path) -> list[Path]:
    """The DICOM files of a shared series folder (not Philips' DIRFILE)."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "DIRFILE")


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


# -- databases ------------------------------------------------------------------------------


def _postgres_bin(name: str) -> str:
    matches = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not matches:
        unavailable("PostgreSQL server is not installed (Debian package postgresql)")
    return matches[-1]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on a free loopback port; yields its base URL."""
    initdb, pg_ctl = _postgres_bin("initdb"), _postgres_bin("pg_ctl")
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


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each kind (not yet migrated)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'radassist.db'}"
        return
    import psycopg

    base = request.getfixturevalue("postgres_server")
    name = f"test_{uuid.uuid4().hex[:12]}"
    plain = base.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(f"{plain}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"{base}/{name}"
    with psycopg.connect(f"{plain}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


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
                ae_title=NODE_AE, host="127.0.0.1", port=0, allowed_callers=allowed_callers
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
        receiver = Receiver(settings)
        receiver.start()
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.stop()


@pytest.fixture
def node(start_node: Callable[..., Receiver]) -> Receiver:
    return start_node()


# -- dcmtk ------------------------------------------------------------------------------

#: storescu's flag to propose each compressed transfer syntax as it is stored.
STORESCU_SYNTAX_FLAGS = {
    "1.2.840.10008.1.2.4.70": "-xs",  # JPEG lossless SV1
    "1.2.840.10008.1.2.4.80": "-xt",  # JPEG-LS lossless
    "1.2.840.10008.1.2.4.81": "-xu",  # JPEG-LS near-lossless
    "1.2.840.10008.1.2.4.90": "-xv",  # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.91": "-xw",  # JPEG 2000
    "1.2.840.10008.1.2.5": "-xr",  # RLE
    "1.2.840.10008.1.2.1.99": "-xd",  # deflate
}


def storescu(
    port: int,
    files: list[Path],
    *,
    aec: str = NODE_AE,
    aet: str = "STORESCU",
    extra: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """Run dcmtk's storescu (never pynetdicom's, which shadows it in the venv)."""
    binary = require_tool("/usr/bin/storescu")
    return subprocess.run(
        [binary, "-aec", aec, "-aet", aet, *extra, "127.0.0.1", str(port), *map(str, files)],
        capture_output=True,
        text=True,
        env={**os.environ, "TCP_NODELAY": "1"},
        timeout=120,
    )


def echoscu(port: int, *, aec: str = NODE_AE) -> bool:
    binary = require_tool("/usr/bin/echoscu")
    done = subprocess.run(
        [binary, "-aec", aec, "127.0.0.1", str(port)], capture_output=True, text=True, timeout=30
    )
    return done.returncode == 0


# -- Orthanc ----------------------------------------------------------------------------


DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"


class Orthanc:
    """A real Orthanc started with its own configuration on free loopback ports."""

    def __init__(
        self, root: Path, modalities: dict[str, tuple[str, str, int]], dicomweb: bool = False
    ) -> None:
        self.http_port, self.dicom_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        #: The DICOMweb root when started with `dicomweb` (Debian's orthanc-dicomweb).
        self.dicomweb_url = f"{self.url}/dicom-web"
        config = {
            "Name": "TESTPACS",
            "StorageDirectory": str(root / "storage"),
            "IndexDirectory": str(root / "index"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": "ORTHANC",
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "SyncStorageArea": False,
            "DicomModalities": {name: list(peer) for name, peer in modalities.items()},
            "Plugins": [require_file(DICOMWEB_PLUGIN)] if dicomweb else [],
            "DicomWeb": {"Enable": dicomweb, "Root": "/dicom-web/"},
        }
        self._config_path = root / "orthanc.json"
        self._config_path.write_text(json.dumps(config))
        self._log = (root / "orthanc.log").open("a")
        self._process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        """Start (again, after stop(): same ports, same storage)."""
        self._process = subprocess.Popen(
            [require_tool("Orthanc"), str(self._config_path)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "TCP_NODELAY": "1"},
        )
        wait_until(self._ready, timeout=30)

    def _ready(self) -> bool:
        assert self._process is not None
        if self._process.poll() is not None:
            raise RuntimeError(f"Orthanc exited with {self._process.returncode}")
        try:
            self.get("/system")
            return True
        except OSError:
            return False

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str = "application/json",
    ) -> Any:
        req = urllib.request.Request(self.url + path, data=body, method=method)
        if body is not None:
            req.add_header("Content-Type", content_type)
        with urllib.request.urlopen(req, timeout=120) as response:
            return json.loads(response.read() or b"null")

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def request_bytes(self, path: str) -> bytes:
        with urllib.request.urlopen(self.url + path, timeout=120) as response:
            return response.read()

    def post_json(self, path: str, payload: Any) -> Any:
        return self.request("POST", path, json.dumps(payload).encode())

    def upload(self, path: Path) -> dict[str, Any]:
        return self.request("POST", "/instances", path.read_bytes(), "application/dicom")

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def close(self) -> None:
        self.stop()
        self._log.close()


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
