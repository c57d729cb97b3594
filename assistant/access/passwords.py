"""What makes a password acceptable, and how it is kept (salted scrypt, werkzeug).

The policy: at least 12 characters, not the user name (nor containing it), not one
character repeated or a run like 123456789012, and not in the list of common passwords
shipped with the package (common_passwords.txt).
"""

from __future__ import annotations

import itertools
from functools import cache
from importlib import resources

from werkzeug.security import check_password_hash, generate_password_hash

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 256


class WeakPassword(ValueError):
    """A password the policy refuses, with the reason in words."""


@cache
def _common() -> frozenset[str]:
    text = resources.files("assistant.access").joinpath("common_passwords.txt").read_text()
    return frozenset(
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    )


def _step(a: str, b: str) -> int:
    if a.isdigit() and b.isdigit():  # 9 then 0 goes on a run of digits: 1234567890…
        return {9: -1}.get((int(b) - int(a)) % 10, (int(b) - int(a)) % 10)
    return ord(b) - ord(a)


def _is_run(text: str) -> bool:
    """One character repeated, or each character one more (or less) than the last."""
    steps = {_step(a, b) for a, b in itertools.pairwise(text)}
    return steps <= {0} or steps <= {1} or steps <= {-1}


def check_password_policy(username: str, password: str) -> None:
    """Raise WeakPassword saying why, unless `password` is acceptable for `username`."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(f"a password has at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise WeakPassword(f"a password has at most {MAX_PASSWORD_LENGTH} characters")
    lowered, name = password.lower(), username.strip().lower()
    if not password.strip():
        raise WeakPassword("a password cannot be only spaces")
    if name and (name in lowered or lowered in name):
        raise WeakPassword("a password cannot contain the user name")
    if _is_run(lowered) or len(set(lowered)) <= 3:
        raise WeakPassword("a password cannot be one character repeated or a simple run")
    if lowered in _common():
        raise WeakPassword("that password is on the list of common passwords")


def hash_password(password: str) -> str:
    return generate_password_hash(password)


def password_matches(password_hash: str, password: str) -> bool:
    """The slow check (~0.1 s of scrypt): never call it inside a database transaction."""
    return check_password_hash(password_hash, password)
