"""Dashboard users: creation, password checks with lockout, and their management.

Passwords are kept only as salted scrypt hashes. A check reads the user in one short
transaction, hashes with no transaction open (scrypt takes ~0.1 s: inside a SQLite
write transaction it would hold up every C-STORE), then records the outcome in another.
There is no default user and no default password: the first start says how to create
the admin.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from assistant.access.account import Account
from assistant.access.passwords import (
    WeakPassword,
    check_password_policy,
    hash_password,
    password_matches,
)
from assistant.access.sessions import end_user_sessions
from assistant.db import Database, Role, User, utcnow

#: Checked against when the user does not exist or is disabled, so a wrong name costs as
#: long as a wrong password and does not reveal which names exist.
_DUMMY_HASH = hash_password("not a password of anyone, ever")


class UserError(ValueError):
    """A user that cannot be created or changed as asked (weak password, name taken or
    unknown, bad role)."""


@dataclass(frozen=True)
class UserView:
    """A user as `radassist user list` and the admin page show it."""

    username: str
    role: str
    active: bool
    created_at: datetime
    last_login_at: datetime | None
    failed_logins: int
    locked_until: datetime | None


class LoginOutcome(enum.StrEnum):
    OK = "ok"
    WRONG = "wrong"  # unknown name or wrong password
    DISABLED = "disabled"
    LOCKED = "locked"


@dataclass(frozen=True)
class LoginResult:
    outcome: LoginOutcome
    account: Account | None = None
    #: Set when this failure locked the account (until then).
    locked_now_until: datetime | None = None


@dataclass(frozen=True)
class Lockout:
    """After `max_failures` wrong passwords in a row an account is refused for `minutes`."""

    max_failures: int = 10
    minutes: float = 15.0


def _check_name(username: str) -> str:
    username = username.strip()
    if not username or len(username) > 64 or not username.isprintable():
        raise UserError("a user name is 1-64 printable characters")
    return username


def _role(role: str) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise UserError(f"role must be one of {', '.join(r.value for r in Role)}") from None


def add_user(db: Database, username: str, password: str, role: str) -> Account:
    """Create a user; raises UserError if the name is taken or the password weak."""
    username = _check_name(username)
    role_value = _role(role)
    try:
        check_password_policy(username, password)
    except WeakPassword as exc:
        raise UserError(str(exc)) from None
    password_hash = hash_password(password)  # before the transaction, not in it
    with db.writing() as session:
        if session.scalar(select(User.id).where(User.username == username)) is not None:
            raise UserError(f"user {username!r} exists already")
        user = User(
            username=username,
            password_hash=password_hash,
            role=role_value,
            active=True,
            created_at=utcnow(),
            failed_logins=0,
        )
        session.add(user)
        session.flush()
        return Account(user.id, user.username, user.role)


class VerifiedCredentials:
    """Credentials that matched recently, so an API client sending HTTP Basic on every
    request is not charged a scrypt each time. Keyed by an HMAC of name and password with
    a per-process key (nothing reversible is kept), valid while the stored hash is the
    one they were checked against."""

    def __init__(self, seconds: float = 60.0) -> None:
        self._seconds = seconds
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._entries: dict[bytes, tuple[str, float]] = {}

    def _digest(self, username: str, password: str) -> bytes:
        message = f"{username}\0{password}".encode("utf-8", "surrogatepass")
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def matches(self, username: str, password: str, password_hash: str) -> bool:
        with self._lock:
            entry = self._entries.get(self._digest(username, password))
        return (
            entry is not None
            and hmac.compare_digest(entry[0], password_hash)
            and time.monotonic() < entry[1]
        )

    def remember(self, username: str, password: str, password_hash: str) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._entries) > 10_000:  # bounded: drop what has expired
                self._entries = {k: v for k, v in self._entries.items() if v[1] > now}
            self._entries[self._digest(username, password)] = (password_hash, now + self._seconds)


def authenticate(
    db: Database,
    username: str,
    password: str,
    lockout: Lockout = Lockout(),
    verified: VerifiedCredentials | None = None,
) -> LoginResult:
    """Check a user name and password; count failures and lock the account after
    `lockout.max_failures` in a row. No transaction is open while the password hashes."""
    now = utcnow()
    with db.sessions() as session:
        row = session.execute(
            select(
                User.id,
                User.username,
                User.role,
                User.password_hash,
                User.active,
                User.failed_logins,
                User.locked_until,
                User.last_login_at,
            ).where(User.username == username)
        ).first()
    if row is None or not row.active:
        password_matches(_DUMMY_HASH, password)
        return LoginResult(LoginOutcome.WRONG if row is None else LoginOutcome.DISABLED)
    if row.locked_until is not None and row.locked_until > now:
        password_matches(_DUMMY_HASH, password)  # as long as any answer: no name leaks
        return LoginResult(LoginOutcome.LOCKED)
    if verified is not None and verified.matches(username, password, row.password_hash):
        ok = True
    else:
        ok = password_matches(row.password_hash, password)
        if ok and verified is not None:
            verified.remember(username, password, row.password_hash)
    account = Account(row.id, row.username, row.role)
    if ok:
        stale = row.last_login_at is None or now - row.last_login_at > timedelta(minutes=1)
        if row.failed_logins or row.locked_until is not None or stale:
            with db.writing() as session:
                session.execute(
                    update(User)
                    .where(User.id == row.id)
                    .values(failed_logins=0, locked_until=None, last_login_at=now)
                )
        return LoginResult(LoginOutcome.OK, account)
    with db.writing() as session:
        failures = (session.scalar(select(User.failed_logins).where(User.id == row.id)) or 0) + 1
        locked_until = None
        if failures >= lockout.max_failures:
            locked_until = now + timedelta(minutes=lockout.minutes)
            failures = 0
        session.execute(
            update(User)
            .where(User.id == row.id)
            .values(failed_logins=failures, locked_until=locked_until)
        )
    return LoginResult(LoginOutcome.WRONG, locked_now_until=locked_until)


def load_account(db: Database, user_id: int) -> Account | None:
    with db.sessions() as session:
        user = session.get(User, user_id)
        if user is None or not user.active:
            return None
        return Account(user.id, user.username, user.role)


def user_count(db: Database) -> int:
    with db.sessions() as session:
        return int(session.scalar(select(func.count(User.id))) or 0)


def list_users(db: Database) -> list[UserView]:
    with db.sessions() as session:
        return [
            UserView(
                u.username,
                u.role.value,
                u.active,
                u.created_at,
                u.last_login_at,
                u.failed_logins,
                u.locked_until,
            )
            for u in session.scalars(select(User).order_by(User.username))
        ]


def _user_id(session: Session, username: str) -> int:
    user_id = session.scalar(select(User.id).where(User.username == username))
    if user_id is None:
        raise UserError(f"no user {username!r}")
    return int(user_id)


def set_active(db: Database, username: str, active: bool) -> None:
    """Disable a user (its sessions end) or enable it again (and lift any lockout)."""
    now = utcnow()
    with db.writing() as session:
        user_id = _user_id(session, username)
        values: dict[str, object] = {"active": active}
        if active:
            values.update(failed_logins=0, locked_until=None)
        session.execute(update(User).where(User.id == user_id).values(**values))
        if not active:
            end_user_sessions(session, user_id, now)


def set_role(db: Database, username: str, role: str) -> None:
    """Give a user another role; its sessions end (they were granted under the old one)."""
    role_value = _role(role)
    now = utcnow()
    with db.writing() as session:
        user_id = _user_id(session, username)
        session.execute(update(User).where(User.id == user_id).values(role=role_value))
        end_user_sessions(session, user_id, now)


def reset_password(db: Database, username: str, password: str) -> None:
    """Set a new password (policy checked); every session of the user ends."""
    try:
        check_password_policy(username, password)
    except WeakPassword as exc:
        raise UserError(str(exc)) from None
    password_hash = hash_password(password)
    now = utcnow()
    with db.writing() as session:
        user_id = _user_id(session, username)
        session.execute(
            update(User)
            .where(User.id == user_id)
            .values(
                password_hash=password_hash,
                password_changed_at=now,
                failed_logins=0,
                locked_until=None,
            )
        )
        end_user_sessions(session, user_id, now)


def delete_user(db: Database, username: str) -> None:
    """Remove a user and its sessions. Its audit rows stay (they name it)."""
    with db.writing() as session:
        user_id = _user_id(session, username)
        end_user_sessions(session, user_id, utcnow())
        session.execute(delete(User).where(User.id == user_id))
