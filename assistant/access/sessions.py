"""Browser sessions kept on the server: the cookie carries a random id, the table its
sha256, the user, when it began and was last used. Logout, a password change, disabling
the user or an admin ends a session for good; an idle or too old one ends by itself."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from assistant.access.account import Account
from assistant.db import Database, User, WebSession, utcnow

#: last_seen_at is written at most this often per session (not on every request).
TOUCH_EVERY = timedelta(minutes=1)


@dataclass(frozen=True)
class SessionLimits:
    idle: timedelta = timedelta(minutes=60)
    absolute: timedelta = timedelta(hours=12)


def _key(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def start_session(db: Database, user_id: int, remote_addr: str, user_agent: str) -> str:
    """A new session for `user_id`; returns the token the browser keeps."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    with db.writing() as session:
        session.add(
            WebSession(
                id_sha256=_key(token),
                user_id=user_id,
                created_at=now,
                last_seen_at=now,
                revoked_at=None,
                remote_addr=remote_addr[:64],
                user_agent=user_agent[:256],
            )
        )
    return token


def session_user(
    db: Database, token: str, limits: SessionLimits, *, touch: bool = True
) -> Account | None:
    """The user of a live session, or None (unknown, ended, idle or too old, user
    disabled, password changed since). `touch=False` for what a page does by itself (the
    worklist's refresh): it does not count as use, so an unattended screen still ends."""
    if not token:
        return None
    now = utcnow()
    key = _key(token)
    with db.sessions() as session:
        row = session.execute(
            select(
                WebSession.created_at,
                WebSession.last_seen_at,
                WebSession.revoked_at,
                User.id,
                User.username,
                User.role,
                User.active,
                User.password_changed_at,
            )
            .join(User, User.id == WebSession.user_id)
            .where(WebSession.id_sha256 == key)
        ).first()
    if row is None or row.revoked_at is not None or not row.active:
        return None
    if row.password_changed_at is not None and row.created_at < row.password_changed_at:
        return None
    if now - row.last_seen_at > limits.idle or now - row.created_at > limits.absolute:
        end_session(db, token)
        return None
    if touch and now - row.last_seen_at > TOUCH_EVERY:
        with db.writing() as session:
            session.execute(
                update(WebSession).where(WebSession.id_sha256 == key).values(last_seen_at=now)
            )
    return Account(row.id, row.username, row.role)


def end_session(db: Database, token: str) -> None:
    with db.writing() as session:
        session.execute(
            update(WebSession)
            .where(WebSession.id_sha256 == _key(token), WebSession.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )


def end_user_sessions(session: Session, user_id: int, now: datetime) -> int:
    """End every session of a user, in the caller's transaction; returns how many."""
    result = session.execute(
        update(WebSession)
        .where(WebSession.user_id == user_id, WebSession.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return int(getattr(result, "rowcount", 0) or 0)
