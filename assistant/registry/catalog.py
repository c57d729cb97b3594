"""The model registry: which models the node holds, where their files are, and what each
does (live, shadow, retired). Torch-free: intake routes by it, the web shows and changes
it, the worker loads what it names.

A model's files live under ``<data>/models/<name>/<version>/`` and never change once
added (they are made read-only); only its state changes, and every change is audited in
the same transaction.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from assistant.db import AuditEvent, Database, ModelState, RegisteredModel, utcnow
from assistant.storage import fsync_dir

#: The folder under the data folder that holds the registry's model folders.
MODELS_FOLDER = "models"
#: Model names the registry holds at most: a name's slot (0 to 99) is two digits of its
#: results' series numbers (assistant/analysis/writers/__init__.py).
MAX_SLOTS = 100


class RegistryError(ValueError):
    """A registry request that cannot be met: an unknown model, a duplicate, a state
    change that makes no sense. The message says which and why, in one line."""


def parse_ref(text: str) -> tuple[str, str | None]:
    """ "name:version" → (name, version); "name" → (name, None)."""
    name, _, version = text.strip().partition(":")
    if not name:
        raise RegistryError(f"{text!r} is not a model (NAME or NAME:VERSION)")
    return name, version or None


@dataclass(frozen=True)
class ModelEntry:
    """One registered model version, as the registry holds it."""

    name: str
    version: str
    state: ModelState
    slot: int
    #: The model's folder (absolute).
    folder: Path
    format: str
    weights_sha256: str
    #: The model card (model.json) as added, as plain data.
    card: dict[str, Any]
    parent: str
    added_at: datetime
    added_by: str
    state_changed_at: datetime
    state_changed_by: str
    #: The latest `radassist compare` recorded on this model (JSON), or "".
    comparison_json: str = ""

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"

    @property
    def comparison(self) -> dict[str, Any] | None:
        """The latest `radassist compare` recorded on this model as the candidate (B),
        as plain data; None when there is none (or it cannot be read)."""
        if not self.comparison_json:
            return None
        try:
            value = json.loads(self.comparison_json)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    @property
    def threshold(self) -> float | None:
        value = self.card.get("threshold")
        return float(value) if isinstance(value, int | float) else None

    def to_dict(self) -> dict[str, Any]:
        """The entry as `model list --json` and the API print it."""
        card = self.card
        return {
            "name": self.name,
            "version": self.version,
            "state": self.state.value,
            "format": self.format,
            "weights_sha256": self.weights_sha256,
            "parent": self.parent,
            "classes": card.get("classes"),
            "input": {
                "image_size": card.get("image_size"),
                "windows": card.get("windows"),
                "input_mask": card.get("input_mask", ""),
            },
            "threshold": card.get("threshold"),
            "training": card.get("training", {}),
            "metrics": card.get("metrics", {}),
            "clinical_use": card.get("clinical_use", False),
            "added_at": self.added_at.isoformat(timespec="seconds") + "Z",
            "added_by": self.added_by,
            "state_changed_at": self.state_changed_at.isoformat(timespec="seconds") + "Z",
            "state_changed_by": self.state_changed_by,
            "folder": str(self.folder),
        }


def _entry(row: RegisteredModel, data_dir: Path) -> ModelEntry:
    try:
        card = json.loads(row.card_json)
    except ValueError:
        card = {}
    return ModelEntry(
        name=row.name,
        version=row.version,
        state=row.state,
        slot=row.slot,
        folder=data_dir / row.folder,
        format=row.format,
        weights_sha256=row.weights_sha256,
        card=card if isinstance(card, dict) else {},
        parent=row.parent,
        added_at=row.added_at,
        added_by=row.added_by,
        state_changed_at=row.state_changed_at,
        state_changed_by=row.state_changed_by,
        comparison_json=row.comparison_json or "",
    )


class Registry:
    """The registry of one node: its database and its data folder."""

    def __init__(self, db: Database, data_dir: Path) -> None:
        self._db = db
        self._data_dir = data_dir

    @property
    def models_dir(self) -> Path:
        return self._data_dir / MODELS_FOLDER

    # -- reading -----------------------------------------------------------------------

    def models(self, states: Iterable[ModelState] | None = None) -> list[ModelEntry]:
        """Every registered model (or those in `states`), by name, then as added."""
        query = select(RegisteredModel).order_by(RegisteredModel.name, RegisteredModel.id)
        if states is not None:
            query = query.where(RegisteredModel.state.in_(list(states)))
        with self._db.sessions() as session:
            return [_entry(row, self._data_dir) for row in session.scalars(query)]

    def active(self) -> list[ModelEntry]:
        """The models that read series: live and shadow."""
        return self.models((ModelState.LIVE, ModelState.SHADOW))

    def find(self, name: str, version: str | None = None) -> ModelEntry | None:
        """A model by name and version; without a version, the live one, else the one
        added last."""
        with self._db.sessions() as session:
            row = self._row(session, name, version)
            return None if row is None else _entry(row, self._data_dir)

    def get(self, ref: str) -> ModelEntry:
        """A model by "name[:version]", or RegistryError naming what is registered."""
        name, version = parse_ref(ref)
        entry = self.find(name, version)
        if entry is None:
            known = ", ".join(e.ref for e in self.models()) or "none"
            raise RegistryError(f"no model {ref} in the registry (registered: {known})")
        return entry

    def is_empty(self) -> bool:
        with self._db.sessions() as session:
            return not session.scalar(select(func.count(RegisteredModel.id)))

    @staticmethod
    def _row(session: Session, name: str, version: str | None) -> RegisteredModel | None:
        query = select(RegisteredModel).where(RegisteredModel.name == name)
        if version is not None:
            return session.scalar(query.where(RegisteredModel.version == version))
        live = session.scalar(query.where(RegisteredModel.state == ModelState.LIVE))
        return live or session.scalar(query.order_by(RegisteredModel.id.desc()).limit(1))

    # -- adding ------------------------------------------------------------------------

    def add(
        self,
        source: Path,
        card_json: str,
        files: Iterable[str],
        *,
        name: str,
        version: str,
        format: str,
        weights_sha256: str,
        state: ModelState,
        by: str,
        parent: str = "",
    ) -> ModelEntry:
        """Copy a checked model folder's `files` into the registry, read-only, and record
        it in `state`. The caller has checked the card, the hash and a test run; this
        refuses a name and version already registered."""
        self.models_dir.mkdir(parents=True, exist_ok=True)
        # One add at a time on this data folder (processes started together on a fresh
        # install all add the first model): check, copy and record under the lock.
        with _locked(self.models_dir / ".lock"):
            if self.find(name, version) is not None:
                raise RegistryError(
                    f"{name}:{version} is already registered; give it a new version"
                )
            with self._db.sessions() as session:
                same_name = session.scalar(
                    select(RegisteredModel.slot).where(RegisteredModel.name == name).limit(1)
                )
                highest = session.scalar(select(func.max(RegisteredModel.slot)))
            slot = same_name if same_name is not None else (0 if highest is None else highest + 1)
            if slot >= MAX_SLOTS:
                raise RegistryError(
                    f"the registry holds at most {MAX_SLOTS} model names (their results' series "
                    "numbers are set apart by them); add a new version of a name instead"
                )
            target = self.models_dir / name / version
            target.parent.mkdir(parents=True, exist_ok=True)
            # Files without a row, or a half copy: an add that stopped part way.
            for leftover in (target, *target.parent.glob(f".{version}-*")):
                if leftover.exists():
                    shutil.rmtree(leftover)
            scratch = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=target.parent))
            try:
                for file_name in files:
                    _copy_durably(source / file_name, scratch / file_name)
                os.replace(scratch, target)
            except BaseException:
                shutil.rmtree(scratch, ignore_errors=True)
                raise
            fsync_dir(target.parent)
            now = utcnow()
            with self._db.writing() as session:
                if self._row(session, name, version) is not None:  # another machine's add won
                    raise RegistryError(f"{name}:{version} is already registered")
                if state is ModelState.LIVE:
                    self._retire_live(session, name, version, by, now)
                session.add(
                    RegisteredModel(
                        name=name,
                        version=version,
                        state=state,
                        slot=slot,
                        folder=target.relative_to(self._data_dir).as_posix(),
                        format=format,
                        weights_sha256=weights_sha256,
                        card_json=card_json,
                        parent=parent,
                        added_at=now,
                        added_by=by[:64],
                        state_changed_at=now,
                        state_changed_by=by[:64],
                    )
                )
                _audit(
                    session,
                    now,
                    by,
                    "model-add",
                    f"{name}:{version}",
                    f"state {state.value}; weights sha256 {weights_sha256}",
                )
            entry = self.find(name, version)
            assert entry is not None
            return entry

    # -- changing state ----------------------------------------------------------------

    def set_state(self, ref: str, state: ModelState, *, by: str, reason: str = "") -> list[str]:
        """Put a model in `state`, audited; returns what changed, one line each.

        Making a version live retires the version of the same name that was live (one
        live version per name). The next job made uses the new states: no restart."""
        name, version = parse_ref(ref)
        if version is None:
            raise RegistryError(f"say which version of {name} (NAME:VERSION)")
        now = utcnow()
        changes: list[str] = []
        with self._db.writing() as session:
            row = self._row(session, name, version)
            if row is None:
                raise RegistryError(f"no model {name}:{version} in the registry")
            if row.state is state:
                return []
            if state is ModelState.LIVE:
                changes += self._retire_live(session, name, version, by, now)
            changes.append(f"{name}:{version}: {row.state.value} → {state.value}")
            _audit(
                session,
                now,
                by,
                "model-state",
                f"{name}:{version}",
                f"{row.state.value} → {state.value}" + (f"; {reason}" if reason else ""),
            )
            row.state = state
            row.state_changed_at = now
            row.state_changed_by = by[:64]
        return changes

    def record_comparison(self, ref: str, comparison: dict[str, Any], *, by: str) -> None:
        """Keep a `radassist compare` result on the candidate model `ref` (NAME:VERSION),
        replacing the one it had, audited ("model-compare") in the same transaction: the
        dashboard shows it beside the shadow record when an admin weighs a promotion."""
        name, version = parse_ref(ref)
        if version is None:
            raise RegistryError(f"say which version of {name} (NAME:VERSION)")
        text = json.dumps(comparison, allow_nan=False, sort_keys=True)
        now = utcnow()
        with self._db.writing() as session:
            row = self._row(session, name, version)
            if row is None:
                raise RegistryError(f"no model {name}:{version} in the registry")
            row.comparison_json = text
            baseline = comparison.get("a", {}) if isinstance(comparison.get("a"), dict) else {}
            _audit(
                session,
                now,
                by,
                "model-compare",
                f"{name}:{version}",
                f"against {baseline.get('model', '?')} on {comparison.get('dataset', '?')} "
                f"({comparison.get('split', '?')})",
            )

    @staticmethod
    def _retire_live(
        session: Session, name: str, version: str, by: str, now: datetime
    ) -> list[str]:
        changes = []
        for other in session.scalars(
            select(RegisteredModel).where(
                RegisteredModel.name == name,
                RegisteredModel.version != version,
                RegisteredModel.state == ModelState.LIVE,
            )
        ):
            other.state = ModelState.RETIRED
            other.state_changed_at = now
            other.state_changed_by = by[:64]
            _audit(
                session,
                now,
                by,
                "model-state",
                f"{other.name}:{other.version}",
                f"live → retired; {name}:{version} made live",
            )
            changes.append(f"{other.name}:{other.version}: live → retired")
        # Before the new live version is written: one live version per name is also a
        # unique index, checked statement by statement.
        session.flush()
        return changes


def _audit(session: Session, now: datetime, by: str, action: str, target: str, detail: str) -> None:
    """An audit row in the transaction that makes the change it records."""
    session.add(
        AuditEvent(at=now, username=by[:64], action=action, target=target[:128], detail=detail)
    )


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on `path` (made if absent) while the block runs."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _copy_durably(source: Path, target: Path) -> None:
    """Copy a file, fsync it, and make it read-only (registry files never change)."""
    shutil.copyfile(source, target)
    with target.open("rb") as handle:
        os.fsync(handle.fileno())
    target.chmod(stat.S_IRUSR | stat.S_IRGRP)
