"""The stage layout of DESIGN.md §2, checked on the code's imports: PACS → dicom_node →
assistant/intake → assistant/analysis → assistant/delivery, with web beside them.

Static checks read every import statement (those inside functions too); the runtime
checks import a side of the node in a fresh interpreter and look at what got loaded.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) of every import in a file, relative imports made absolute."""
    package = (
        _module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else _module_name(path)
    )
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            yield node.lineno, module
            for alias in node.names:  # `from assistant import training` imports a module too
                yield node.lineno, f"{module}.{alias.name}"


def _violations(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for line, module in _imports(path):
            if any(module == f or module.startswith(f + ".") for f in forbidden):
                found.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return sorted(set(found))


RULES = [
    # (folder, what it must not import, why)
    (
        "dicom_node",
        ("assistant", "web", "migrations", "tests"),
        "networking imports nothing of ours",
    ),
    (
        "web",
        ("dicom_node", "torch", "assistant.training"),
        "the dashboard reads; it neither networks nor trains",
    ),
    (
        "assistant/intake",
        ("assistant.analysis", "assistant.delivery", "assistant.training", "torch", "web"),
        "intake queues a job by name",
    ),
    (
        "assistant/delivery",
        ("assistant.intake", "assistant.analysis", "assistant.training", "torch", "web"),
        "delivery sends what the outbox holds",
    ),
    (
        "assistant/analysis",
        ("assistant.intake", "assistant.training", "web"),
        "analysis reads series from the store and hands results to the outbox",
    ),
    (
        "assistant/findings",
        (
            "assistant.intake",
            "assistant.analysis",
            "assistant.delivery",
            "assistant.training",
            "torch",
            "dicom_node",
            "web",
        ),
        "findings are plain data",
    ),
    (
        "assistant/db",
        (
            "assistant.intake",
            "assistant.analysis",
            "assistant.delivery",
            "assistant.training",
            "torch",
            "web",
        ),
        "every stage may use the database",
    ),
    (
        "assistant/registry",
        (
            "assistant.intake",
            "assistant.analysis",
            "assistant.delivery",
            "assistant.training",
            "torch",
            "web",
        ),
        "the registry is shared, like the database: every stage reads it",
    ),
    (
        "assistant/access",
        (
            "assistant.intake",
            "assistant.analysis",
            "assistant.delivery",
            "assistant.training",
            "torch",
            "web",
        ),
        "accounts serve the web side",
    ),
]


@pytest.mark.parametrize(("folder", "forbidden", "why"), RULES, ids=[r[0] for r in RULES])
def test_stage_imports_run_one_way(folder: str, forbidden: tuple[str, ...], why: str) -> None:
    assert _violations(folder, forbidden) == [], why


def test_shared_modules_import_no_stage() -> None:
    stages = ("assistant.intake", "assistant.analysis", "assistant.delivery", "assistant.training")
    for name in ("settings.py", "storage.py", "queue.py", "geometry.py"):
        path = ROOT / "assistant" / name
        bad = [m for _, m in _imports(path) if m.startswith(stages) or m.startswith("web")]
        assert bad == [], f"{name} imports {bad}"


def test_torch_only_where_the_model_runs() -> None:
    allowed = ("assistant/analysis/model", "assistant/analysis/inference", "assistant/training")
    found = []
    for path in sorted((ROOT / "assistant").rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith(allowed) or relative == "assistant/analysis/model/card.py":
            continue
        found += [f"{relative}:{line}" for line, m in _imports(path) if m.split(".")[0] == "torch"]
    assert found == []
    card = ROOT / "assistant/analysis/model/card.py"
    assert not [m for _, m in _imports(card) if m.split(".")[0] == "torch"]


def test_only_the_cli_imports_web() -> None:
    found = [v for v in _violations("assistant", ("web",)) if not v.startswith("assistant/cli.py:")]
    assert found == []


def _loaded_after(code: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", f"import sys\n{code}\nprint('\\n'.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return set(done.stdout.split())


def test_receiving_and_web_sides_load_neither_torch_nor_training() -> None:
    intake = sorted(
        _module_name(p) for p in (ROOT / "assistant" / "intake").rglob("*.py")
    ) + sorted(_module_name(p) for p in (ROOT / "assistant" / "delivery").rglob("*.py"))
    code = "\n".join(
        f"import {m}"
        for m in [
            *intake,
            "assistant.cli",
            "web",
            "web.server",
            "web.dashboard",
            "web.api",
            "assistant.findings",
            "assistant.registry",
            "assistant.cli_models",
            "assistant.cli_compare",
            "assistant.cli_dataset",
            "assistant.analysis.model.card",
        ]
    )
    loaded = _loaded_after(code)
    assert "torch" not in loaded
    assert not [m for m in loaded if m.startswith("assistant.training")]


def test_the_worker_loads_no_training_code() -> None:
    loaded = _loaded_after("import assistant.analysis.worker, assistant.analysis.pipeline")
    assert "torch" in loaded  # the check below would pass vacuously otherwise
    assert not [m for m in loaded if m.startswith("assistant.training")]


def test_the_receiving_side_registers_the_first_model_without_torch(tmp_path: Path) -> None:
    """The SCP process adds the bundled model to an empty registry at first start: card
    and sha256 only, no torch (the worker's warm-up runs the model)."""
    code = (
        "from assistant.settings import load_settings\n"
        "from assistant.cli import register_first_model\n"
        "from assistant.db.migrate import upgrade, migrated_database\n"
        "s = load_settings(environ={})\n"
        "upgrade(s.database_url)\n"
        "db = migrated_database(s.database_url)\n"
        "assert [e.ref for e in register_first_model(s, db).models()] == "
        "['radassist-hyperdense:0.1.0']\n"
        "db.dispose()"
    )
    done = subprocess.run(
        [sys.executable, "-c", f"import sys\n{code}\nprint('torch' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    assert done.stdout.strip() == "False"
