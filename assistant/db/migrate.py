"""Apply Alembic migrations from code: `radassist db upgrade`, start-up and tests."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

import migrations

if TYPE_CHECKING:
    from assistant.db.session import Database


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at `url` up to `revision` (creating the SQLite file if needed)."""
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


def is_up_to_date(engine: Engine) -> bool:
    """True when the database is at the newest revision this code knows."""
    head = ScriptDirectory.from_config(alembic_config(str(engine.url))).get_current_head()
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision() == head


class DatabaseNotMigrated(RuntimeError):
    """The database is missing tables or is behind the code: run `radassist db upgrade`."""


def migrated_engine(url: str) -> Engine:
    """An engine for `url`, refusing a database that is not at the current schema."""
    from assistant.db.session import make_engine

    engine = make_engine(url)
    if not is_up_to_date(engine):
        engine.dispose()
        raise DatabaseNotMigrated(
            f"the database {engine.url!r} is not at the current schema: run `radassist db upgrade`"
        )
    return engine


def migrated_database(url: str) -> Database:
    """The Database handle for `url`, refusing a database not at the current schema."""
    from assistant.db.session import Database

    return Database(migrated_engine(url))
