"""Round trips between server and PostgreSQL per search, counted from libpq's own trace of
the messages the client sends (each ``Query`` or ``Sync`` waits for the server's answer).

Before: BEGIN, the custom SearchParameter digest, the page, the bodies, COMMIT -- five
for the app's query (docs/BENCHMARKS.md, "Search"). Now the digest is asked at most every
SEARCH_REGISTRY_TTL_S per process, the page carries the bodies, and a one-statement search
runs in autocommit: one. Statements that must agree (the page and its total, includes)
share one REPEATABLE READ snapshot: BEGIN and COMMIT around them.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import Any, TextIO

import pytest
from psycopg import pq
from search_db import drop_postgres, postgres_url
from sqlalchemy import event, func, insert, select

from fhir_server.interactions.search import search_bundle
from fhir_server.interactions.write import write_version
from fhir_server.storage.database import open_database, snapshot
from fhir_server.storage.migrate import upgrade
from fhir_server.storage.repository import Repository, WriteSession
from fhir_server.storage.schema import resource

TTL = 0.5
# The shape of the app's query (a step-count code would bring in the programme profile's
# write-time checks, which have nothing to do with search).
APP_QUERY = [
    ("subject", "Patient/p1"),
    ("code", "http://loinc.org|8867-4"),
    ("date", "ge2025-05-31"),
    ("_sort", "-date"),
    ("_count", "50"),
]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Trips:
    """Counts what the client sends on the search engine's connections (PQtrace)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.sent: list[str] = []

    def take(self) -> int:
        self.out.flush()
        self.out.seek(0)
        lines = self.out.read().splitlines()
        self.out.seek(0)
        self.out.truncate()
        # With timestamps suppressed: direction, length, message type, contents.
        sent = [line.split("\t") for line in lines if line.startswith("F\t")]
        self.sent = [fields[3][:60] for fields in sent if fields[2] in ("Query", "Parse")]
        return sum(1 for fields in sent if fields[2] in ("Query", "Sync"))


@pytest.fixture
def searched() -> Iterator[tuple[Repository, Clock, Trips]]:
    url = postgres_url()
    if url is None:
        pytest.skip("PostgreSQL is not reachable")
    db = open_database(url)
    clock = Clock()
    try:
        upgrade(db)
        repo = Repository(db, search_registry_ttl=TTL, clock=clock)
        _load(repo)
        assert db.point_reader is not None
        db.point_reader.dispose()  # connections made from now on are traced
        with tempfile.TemporaryFile("w+") as out:

            @event.listens_for(db.point_reader, "connect")
            def _trace(dbapi_connection: Any, _record: Any) -> None:
                dbapi_connection.pgconn.trace(out.fileno())
                dbapi_connection.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)

            yield repo, clock, Trips(out)
    finally:
        db.dispose()
        drop_postgres(url)


def _load(repo: Repository) -> None:
    def work(session: WriteSession) -> None:
        write_version(
            session,
            {"resourceType": "Patient", "id": "p1", "gender": "female"},
            id="p1",
            now=1,
            method="PUT",
            previous=None,
        )
        for day in range(1, 6):
            observation = {
                "resourceType": "Observation",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                "subject": {"reference": "Patient/p1"},
                "effectiveDateTime": f"2025-06-0{day}",
                "valueQuantity": {"value": 60 + day, "unit": "/min"},
            }
            oid = f"o{day}"
            write_version(session, observation, id=oid, now=1, method="PUT", previous=None)

    repo.write(work)


def search(repo: Repository, params: list[tuple[str, str]]) -> bytes:
    with repo.reading() as conn:
        return search_bundle(
            conn,
            "Observation",
            params,
            base_url="http://x/fhir",
            strict=True,
            registry=repo.search_registry(conn),
        )


def test_round_trips_per_search(searched: tuple[Repository, Clock, Trips]) -> None:
    repo, clock, trips = searched
    search(repo, APP_QUERY)  # opens the pooled connection and checks the SearchParameters
    trips.take()

    assert b'"total":5' in search(repo, APP_QUERY)
    assert trips.take() == 1, trips.sent  # the page with its bodies, in autocommit
    clock.now += TTL
    search(repo, APP_QUERY)
    assert trips.take() == 2, trips.sent  # + the SearchParameter digest, once per ttl

    search(repo, [*APP_QUERY, ("_total", "accurate")])
    assert trips.take() == 4, trips.sent  # BEGIN, page, count, COMMIT: one snapshot
    assert "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY" in trips.sent[0]
    search(repo, [*APP_QUERY, ("_include", "Observation:patient")])
    # BEGIN, page, the include (its two reference forms in one statement), their bodies,
    # COMMIT
    assert trips.take() == 5, trips.sent


def _patients(conn: Any) -> int:
    return int(conn.execute(select(func.count()).where(resource.c.rtype == "Patient")).scalar())


def test_statements_in_a_snapshot_agree(searched: tuple[Repository, Clock, Trips]) -> None:
    """Within database.snapshot a write committed meanwhile is not seen (REPEATABLE READ);
    outside it, in autocommit, the next statement sees it."""
    repo, _, _ = searched
    with repo.reading() as conn:
        with snapshot(conn):
            before = _patients(conn)
            with repo.db.writer.begin() as other:
                other.execute(
                    insert(resource).values(
                        rtype="Patient",
                        id="p2",
                        version=1,
                        last_updated=2,
                        deleted=False,
                        body=b"{}",
                    )
                )
            assert _patients(conn) == before
        assert _patients(conn) == before + 1


def test_a_failed_snapshot_leaves_the_connection_clean(
    searched: tuple[Repository, Clock, Trips],
) -> None:
    repo, _, _ = searched
    with repo.reading() as conn:
        with pytest.raises(ZeroDivisionError), snapshot(conn):
            _patients(conn)
            raise ZeroDivisionError
        status = conn.connection.driver_connection.info.transaction_status
        assert status == pq.TransactionStatus.IDLE
        assert _patients(conn) == 1
