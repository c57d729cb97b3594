"""Engines and sessions. One engine per process, built from Settings, passed down."""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

#: How long a SQLite writer waits for another to finish before failing (the SCP answers
#: Out of Resources then, and the sender retries).
SQLITE_BUSY_TIMEOUT_MS = 30_000


def utcnow() -> datetime:
    """Naive UTC now: the one time convention of the database."""
    return datetime.now(UTC).replace(tzinfo=None)


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    # WAL: readers (the dashboard) never block the SCP's writers. synchronous=NORMAL: a
    # commit survives a crash of the process, not of the machine; the instance files
    # are fsync'd before Success, and after an unclean stop the receiver re-records any
    # file whose row was lost (Ingest.record_unrecorded_files). A FULL commit would add
    # ~0.9 ms to every C-STORE for nothing the files do not already guarantee.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()
    # Let SQLAlchemy, not the sqlite3 module, say when transactions begin (see below).
    dbapi_connection.isolation_level = None


def _begin_immediate(connection) -> None:  # type: ignore[no-untyped-def]
    # Take the write lock when a transaction starts: a deferred transaction that reads
    # and then writes fails at once with "database is locked" if another process wrote
    # in between, instead of waiting its turn. This also makes SAVEPOINTs work.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite files get their folder created and WAL turned on."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _begin_immediate)
        return engine
    return create_engine(url, pool_pre_ping=True)


def make_write_lock(engine: Engine) -> AbstractContextManager[object]:
    """A lock for this process's writers: a real one for SQLite, a no-op otherwise.

    SQLite allows one writer at a time; a writer that finds the database locked sleeps
    on SQLite's back-off schedule (up to 100 ms a try). Queueing our own threads on a
    lock first hands the database from one to the next at once. Other processes still
    meet the busy timeout; PostgreSQL needs neither.
    """
    if engine.dialect.name == "sqlite":
        return threading.Lock()
    return nullcontext()


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
