"""dicom3tools' dciodvfy as the judge of valid DICOM.

dciodvfy writes one line a finding, "Error - …", "Warning - …" or "Abort - …", some after
the attribute they concern ("(0x0043,0x106d) US Area Size  - Warning - …"), and exits 1
when it found an error or could not read the file (a garbage file: "Error - Dicom dataset
read failed"; a missing one: "Abort - File open for read failed"), 0 when it found at most
warnings."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.peers.tools import require_tool

#: A finding of severity Error or Abort, at the start of a line or after an attribute.
_FAILURE = re.compile(r"(?:^|\s-\s)(?:Error|Abort) - ")


def dciodvfy_errors(path: Path) -> list[str]:
    """What makes `path` invalid to dciodvfy: its Error and Abort lines, and a non-zero
    exit (a crash, an unreadable file) even when it said nothing. [] when valid; warnings
    are allowed."""
    done = subprocess.run(
        [require_tool("dciodvfy"), str(path)], capture_output=True, text=True, timeout=120
    )
    lines = (done.stdout + done.stderr).splitlines()
    errors = [line for line in lines if _FAILURE.search(line)]
    if done.returncode != 0 and not errors:
        errors.append(f"dciodvfy exited with {done.returncode}: {lines[-5:]}")
    return errors
