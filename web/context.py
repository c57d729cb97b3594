"""What every request needs (settings, the database, the audit trail, the login
throttle), kept on the app, not in globals."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from flask import current_app
from sqlalchemy.orm import Session, sessionmaker

from assistant.access.audit import AuditTrail
from assistant.access.throttle import AddressThrottle
from assistant.access.users import VerifiedCredentials
from assistant.db import Database
from assistant.settings import Settings


@dataclass(frozen=True)
class WebContext:
    settings: Settings
    db: Database
    audit: AuditTrail
    #: Failed logins per client address (this process).
    throttle: AddressThrottle
    #: Basic credentials that matched in the last minute (no scrypt for each request).
    verified: VerifiedCredentials

    @property
    def sessions(self) -> sessionmaker[Session]:
        return self.db.sessions


def context() -> WebContext:
    """The context of the app handling the current request."""
    return current_app.extensions["radassist"]


def stored_file(relative: str) -> Path | None:
    """A file a database row names, relative to the data folder; None when it is missing
    or the name would lead outside the data folder."""
    root = context().settings.storage.data_dir.resolve()
    path = (root / relative).resolve()
    return path if path.is_relative_to(root) and path.is_file() else None


def load_or_create_secret(path: Path) -> bytes:
    """The session-signing key, made on first start (readable by the owner only)."""
    if path.is_file():
        key = path.read_bytes().strip()
        if len(key) < 32:
            raise ValueError(f"{path}: the secret key is shorter than 32 bytes")
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    return key
