"""Import rules of DESIGN.md §2: the DICOM side never loads torch; dicom_node imports
nothing of ours; no test or benchmark imports another test module."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_receiver_and_cli_start_without_torch() -> None:
    code = (
        "import sys, assistant.cli, assistant.intake.receiver, assistant.analysis.imaging, web, web.server, "
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


def _imported_modules(source: str, package: str) -> set[str]:
    """Every module `source` may load by its import statements, relative ones resolved
    against `package`; `from m import n` counts both m and m.n (n may be a submodule)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            base = ".".join(parts[: len(parts) - node.level + 1]) if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _is_test_module(name: str) -> bool:
    last = name.rsplit(".", 1)[-1]
    return last.startswith("test_") or last == "conftest"


def test_no_test_or_benchmark_imports_a_test_module() -> None:
    """DESIGN.md §2: shared test code lives in tests.peers, tests.support, tests.helpers."""
    assert _imported_modules("from .conftest import x\nimport tests.jobs.test_a", "tests.web") >= {
        "tests.web.conftest",
        "tests.jobs.test_a",
    }
    assert _is_test_module("tests.web.conftest") and not _is_test_module("tests.peers.tools")
    offenders = []
    for folder in ("tests", "bench"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            relative = path.relative_to(ROOT).with_suffix("")
            package = ".".join(relative.parts[:-1])
            offenders += [
                f"{relative}.py imports {name}"
                for name in sorted(_imported_modules(path.read_text(), package))
                if _is_test_module(name)
            ]
    assert offenders == []
