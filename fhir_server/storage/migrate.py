"""Alembic migrations, run programmatically (``selfback migrate`` and on start-up)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from fhir_server.storage.database import Database

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(db: Database) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", db.url.replace("%", "%%"))
    return config


def upgrade(db: Database, revision: str = "head") -> str:
    """Bring the schema to ``revision``; returns the revision now current."""
    config = alembic_config(db)
    with db.writer.connect() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
        connection.commit()
    return current_revision(db)


def current_revision(db: Database) -> str:
    from alembic.runtime.migration import MigrationContext

    with db.reader.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision() or "base"
