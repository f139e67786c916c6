"""The alert handlers and the outbox reclaim, driven by the worker with a given clock
(both databases): no channel configured, giving up after the retry max age, escalation
only of an emergency its owner has not accepted, and claims of a dead worker taken back
while a live worker's are left alone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from fhir_server.alerts import task_id_for
from fhir_server.alerts.delivery import AlertChannels
from fhir_server.events.handlers.safety_alerts import AlertPolicy, make_alert_handlers
from fhir_server.events.outbox import claim
from fhir_server.events.tables import outbox
from fhir_server.events.worker import OutboxWorker
from fhir_server.interactions.update import update
from fhir_server.storage.database import open_database
from fhir_server.storage.migrate import upgrade
from fhir_server.storage.repository import Repository
from tests.conftest import drop_database, free_port, fresh_database_url

T0 = 1_800_000_000_000_000
SECOND = 1_000_000


@pytest.fixture
def own_database(tmp_path: Path) -> Iterator[str]:
    url = fresh_database_url(tmp_path, "alerts")
    yield url
    drop_database(url)


@pytest.fixture
def repo(own_database: str) -> Iterator[Repository]:
    database = open_database(own_database)
    upgrade(database)
    yield Repository(database, event_types=frozenset({"Communication"}))
    database.dispose()


def worker(repo: Repository, channels: AlertChannels, **policy: float) -> OutboxWorker:
    on_communication, topics = make_alert_handlers(
        AlertPolicy(
            channels=channels,
            retry_base_seconds=policy.get("base", 1),
            retry_cap_seconds=policy.get("cap", 2),
            retry_max_age_seconds=policy.get("max_age", 3600),
            escalation_seconds=policy.get("escalation", 60),
        )
    )
    return OutboxWorker(repo, {"Communication": on_communication}, topic_handlers=topics)


def put(repo: Repository, resource: dict[str, Any]) -> None:
    repo.write(lambda s: update(s, resource["resourceType"], resource["id"], resource, now=T0))


def read(repo: Repository, rtype: str, rid: str) -> dict[str, Any] | None:
    stored = repo.read(rtype, rid)
    return None if stored is None else orjson.loads(stored.body)


def record(repo: Repository, cid: str, priority: str = "stat") -> None:
    put(repo, {"resourceType": "Organization", "id": "org1", "name": "Clinic"})
    put(repo, {"resourceType": "Patient", "id": "p1", "name": [{"text": "Karen Holm"}]})
    put(
        repo,
        {
            "resourceType": "PractitionerRole",
            "id": "r1",
            "organization": {"reference": "Organization/org1"},
        },
    )
    put(
        repo,
        {
            "resourceType": "DetectedIssue",
            "id": f"{cid}-issue",
            "status": "final",
            "patient": {"reference": "Patient/p1"},
            "code": {"text": "Numbness in the saddle area"},
        },
    )
    put(
        repo,
        {
            "resourceType": "Communication",
            "id": cid,
            "status": "preparation",
            "priority": priority,
            "subject": {"reference": "Patient/p1"},
            "about": [{"reference": f"DetectedIssue/{cid}-issue"}],
            "recipient": [{"reference": "PractitionerRole/r1"}],
            "payload": [{"contentString": "Call the patient today"}],
        },
    )


def run(work: OutboxWorker, now: int, rounds: int = 4) -> None:
    for step in range(rounds):
        work.run_once(now + step)


NO_CHANNEL = AlertChannels(webhook_url="", webhook_secret="", sms=None)


def test_without_a_channel_the_alert_is_on_the_worklist_and_marked_not_done(
    repo: Repository,
) -> None:
    record(repo, "c1", priority="asap")
    run(worker(repo, NO_CHANNEL), T0)
    alert = read(repo, "Communication", "c1")
    assert alert is not None and alert["status"] == "not-done"
    assert "No delivery channel configured" in alert["statusReason"]["text"]
    assert {
        "system": "http://selfback.example.org/fhir/CodeSystem/security-tag",
        "code": "safety-alert",
    } in alert["meta"]["tag"]
    task = read(repo, "Task", task_id_for("c1"))
    assert task is not None and task["priority"] == "asap"
    assert task["output"][0]["valueString"].startswith("Alert not-done")


def test_delivery_is_retried_then_given_up_with_the_reason(repo: Repository) -> None:
    record(repo, "c2", priority="asap")
    down = AlertChannels(
        webhook_url=f"http://127.0.0.1:{free_port()}/down", webhook_secret="s", sms=None
    )
    work = worker(repo, down, base=1, cap=2, max_age=5)
    run(work, T0, rounds=2)  # the Task, then attempt 1
    alert = read(repo, "Communication", "c2")
    assert alert is not None and alert["status"] == "in-progress"
    assert alert["statusReason"]["text"].startswith(
        "Attempt 1 failed (webhook: webhook unreachable"
    )
    work.run_once(T0 + 3 * SECOND)  # attempt 2: still young enough to retry
    assert read(repo, "Communication", "c2")["status"] == "in-progress"  # type: ignore[index]
    work.run_once(T0 + 10 * SECOND)  # attempt 3: older than the max age
    alert = read(repo, "Communication", "c2")
    assert alert is not None and alert["status"] == "stopped"
    assert alert["statusReason"]["text"].startswith("Delivery given up after 3 attempts")
    run(work, T0 + 100 * SECOND)  # nothing more is sent or changed
    assert read(repo, "Communication", "c2") == alert
    with repo.db.reader.connect() as conn:
        pending = conn.execute(select(outbox.c.topic).where(outbox.c.done_at.is_(None))).all()
    assert pending == []


def test_only_an_emergency_not_accepted_is_escalated(repo: Repository) -> None:
    record(repo, "waiting")
    record(repo, "accepted")
    work = worker(repo, NO_CHANNEL, escalation=60)
    run(work, T0)
    task = read(repo, "Task", task_id_for("accepted"))
    assert task is not None
    task.pop("meta")
    put(repo, {**task, "status": "accepted"})
    run(work, T0 + 61 * SECOND)
    escalated = read(repo, "Communication", "waiting-escalation")
    assert escalated is not None
    assert escalated["recipient"] == [{"reference": "Organization/org1"}]
    assert read(repo, "Communication", "accepted-escalation") is None
    org_task = read(repo, "Task", task_id_for("waiting-escalation"))
    assert org_task is not None and org_task["owner"] == {"reference": "Organization/org1"}
    # An escalation is not escalated again.
    run(work, T0 + 1000 * SECOND)
    assert read(repo, "Communication", "waiting-escalation-escalation") is None


def test_claims_of_a_dead_worker_are_reclaimed_and_a_live_ones_are_not(
    repo: Repository,
) -> None:
    record(repo, "c3")
    alive = worker(repo, NO_CHANNEL)
    from fhir_server.events.liveness import Liveness

    alive.liveness = Liveness(repo.db, alive.name)
    alive.liveness.hold()
    claimed = repo.write(lambda s: claim(s.conn, alive.name, T0, 120 * SECOND, 10))
    assert claimed
    starting = worker(repo, NO_CHANNEL)
    assert starting.reclaim_dead(T0 + SECOND) == 0  # its owner lives: left alone
    alive.liveness.release()  # the owner's process ends
    assert starting.reclaim_dead(T0 + SECOND) == len(claimed)
    with repo.db.reader.connect() as conn:
        rows = conn.execute(select(outbox.c.claimed_by).where(outbox.c.done_at.is_(None))).all()
    assert rows and all(r.claimed_by is None for r in rows)
    assert starting.run_once(T0 + 2 * SECOND) >= 1  # due again at once


def test_lock_files_of_dead_sqlite_workers_are_swept(repo: Repository) -> None:
    from fhir_server.events.liveness import Liveness

    if repo.db.dialect != "sqlite":
        pytest.skip("lock files are the SQLite liveness; PostgreSQL uses advisory locks")
    live = Liveness(repo.db, "worker-live")
    live.hold()
    crashed = Liveness(repo.db, "worker-crashed")
    crashed.hold()
    assert crashed._fd is not None and crashed._dir is not None
    import os

    os.close(crashed._fd)  # the process died: the kernel dropped the lock, the file stays
    names = lambda: sorted(p.stem for p in crashed._dir.glob("*.lock"))  # noqa: E731
    assert names() == ["worker-crashed", "worker-live"]
    Liveness(repo.db, "worker-starting").sweep()
    assert names() == ["worker-live"]
    live.release()
    assert names() == []
