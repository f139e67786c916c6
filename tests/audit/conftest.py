"""The audit tests reuse the authorization tests' server, clients and accounts, and share
a fresh database per test for the trail's own tests."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from fhir_server.events.handlers import HANDLERS
from fhir_server.storage.database import open_database
from fhir_server.storage.migrate import upgrade
from fhir_server.storage.repository import Repository
from tests.auth.conftest import smart
from tests.conftest import drop_database, fresh_database_url

__all__ = ["smart"]


@pytest.fixture
def own_database(tmp_path: Path) -> Iterator[str]:
    url = fresh_database_url(tmp_path, "audit")
    yield url
    drop_database(url)


@pytest.fixture
def repository(own_database: str) -> Iterator[Repository]:
    db = open_database(own_database)
    upgrade(db)
    # The event types the real server uses: AuditEvent writes must leave no outbox rows.
    yield Repository(db, event_types=frozenset(HANDLERS))
    db.dispose()
