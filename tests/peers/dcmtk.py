"""dcmtk's tools as peers: storescu and echoscu calling our node, storescp as a PACS that
receives our results. Always Debian's binaries, never pynetdicom's same-named scripts that
shadow them in the venv."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.helpers import NODE_AE
from tests.peers.tools import free_port, require_tool, wait_until

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


class StoreSCP:
    """dcmtk's storescp writing every object it receives to a new file."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.port = folder, free_port()
        folder.mkdir(parents=True, exist_ok=True)
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(
            [
                require_tool("/usr/bin/storescp"),
                "-aet",
                "PACS",
                "-od",
                str(self.folder),
                "-uf",
                str(self.port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "TCP_NODELAY": "1"},
        )
        wait_until(self._listening, timeout=10)

    def _listening(self) -> bool:
        return echoscu(self.port, aec="PACS")

    def received(self) -> list[Path]:
        return sorted(p for p in self.folder.iterdir() if p.is_file())

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None
