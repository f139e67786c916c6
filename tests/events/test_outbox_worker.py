"""The outbox worker's rules: exactly-once effects, retry with back-off, give up after
max_attempts without blocking later events, and no event for uninteresting types."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from fhir_server.events.outbox import OutboxEvent
from fhir_server.events.tables import outbox
from fhir_server.events.worker import OutboxWorker
from fhir_server.interactions.create import create
from fhir_server.storage.database import Database, open_database
from fhir_server.storage.migrate import upgrade
from fhir_server.storage.repository import Repository, WriteSession
from tests.conftest import drop_database, fresh_database_url

T0 = 1_800_000_000_000_000


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    url = fresh_database_url(tmp_path, "outbox")
    database = open_database(url)
    upgrade(database)
    yield database
    database.dispose()
    drop_database(url)


def rows(db: Database) -> list[object]:
    with db.reader.connect() as conn:
        return list(conn.execute(select(outbox).order_by(outbox.c.id)).all())


def post(repo: Repository, rtype: str, now: int) -> str:
    outcome = repo.write(
        lambda s: create(
            s,
            rtype,
            {
                "resourceType": rtype,
                **({"status": "final", "code": {"text": "x"}} if rtype == "Observation" else {}),
            },
            now=now,
        )
    )
    assert outcome.stored is not None
    return outcome.stored.id


def test_only_interesting_types_leave_events_and_effects_commit_with_the_mark(db: Database) -> None:
    seen: list[str] = []

    def handler(session: WriteSession, event: OutboxEvent, now: int) -> str:
        seen.append(event.res_id)
        create(
            session,
            "Observation",
            {"resourceType": "Observation", "status": "final", "code": {"text": event.res_id}},
            now=now,
        )
        return "ok"

    repo = Repository(db, event_types=frozenset({"Patient"}))
    worker = OutboxWorker(repo, {"Patient": handler})
    patient = post(repo, "Patient", T0)
    post(repo, "Observation", T0)
    assert len(rows(db)) == 1
    assert worker.run_once(T0 + 1) == 1
    assert worker.run_once(T0 + 2) == 0  # done: never handled twice
    assert seen == [patient]
    (row,) = rows(db)
    assert row.done_at is not None and row.last_error == "ok"  # type: ignore[attr-defined]


def test_failures_retry_with_backoff_then_give_up_without_blocking(db: Database) -> None:
    calls: list[str] = []

    def flaky(session: WriteSession, event: OutboxEvent, now: int) -> None:
        calls.append(event.res_id)
        create(
            session,
            "Observation",
            {"resourceType": "Observation", "status": "final", "code": {"text": "partial"}},
            now=now,
        )
        raise RuntimeError("downstream unavailable")

    repo = Repository(db, event_types=frozenset({"Patient"}))
    worker = OutboxWorker(repo, {"Patient": flaky}, max_attempts=2)
    post(repo, "Patient", T0)
    worker.run_once(T0 + 1)
    (row,) = rows(db)
    assert row.attempts == 1 and row.done_at is None  # type: ignore[attr-defined]
    assert "downstream unavailable" in row.last_error  # type: ignore[attr-defined]
    assert row.available_at > T0 + 1  # type: ignore[attr-defined]
    # The failed attempt's own writes rolled back with it.
    with db.reader.connect() as conn:
        from fhir_server.storage.schema import resource

        assert (
            conn.execute(select(resource.c.id).where(resource.c.rtype == "Observation")).all() == []
        )
    assert worker.run_once(T0 + 2) == 0  # backing off
    worker.run_once(row.available_at + 1)  # type: ignore[attr-defined]
    (row,) = rows(db)
    assert row.attempts == 2 and row.done_at is not None  # type: ignore[attr-defined]
    assert len(calls) == 2


def test_an_expired_claim_is_taken_over(db: Database) -> None:
    repo = Repository(db, event_types=frozenset({"Patient"}))
    handled: list[int] = []
    first = OutboxWorker(
        repo, {"Patient": lambda s, e, n: handled.append(e.id) or None}, lease_seconds=10
    )
    post(repo, "Patient", T0)
    from fhir_server.events.outbox import claim

    claimed = repo.write(lambda s: claim(s.conn, "crashed-worker", T0, 10_000_000, 10))
    assert len(claimed) == 1
    assert first.run_once(T0 + 5_000_000) == 0  # still leased to the crashed worker
    assert first.run_once(T0 + 11_000_000) == 1  # lease over: taken over
    assert handled == [claimed[0].id]
