"""The Alembic migrations build exactly the schema ``fhir_server.storage.schema`` describes:
``alembic`` autogenerate, compared against a database migrated to head, finds nothing to
add, drop or alter in its tables -- ``resource``, ``resource_history`` and the search index
tables: columns, types, nullability and indexes -- on SQLite and PostgreSQL.

Tables other rooms define (auth, outbox) are compared by their own tests; they are left out
here so this one names the schema it guards.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from search_db import drop_postgres, postgres_url

from fhir_server.storage import schema
from fhir_server.storage.database import open_database
from fhir_server.storage.migrate import upgrade


@pytest.fixture(params=["sqlite", "postgresql"])
def migrated_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrated.sqlite'}"
        return
    url = postgres_url()
    if url is None:
        pytest.skip("PostgreSQL is not reachable")
    try:
        yield url
    finally:
        drop_postgres(url)


CORE_TABLES = frozenset({"resource", "resource_history", *(name for name in schema.INDEX_TABLES)})


def _in_schema(obj: Any, name: str | None, kind: str, reflected: bool, compare_to: Any) -> bool:
    table = obj if kind == "table" else getattr(obj, "table", None)
    return getattr(table, "name", name) in CORE_TABLES


def test_core_tables_listed() -> None:
    assert set(schema.metadata.tables) >= CORE_TABLES


def test_migrations_match_the_schema(migrated_url: str) -> None:
    db = open_database(migrated_url)
    try:
        assert upgrade(db) != "base"
        with db.reader.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "compare_type": True,
                    "compare_server_default": False,
                    "include_object": _in_schema,
                },
            )
            assert compare_metadata(context, schema.metadata) == []
    finally:
        db.dispose()
