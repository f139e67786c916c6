"""The registry searches use (search_sql.SearchRegistryCache, through
Repository.search_registry): a custom SearchParameter written through this process is in
force in its next search; one written through another process (here: a second Repository
with its own engines on the same database) within the cache's ttl, on a controlled clock;
writes always index with the parameters in force, whatever the search cache holds.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from search_db import drop_postgres, postgres_url
from sqlalchemy import select

from fhir_server.interactions.write import write_version
from fhir_server.storage.database import open_database
from fhir_server.storage.migrate import upgrade
from fhir_server.storage.repository import Repository, WriteSession
from fhir_server.storage.schema import resource, sp_string

TTL = 0.5

NICKNAME = {
    "resourceType": "SearchParameter",
    "id": "patient-nickname",
    "url": "http://example.org/fhir/SearchParameter/patient-nickname",
    "name": "nickname",
    "status": "active",
    "description": "A patient's nickname",
    "code": "nickname",
    "base": ["Patient"],
    "type": "string",
    "expression": "Patient.name.where(use='nickname').given",
}


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'registry.sqlite'}"
        return
    found = postgres_url()
    if found is None:
        pytest.skip("PostgreSQL is not reachable")
    try:
        yield found
    finally:
        drop_postgres(found)


def put(repo: Repository, body: dict[str, Any], now: int = 1) -> None:
    def work(session: WriteSession) -> None:
        previous = session.current(body["resourceType"], body["id"])
        write_version(session, body, id=body["id"], now=now, method="PUT", previous=previous)

    repo.write(work)


def knows_nickname(repo: Repository) -> bool:
    with repo.reading() as conn:
        return repo.search_registry(conn).get("Patient", "nickname") is not None


def test_same_process_at_once_other_process_within_the_ttl(url: str) -> None:
    clock_a, clock_b = Clock(), Clock()
    db_a, db_b = open_database(url), open_database(url)
    try:
        upgrade(db_a)
        here = Repository(db_a, search_registry_ttl=TTL, clock=clock_a)
        there = Repository(db_b, search_registry_ttl=TTL, clock=clock_b)
        assert not knows_nickname(here) and not knows_nickname(there)

        put(here, NICKNAME)
        # the writing process: from its next search on, the clock not moved at all
        assert knows_nickname(here)
        # the other process: its cached answer stands until the ttl has passed ...
        clock_b.now += TTL * 0.9
        assert not knows_nickname(there)
        # ... and not a moment longer
        clock_b.now += TTL * 0.1
        assert knows_nickname(there)

        # retired through the other process: there at once, here after the ttl
        put(there, {**NICKNAME, "status": "retired"}, now=2)
        assert not knows_nickname(there)
        assert knows_nickname(here)
        clock_a.now += TTL
        assert not knows_nickname(here)
    finally:
        db_a.dispose()
        db_b.dispose()


def test_writes_index_with_the_parameters_in_force_not_the_cached_ones(url: str) -> None:
    clock = Clock()
    db_a, db_b = open_database(url), open_database(url)
    try:
        upgrade(db_a)
        here = Repository(db_a, search_registry_ttl=TTL, clock=clock)
        there = Repository(db_b, search_registry_ttl=TTL, clock=clock)
        assert not knows_nickname(there)  # its search cache now holds the core registry
        put(here, NICKNAME)
        patient = {
            "resourceType": "Patient",
            "id": "hans",
            "name": [{"use": "nickname", "given": ["Hansi"]}],
        }
        put(there, patient)
        assert not knows_nickname(there)  # the search cache is within its ttl ...
        with db_b.reader.connect() as conn:  # ... but the write used the new parameter
            rows = conn.execute(
                select(sp_string.c.value_norm)
                .join(resource, resource.c.pk == sp_string.c.res_pk)
                .where(resource.c.id == "hans", sp_string.c.param == "nickname")
            ).all()
        assert [r.value_norm for r in rows] == ["hansi"]
    finally:
        db_a.dispose()
        db_b.dispose()
