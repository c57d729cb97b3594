"""Dashboard users: creation, password checks and the audit trail they leave.

Passwords are kept only as salted scrypt hashes (werkzeug). There is no default user and
no default password: the first start says how to create the admin.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.security import check_password_hash, generate_password_hash

from assistant.db import AuditEvent, Role, User, utcnow

MIN_PASSWORD_LENGTH = 10
#: Checked against when the user does not exist, so a wrong name costs as long as a
#: wrong password and does not reveal which names exist.
_DUMMY_HASH = generate_password_hash("not a password of anyone")


class UserError(ValueError):
    """A user that cannot be created as asked (weak password, name taken, bad role)."""


@dataclass(frozen=True)
class Account:
    """What the web layer keeps of a user: no hash, no session."""

    id: int
    username: str
    role: Role

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN


def add_user(sessions: sessionmaker[Session], username: str, password: str, role: str) -> Account:
    """Create a user; raises UserError if the name is taken or the password weak."""
    username = username.strip()
    if not username or len(username) > 64 or not username.isprintable():
        raise UserError("a user name is 1-64 printable characters")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"a password has at least {MIN_PASSWORD_LENGTH} characters")
    try:
        role_value = Role(role)
    except ValueError:
        raise UserError(f"role must be one of {', '.join(r.value for r in Role)}") from None
    with sessions() as session, session.begin():
        if session.scalar(select(User.id).where(User.username == username)) is not None:
            raise UserError(f"user {username!r} exists already")
        user = User(
            username=username,
            password_hash=generate_password_hash(password),
            role=role_value,
            active=True,
            created_at=utcnow(),
        )
        session.add(user)
        session.flush()
        return Account(user.id, user.username, user.role)


def authenticate(sessions: sessionmaker[Session], username: str, password: str) -> Account | None:
    """The account if the name and password match an active user, else None."""
    with sessions() as session, session.begin():
        user = session.scalar(select(User).where(User.username == username))
        if user is None or not user.active:
            check_password_hash(_DUMMY_HASH, password)
            return None
        if not check_password_hash(user.password_hash, password):
            return None
        user.last_login_at = utcnow()
        return Account(user.id, user.username, user.role)


def load_account(sessions: sessionmaker[Session], user_id: int) -> Account | None:
    with sessions() as session:
        user = session.get(User, user_id)
        if user is None or not user.active:
            return None
        return Account(user.id, user.username, user.role)


def user_count(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count(User.id))) or 0)


def audit(
    sessions: sessionmaker[Session],
    action: str,
    *,
    username: str = "",
    target: str = "",
    remote_addr: str = "",
    detail: str = "",
) -> None:
    """Append one row to the audit trail."""
    with sessions() as session, session.begin():
        session.add(
            AuditEvent(
                at=utcnow(),
                username=username[:64],
                action=action,
                target=target[:128],
                remote_addr=remote_addr[:64],
                detail=detail,
            )
        )
