"""A real Orthanc as the PACS: started with its own configuration on free loopback ports,
optionally with Debian's DICOMweb plugin."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

from tests.peers.tools import free_port, require_file, require_tool, wait_until

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
