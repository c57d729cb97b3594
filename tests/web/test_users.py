"""`radassist user add`: hashed passwords, no weak ones, no duplicates."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from assistant.cli import main
from assistant.db import Role, User


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RADASSIST_STORAGE__DATA_DIR", str(tmp_path / "var"))
    assert main(["db", "upgrade"]) == 0
    return tmp_path / "var"


def add(monkeypatch: pytest.MonkeyPatch, *args: str, password: str) -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
    return main(["user", "add", *args, "--password-stdin"])


def test_user_add(data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    assert add(monkeypatch, "alice", "--role", "admin", password="a long enough secret") == 0
    assert "user alice (admin) created" in capsys.readouterr().out
    engine = create_engine(f"sqlite:///{data_dir / 'radassist.db'}")
    with engine.connect() as connection:
        user = connection.execute(select(User.username, User.role, User.password_hash)).one()
    engine.dispose()
    assert user.role == Role.ADMIN
    assert "a long enough secret" not in user.password_hash
    assert user.password_hash.startswith("scrypt:")


def test_user_add_refuses_weak_passwords_and_duplicates(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    assert add(monkeypatch, "bob", "--role", "viewer", password="short") == 1
    assert "at least 12 characters" in capsys.readouterr().err
    assert add(monkeypatch, "bob", "--role", "viewer", password="long enough pass") == 0
    assert add(monkeypatch, "bob", "--role", "admin", password="another long one") == 1
    assert "exists already" in capsys.readouterr().err
