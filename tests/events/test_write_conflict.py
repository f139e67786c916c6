"""A write that cannot get the database's write lock in time is refused with 409 and
leaves nothing behind (http.html: 409 Conflict; house rule: never a 500)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from fhir_server.errors import FhirError
from fhir_server.interactions.create import create
from fhir_server.storage.database import open_database
from fhir_server.storage.migrate import upgrade
from fhir_server.storage.repository import Repository


def test_sqlite_write_lock_timeout_is_409(tmp_path: Path) -> None:
    path = tmp_path / "busy.sqlite"
    db = open_database(f"sqlite:///{path}", busy_timeout_ms=200)
    upgrade(db)
    repo = Repository(db)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    try:
        with pytest.raises(FhirError) as caught:
            repo.write(lambda s: create(s, "Patient", {"resourceType": "Patient"}, now=1))
        assert caught.value.status == 409
        assert caught.value.issues[0].code == "conflict"
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert (
        repo.write(lambda s: create(s, "Patient", {"resourceType": "Patient"}, now=2)).status == 201
    )
    with db.reader.connect() as conn:
        from sqlalchemy import func, select

        from fhir_server.storage.schema import resource

        assert conn.execute(select(func.count()).select_from(resource)).scalar_one() == 1
    db.dispose()
