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
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from search_db import drop_postgres, postgres_url
from sqlalchemy import func, insert, inspect, select

from fhir_server.storage import schema
from fhir_server.storage.database import Database, open_database
from fhir_server.storage.migrate import alembic_config, upgrade


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


def _index_columns(db: Database, table: str, name: str) -> list[str]:
    with db.reader.connect() as conn:
        found = {i["name"]: i["column_names"] for i in inspect(conn).get_indexes(table)}
    return found[name]


def _statistics(db: Database) -> set[str]:
    if db.dialect != "postgresql":
        return set()
    with db.reader.connect() as conn:
        return set(conn.exec_driver_sql("SELECT stxname FROM pg_statistic_ext").scalars())


def _downgrade(db: Database, revision: str) -> None:
    config = alembic_config(db)
    with db.writer.connect() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)
        connection.commit()


def test_0005_search_indexes_down_and_up_on_a_populated_database(migrated_url: str) -> None:
    """0005 (composites from the index, sp_token statistics) applies over data written at
    0004, undoes itself, and applies again; the rows are untouched throughout."""
    db = open_database(migrated_url)
    try:
        assert upgrade(db, "0004") == "0004"
        with db.writer.begin() as conn:
            conn.execute(
                insert(schema.sp_token),
                [
                    {"res_pk": pk, "rtype": "Observation", "param": "code", "code": "c", "grp": 0}
                    for pk in range(1, 51)
                ],
            )
            conn.execute(
                insert(schema.sp_quantity),
                [
                    {"res_pk": pk, "rtype": "Observation", "param": "v#1", "lo": 1.0, "hi": 1.0}
                    for pk in range(1, 51)
                ],
            )

        assert upgrade(db, "0005") == "0005"
        assert _index_columns(db, "sp_token", "ix_sp_token_value")[-2:] == ["res_pk", "grp"]
        assert _index_columns(db, "sp_quantity", "ix_sp_quantity_res") == [
            "res_pk",
            "param",
            "grp",
            "lo",
            "hi",
        ]
        if db.dialect == "postgresql":
            assert "st_sp_token_rtype_param_code" in _statistics(db)

        _downgrade(db, "0004")
        assert _index_columns(db, "sp_token", "ix_sp_token_value")[-1] == "res_pk"
        assert _index_columns(db, "sp_quantity", "ix_sp_quantity_res") == ["res_pk"]
        assert "st_sp_token_rtype_param_code" not in _statistics(db)

        assert upgrade(db, "0005") == "0005"
        with db.reader.connect() as conn:
            for table in (schema.sp_token, schema.sp_quantity):
                assert conn.execute(select(func.count()).select_from(table)).scalar_one() == 50
    finally:
        db.dispose()


def test_fresh_metadata_has_the_statistics_of_the_migrations(migrated_url: str) -> None:
    """Databases made from the metadata (tests, tools) get the same statistics objects as
    migrated ones (schema.py listens for sp_token's creation)."""
    db = open_database(migrated_url)
    try:
        schema.metadata.create_all(db.writer, tables=[schema.sp_token])
        expected = {"st_sp_token_rtype_param_code"} if db.dialect == "postgresql" else set()
        assert _statistics(db) == expected
    finally:
        db.dispose()
