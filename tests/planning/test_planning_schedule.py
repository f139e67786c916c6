"""The weekly plan schedule and the planning triggers, with the worker's clock moved by hand
(``OutboxWorker.run_once(now=...)``): each week boundary plans once, across worker
restarts; a check-in plans next week ahead of the boundary, which then plans nothing;
re-running everything due writes nothing. On SQLite and PostgreSQL (``-m db``)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from fhir_server.events.handlers import HANDLERS, TOPIC_HANDLERS
from fhir_server.events.tables import outbox
from fhir_server.events.worker import OutboxWorker
from fhir_server.interactions.transaction import BundleOptions, process_bundle
from fhir_server.interactions.update import update
from fhir_server.planning import conventions as fc
from fhir_server.planning.weeks import start_of_day_us
from fhir_server.storage.database import Database, open_database
from fhir_server.storage.migrate import upgrade
from fhir_server.storage.repository import Repository
from fhir_server.storage.schema import resource, resource_history
from tests.conftest import drop_database, fresh_database_url
from tests.planning.enrolment import enrolment, exercise_feedback, transaction, weekly_response

START = date(2026, 3, 2)  # a Monday; plan week k starts START + 7(k - 1)
HOUR = 3_600_000_000


@pytest.fixture
def own_database(tmp_path: Path) -> Iterator[str]:
    url = fresh_database_url(tmp_path, "planning")
    yield url
    drop_database(url)


@pytest.fixture
def db(own_database: str) -> Iterator[Database]:
    database = open_database(own_database)
    upgrade(database)
    yield database
    database.dispose()


def repository(db: Database) -> Repository:
    return Repository(db, event_types=frozenset(HANDLERS))


def worker(repo: Repository) -> OutboxWorker:
    return OutboxWorker(repo, HANDLERS, topic_handlers=TOPIC_HANDLERS)


def drain(work: OutboxWorker, now: int) -> None:
    """Handle everything due at ``now`` (events that handling adds included)."""
    for offset in range(50):
        if work.run_once(now=now + offset) == 0:
            return
    raise AssertionError("events kept coming")


def at(day: date, hours: int = 10) -> int:
    return start_of_day_us(day) + hours * HOUR


def plans(db: Database) -> dict[str, tuple[str, int, list[str]]]:
    """Weekly plans by week start: (status, version, replaces)."""
    out = {}
    with db.reader.connect() as conn:
        for row in conn.execute(select(resource).where(resource.c.rtype == "CarePlan")).all():
            body: dict[str, Any] = orjson.loads(row.body)
            if "basedOn" in body:
                replaces = [r["reference"] for r in body.get("replaces", [])]
                out[body["period"]["start"]] = (body["status"], row.version, replaces)
    return out


def versions(db: Database) -> int:
    with db.reader.connect() as conn:
        return len(conn.execute(select(resource_history.c.hpk)).all())


def schedule_rows(db: Database) -> list[tuple[int, bool, str | None]]:
    with db.reader.connect() as conn:
        rows = conn.execute(
            select(outbox).where(outbox.c.topic == "weekly-plan").order_by(outbox.c.version)
        ).all()
    return [(r.version, r.done_at is not None, r.last_error) for r in rows]


def enrol(repo: Repository, today: date) -> None:
    bundle = transaction(enrolment("p1", START, today))
    process_bundle(repo, bundle, BundleOptions(base_url="http://test/fhir", now=at(today, 9)))


def test_each_week_boundary_plans_once_across_restarts(db: Database) -> None:
    repo = repository(db)
    enrol(repo, START)
    drain(worker(repo), at(START))
    assert plans(db) == {"2026-03-02": ("active", 1, [])}
    assert schedule_rows(db)[0][:2] == (1, True)

    # A new worker (a restart) at each boundary: week k is planned once, k + 1 scheduled.
    for week in (2, 3, 4):
        boundary = START + timedelta(days=7 * (week - 1))
        drain(worker(repo), at(boundary, 0))
        drain(worker(repo), at(boundary, 12))  # later the same day: nothing more
    made = plans(db)
    assert sorted(made) == ["2026-03-02", "2026-03-09", "2026-03-16", "2026-03-23"]
    assert [made[w][0] for w in sorted(made)] == ["completed", "completed", "completed", "active"]
    ids = {w: p for w, p in made.items()}
    assert all(len(p[2]) == 1 for w, p in ids.items() if w != "2026-03-02")
    assert [(v, done) for v, done, _ in schedule_rows(db)] == [
        (1, True),
        (2, True),
        (3, True),
        (4, True),
        (5, False),  # next week's, waiting
    ]

    before = versions(db)
    drain(worker(repo), at(START + timedelta(days=21), 18))  # nothing due: nothing happens
    assert versions(db) == before


def test_a_check_in_plans_next_week_ahead_of_the_boundary(db: Database) -> None:
    repo = repository(db)
    enrol(repo, START)
    drain(worker(repo), at(START))
    sunday = START + timedelta(days=6)
    response = weekly_response("p1-week-1", "p1", sunday, pain=4)
    repo.write(
        lambda s: update(s, "QuestionnaireResponse", response["id"], response, now=at(sunday, 20))
    )
    drain(worker(repo), at(sunday, 20))
    made = plans(db)
    assert made["2026-03-02"][0] == "completed"
    assert made["2026-03-09"][0] == "active"

    # The boundary comes: the week is planned already, so the schedule writes nothing.
    before = versions(db)
    drain(worker(repo), at(START + timedelta(days=7), 0))
    assert versions(db) == before
    assert schedule_rows(db)[1][2] == "week 2 already planned"


def test_a_week_missed_while_no_worker_ran_is_planned_when_one_starts(db: Database) -> None:
    """The schedule lives in the outbox: a boundary that passed with no server running is
    planned by the next worker, once."""
    repo = repository(db)
    enrol(repo, START)
    drain(worker(repo), at(START))
    late = START + timedelta(days=9)  # week 2 began two days ago
    drain(worker(repo), at(late))
    drain(worker(repo), at(late, 11))
    assert sorted(plans(db)) == ["2026-03-02", "2026-03-09"]


def test_exercise_feedback_re_plans_next_week_and_supersedes_the_earlier_plan(
    db: Database,
) -> None:
    """Feedback after the check-in (still in week 1) re-plans week 2 from the newer data:
    the earlier week-2 plan is revoked and marked superseded-by the new one."""
    repo = repository(db)
    enrol(repo, START)
    drain(worker(repo), at(START))
    saturday, sunday = START + timedelta(days=5), START + timedelta(days=6)
    check_in = weekly_response("p1-week-1", "p1", saturday, pain=4)
    repo.write(
        lambda s: update(s, "QuestionnaireResponse", check_in["id"], check_in, now=at(saturday))
    )
    drain(worker(repo), at(saturday))
    with db.reader.connect() as conn:
        week1 = next(
            orjson.loads(r.body)
            for r in conn.execute(select(resource).where(resource.c.rtype == "CarePlan")).all()
            if orjson.loads(r.body).get("period", {}).get("start") == "2026-03-02"
            and "basedOn" in orjson.loads(r.body)
        )
    planned = [
        a["detail"]["description"]
        for a in week1["activity"]
        if a["detail"]["kind"] == "ServiceRequest"
    ]
    exercise, level = planned[0].split(", level ")
    first_week2 = {w: p for w, p in plans(db).items()}["2026-03-09"]
    assert first_week2[0] == "active"

    feedback = exercise_feedback("p1-fb", "p1", sunday, exercise, int(level), "easy")
    repo.write(
        lambda s: update(s, "QuestionnaireResponse", feedback["id"], feedback, now=at(sunday))
    )
    drain(worker(repo), at(sunday))

    with db.reader.connect() as conn:
        bodies = [
            orjson.loads(r.body)
            for r in conn.execute(select(resource).where(resource.c.rtype == "CarePlan")).all()
        ]
    week2 = [b for b in bodies if b.get("period", {}).get("start") == "2026-03-09"]
    assert sorted(b["status"] for b in week2) == ["active", "revoked"]
    new = next(b for b in week2 if b["status"] == "active")
    old = next(b for b in week2 if b["status"] == "revoked")
    assert old["extension"] == [
        {"url": fc.EXT_SUPERSEDED_BY, "valueReference": {"reference": f"CarePlan/{new['id']}"}}
    ]
    assert new["replaces"] == [{"reference": f"CarePlan/{week1['id']}"}]
    assert {"reference": "QuestionnaireResponse/p1-fb"} in new["supportingInfo"]
    # The feedback counted: "easy" moves that exercise up a level (EX-EASY-UP).
    descriptions = [a["detail"].get("description", "") for a in new["activity"]]
    assert int(level) < 6
    assert f"{exercise}, level {int(level) + 1}" in descriptions
    before = [a["detail"].get("description", "") for a in old["activity"]]
    assert f"{exercise}, level {int(level) + 1}" not in before
