"""No secrets in the repository: no private keys, no keys of the session, no passwords."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_SECRET = re.compile(
    rb"-----BEGIN (?:RSA |EC |OPENSSH )?PRIVATE KEY-----|AKIA[0-9A-Z]{16}|"
    rb"(?i:password|secret|token)\s*=\s*[\"'][^\"'\s]{8,}[\"']"
)


def test_tracked_files_hold_no_secrets() -> None:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
    found = []
    for name in listed.stdout.decode().split("\0"):
        path = ROOT / name
        if not name or name.startswith("tests/") or not path.is_file():
            continue
        if path.suffix in {".png", ".pt", ".dcm"}:
            continue
        if _SECRET.search(path.read_bytes()):
            found.append(name)
    assert found == []
    ignored = (ROOT / ".gitignore").read_text().split()
    assert "var/" in ignored and "radassist.toml" in ignored  # secret_key, demo login, site config
