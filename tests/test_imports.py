"""Import rules of DESIGN.md §2: the DICOM side never loads torch; dicom_node imports
nothing of ours."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_receiver_and_cli_start_without_torch() -> None:
    code = (
        "import sys, assistant.cli, assistant.receiver, assistant.imaging, web, web.server, "
        "web.dashboard, web.api, web.ops; print('torch' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert done.stdout.strip() == "False"


def test_dicom_node_imports_nothing_of_ours() -> None:
    for path in (ROOT / "dicom_node").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith(("assistant", "web", "migrations")), (
                    f"{path.name} imports {name}"
                )


def test_only_the_cli_imports_web() -> None:
    for path in (ROOT / "assistant").rglob("*.py"):
        if path.name == "cli.py":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith("web"), f"{path} imports {node.module}"
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("web") for a in node.names), str(path)
