"""Engines, sessions and the one `Database` handle a process passes down."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from assistant.db.files import prepare_sqlite_file

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
    """An engine for `url`; SQLite files get their folder (0700) and the file itself (0600,
    before SQLite opens it: its -wal and -shm take its mode) created, and WAL turned on."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        prepare_sqlite_file(url)
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


@dataclass(frozen=True, eq=False)
class Database:
    """A process's database: its engine, a session factory and its writers' lock.

    Built once (by the composition root, `assistant.cli`) and passed to every part that
    reads or writes, so the SCP, the completion sweep, the worker and the outbox of one
    process all queue on the same write lock.
    """

    engine: Engine
    sessions: sessionmaker[Session] = field(init=False)
    write_lock: AbstractContextManager[object] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sessions", make_session_factory(self.engine))
        object.__setattr__(self, "write_lock", make_write_lock(self.engine))

    @classmethod
    def connect(cls, url: str) -> Database:
        """A handle on `url` as it is (no migration: see assistant.db.migrate)."""
        return cls(make_engine(url))

    @contextmanager
    def writing(self) -> Iterator[Session]:
        """A session in a transaction, holding this process's write lock; commits on exit."""
        with self.write_lock, self.sessions() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
