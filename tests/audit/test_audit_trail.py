"""The trail: cheap to record into, batched into the database, drained on stop, and never
a reason for a request to fail or wait. Runs against a real database (SQLite, or
PostgreSQL with SELFBACK_TEST_DB=postgresql)."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

import orjson
import pytest
from sqlalchemy import func, select

from fhir_server.app import create_app
from fhir_server.audit import (
    AccessRecord,
    AuditProcess,
    AuditTrail,
    DisabledAudit,
    ServerIdentity,
)
from fhir_server.audit.coalesce import CoalescingAudit
from fhir_server.config import Settings
from fhir_server.errors import FhirError, error
from fhir_server.events.tables import outbox
from fhir_server.interactions.access import acting_as
from fhir_server.interactions.write import write_version
from fhir_server.storage.database import open_database
from fhir_server.storage.repository import Repository, WriteSession
from fhir_server.storage.schema import resource
from fhir_server.validation import validate_resource
from fhir_server.versioning import now_us

SERVER = ServerIdentity(site="http://trail.test/fhir")


def a_read(n: int, patient: str = "p1") -> AccessRecord:
    return AccessRecord(
        action="read",
        outcome=200,
        at_us=now_us(),
        client_id="bench-app",
        resource_type="Observation",
        resource_id=f"o{n}",
        version=1,
        patient_ids=(patient,),
        client_ip="127.0.0.1",
    )


def stored_events(repository: Repository) -> list[tuple[int, dict[str, object]]]:
    """(last_updated, body) of every stored AuditEvent."""
    with repository.db.reader.connect() as conn:
        rows = conn.execute(
            select(resource.c.last_updated, resource.c.body).where(resource.c.rtype == "AuditEvent")
        ).all()
    return [(row.last_updated, orjson.loads(row.body)) for row in rows]


def wait_for(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def test_records_are_written_in_batches_of_at_most_batch_size(repository: Repository) -> None:
    """Every event of one batch is committed in one transaction, stamped with that
    transaction's instant: the number of distinct lastUpdated values is the number of
    write transactions."""
    trail = AuditTrail(repository, SERVER, batch_size=50, interval=60.0)
    for n in range(120):
        trail.record(a_read(n))
    trail.start()  # a full batch is waiting: the thread writes without waiting 60 s
    wait_for(lambda: len(stored_events(repository)) >= 100)
    trail.stop()
    events = stored_events(repository)
    assert len(events) == 120
    batches: dict[int, int] = {}
    for last_updated, _ in events:
        batches[last_updated] = batches.get(last_updated, 0) + 1
    assert sorted(batches.values()) == [20, 50, 50]
    assert trail.stats.written == 120 and trail.stats.queued == 0


def test_a_small_batch_is_written_after_the_interval(repository: Repository) -> None:
    trail = AuditTrail(repository, SERVER, batch_size=500, interval=0.05)
    trail.start()
    try:
        for n in range(3):
            trail.record(a_read(n))
        wait_for(lambda: len(stored_events(repository)) == 3, timeout=5)
    finally:
        trail.stop()


def test_stop_drains_the_queue(repository: Repository) -> None:
    trail = AuditTrail(repository, SERVER, batch_size=500, interval=3600.0)
    trail.start()
    for n in range(10):
        trail.record(a_read(n))
    assert stored_events(repository) == []  # still buffered: interval not reached
    trail.stop()
    assert len(stored_events(repository)) == 10


def test_stored_events_are_valid_r4_auditevents_with_id_and_meta(repository: Repository) -> None:
    trail = AuditTrail(repository, SERVER)
    trail.record(a_read(1, patient="p9"))
    trail.flush()
    ((_, event),) = stored_events(repository)
    validate_resource(event, expected_type="AuditEvent")
    assert event["meta"]["versionId"] == "1"
    assert {"reference": "Patient/p9"} in [e.get("what") for e in event["entity"]]


def test_the_patient_of_a_resource_read_is_found_off_the_request_path(
    repository: Repository,
) -> None:
    """A read by a system client is recorded without patients (the body is not parsed on
    the hot path); the trail finds them in the stored version before building the event."""
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "steps"},
        "subject": {"reference": "Patient/p42"},
    }
    stored = repository.write(
        lambda session: write_version(
            session, observation, id="o42", now=now_us(), method="POST", previous=None
        )
    )
    trail = AuditTrail(repository, SERVER)
    unknown = AccessRecord(
        "read", 200, now_us(), resource_type="Observation", resource_id="o42", version=1
    )
    trail.record(unknown)
    trail.record(replace(unknown, resource_id="missing"))  # nothing stored: left as it was
    trail.flush()
    assert stored.version == 1
    events = {e["entity"][0]["what"]["reference"]: e for _, e in stored_events(repository)}
    assert {"reference": "Patient/p42"} in [
        e["what"] for e in events["Observation/o42/_history/1"]["entity"]
    ]
    assert len(events["Observation/missing/_history/1"]["entity"]) == 1


class RefuseEveryWrite:
    """A request's access that refuses every write, as for a patient app writing AuditEvent."""

    def write(
        self, interaction: str, rtype: str, resource: object, previous: object, *where: object
    ) -> None:
        raise error(403, "forbidden", f"{interaction} of {rtype} refused")


def test_trail_writes_pass_no_access_decision_even_inside_a_request(
    repository: Repository,
) -> None:
    """Clients may not write AuditEvents; the server's own trail must, whatever access is
    in force in the thread that flushes (fhir_server.interactions.access)."""
    trail = AuditTrail(repository, SERVER)
    trail.record(a_read(1))
    with acting_as(RefuseEveryWrite()):  # type: ignore[arg-type]
        with pytest.raises(FhirError):  # the access really is in force here
            repository.write(
                lambda session: write_version(
                    session, {"resourceType": "Basic"}, id="b1", now=now_us(), method="POST",
                    previous=None,
                )
            )  # fmt: skip
        assert trail.flush() == 1
    assert len(stored_events(repository)) == 1


def test_trail_writes_leave_no_outbox_events(repository: Repository) -> None:
    trail = AuditTrail(repository, SERVER)
    for n in range(5):
        trail.record(a_read(n))
    trail.flush()
    with repository.db.reader.connect() as conn:
        assert conn.execute(select(func.count()).select_from(outbox)).scalar() == 0


def test_start_refuses_a_repository_whose_auditevent_writes_would_raise_events(
    repository: Repository,
) -> None:
    reacting = Repository(repository.db, event_types=frozenset({"AuditEvent"}))
    with pytest.raises(ValueError, match="outbox"):
        AuditTrail(reacting, SERVER).start()


def test_a_full_queue_drops_without_blocking_counts_and_logs(
    repository: Repository, caplog: pytest.LogCaptureFixture
) -> None:
    trail = AuditTrail(repository, SERVER, max_queue=100)  # not started: nothing drains
    records = [a_read(n) for n in range(250)]
    with caplog.at_level(logging.ERROR, logger="selfback.audit"):
        started = time.perf_counter()
        for record in records:
            trail.record(record)
        elapsed = time.perf_counter() - started
    assert elapsed < 0.05  # 250 calls; each is an append or a counter increment
    assert trail.stats.queued == 100 and trail.stats.dropped == 150
    assert any("dropped" in r.getMessage() for r in caplog.records)
    with caplog.at_level(logging.ERROR, logger="selfback.audit"):
        trail.stop()  # drains what was kept and reports the drops again
    assert len(stored_events(repository)) == 100
    assert "150 dropped" in caplog.records[-1].getMessage()


def test_record_is_cheap(repository: Repository) -> None:
    """The read-by-id path serves thousands of requests/s: recording must cost
    microseconds (generous bound: the machine is shared)."""
    trail = AuditTrail(repository, SERVER, max_queue=1_000_000, batch_size=1_000_000)
    record = a_read(1)
    n = 100_000
    started = time.perf_counter()
    for _ in range(n):
        trail.record(record)
    per_call_us = (time.perf_counter() - started) / n * 1e6
    assert per_call_us < 10, f"{per_call_us:.2f} µs per record"


def test_a_record_that_cannot_be_built_is_counted_and_the_rest_are_written(
    repository: Repository,
) -> None:
    trail = AuditTrail(repository, SERVER)
    trail.record(a_read(1))
    trail.record(AccessRecord(action="read", outcome="oops", at_us=now_us()))  # type: ignore[arg-type]
    trail.record(a_read(2))
    trail.flush()
    assert len(stored_events(repository)) == 2
    assert trail.stats.failed == 1


def test_a_database_failure_never_raises_and_is_counted(tmp_path: Path) -> None:
    """A database without the schema: every write fails. Recording, flushing and stopping
    still return normally; the lost records are counted."""
    db = open_database(f"sqlite:///{tmp_path / 'no-schema.sqlite'}")
    try:
        trail = AuditTrail(Repository(db), SERVER, attempts=2, interval=0.01)
        trail.start()
        for n in range(5):
            trail.record(a_read(n))
        wait_for(lambda: trail.stats.failed == 5, timeout=5)
        trail.record(a_read(6))
        trail.stop()
        assert trail.stats.failed == 6 and trail.stats.written == 0
    finally:
        db.dispose()


@pytest.mark.parametrize(
    ("value", "on"), [(None, True), ("on", True), ("off", False), ("0", False)]
)
def test_the_server_audits_unless_switched_off(
    value: str | None, on: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SELFBACK_AUDIT=off is for benchmarks; on by default. The FHIR routes and the
    authorization server record into the same trail."""
    if value is None:
        monkeypatch.delenv("SELFBACK_AUDIT", raising=False)
    else:
        monkeypatch.setenv("SELFBACK_AUDIT", value)
    settings = Settings.from_env(
        data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'a.sqlite'}", load_content=False
    )
    assert settings.audit is on
    app = create_app(settings)
    try:
        trail = app.state.fhir.audit
        # by default a writer process of its own; SELFBACK_AUDIT_WRITER=thread keeps the
        # writer in the server process
        # refusals are coalesced in front of the writer (fhir_server/audit/coalesce.py)
        writer = trail.sink if isinstance(trail, CoalescingAudit) else trail
        assert isinstance(writer, AuditProcess if on else DisabledAudit)
        assert app.state.auth.services.audit is trail
    finally:
        app.state.fhir.repository.db.dispose()


def test_the_writer_can_be_a_thread_of_the_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SELFBACK_AUDIT_WRITER", "thread")
    settings = Settings.from_env(
        data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'a.sqlite'}", load_content=False
    )
    app = create_app(settings)
    try:
        assert isinstance(app.state.fhir.audit, CoalescingAudit)
        assert isinstance(app.state.fhir.audit.sink, AuditTrail)
    finally:
        app.state.fhir.repository.db.dispose()
    monkeypatch.setenv("SELFBACK_AUDIT_WRITER", "elsewhere")
    with pytest.raises(ValueError, match="SELFBACK_AUDIT_WRITER"):
        Settings.from_env(data_dir=tmp_path)


def stored_index_rows(repository: Repository) -> dict[str, dict[str, list[tuple[object, ...]]]]:
    """Per stored AuditEvent id: its index rows per table, sorted, as stored."""
    from fhir_server.storage.schema import INDEX_TABLES

    out: dict[str, dict[str, list[tuple[object, ...]]]] = {}
    with repository.db.reader.connect() as conn:
        ids = dict(
            conn.execute(
                select(resource.c.pk, resource.c.id).where(resource.c.rtype == "AuditEvent")
            ).all()
        )
        for name, table in INDEX_TABLES.items():
            columns = [c for c in table.columns if c.name not in ("res_pk", "rtype")]
            rows = conn.execute(
                select(table.c.res_pk, *columns).where(table.c.rtype == "AuditEvent")
            ).all()
            for row in rows:
                per = out.setdefault(ids[row[0]], {})
                per.setdefault(name, []).append(tuple(row[1:]))
    return {id: {t: sorted(r, key=repr) for t, r in tables.items()} for id, tables in out.items()}


def extracted_index_rows(
    body: dict[str, object], registry: object = None
) -> dict[str, list[tuple[object, ...]]]:
    from fhir_server.search import extract_index_rows
    from fhir_server.storage.schema import INDEX_TABLES

    rows = extract_index_rows(body, registry)  # type: ignore[arg-type]
    out = {}
    for name, found in rows.items():
        columns = [c.name for c in INDEX_TABLES[name].columns if c.name not in ("res_pk", "rtype")]
        if found:
            out[name] = sorted((tuple(r.get(c) for c in columns) for r in found), key=repr)
    return out


def test_stored_index_rows_are_what_extraction_makes_of_the_stored_events(
    repository: Repository,
) -> None:
    """End to end, as stored in the index tables: the rows of every AuditEvent the trail
    wrote are the rows extraction makes of its stored body (a reindex would change nothing)."""
    from fhir_server.access.claims import Claims
    from fhir_server.access.scopes import parse

    person = Claims(
        client_id="app", scopes=parse("patient/*.rs"), subject="s1", fhir_user="Patient/p1"
    )
    trail = AuditTrail(repository, SERVER)
    for n in range(30):
        trail.record(a_read(n, patient=f"p{n % 3}"))
    trail.record(AccessRecord("login", 403, now_us(), client_ip="203.0.113.9", reason="no"))
    trail.record(
        AccessRecord(
            "search-type",
            200,
            now_us(),
            claims=person,
            client_id="app",
            resource_type="Observation",
            query="patient=Patient/p1",
        )
    )
    assert trail.flush() == 32
    stored = stored_index_rows(repository)
    with repository.db.reader.connect() as conn:
        bodies = conn.execute(
            select(resource.c.id, resource.c.body).where(resource.c.rtype == "AuditEvent")
        ).all()
    assert len(bodies) == 32
    for id, body in bodies:
        assert stored[id] == extracted_index_rows(orjson.loads(body)), id


def test_a_custom_auditevent_parameter_in_force_is_indexed_by_extraction(
    repository: Repository,
) -> None:
    """The builder's rows stand for the R4 core AuditEvent parameters only: with a custom
    SearchParameter on AuditEvent in force, the trail's events are indexed by extraction
    under the parameters in force, custom one included."""
    from fhir_server.search import registry
    from fhir_server.storage.search_sql import live_registry

    parameter = {
        "resourceType": "SearchParameter",
        "url": "http://selfback.example.org/fhir/SearchParameter/auditevent-outcome-desc",
        "name": "outcome-desc",
        "status": "active",
        "code": "outcome-desc",
        "base": ["AuditEvent"],
        "type": "string",
        "expression": "AuditEvent.outcomeDesc",
    }
    repository.write(
        lambda session: write_version(
            session, parameter, id="ae-outcome-desc", now=now_us(), method="POST", previous=None
        )
    )
    trail = AuditTrail(repository, SERVER)
    trail.record(a_read(1))
    trail.record(replace(a_read(2), outcome=403, reason="refused"))
    assert trail.flush() == 2
    with repository.db.reader.connect() as conn:
        live = live_registry(conn)
    assert live is not registry()
    stored = stored_index_rows(repository)
    for id, body in _bodies(repository):
        expected = extracted_index_rows(body, live)
        assert stored[id] == expected
        assert any(row[0] == "outcome-desc" for row in expected["sp_string"])


def _bodies(repository: Repository) -> list[tuple[str, dict[str, object]]]:
    with repository.db.reader.connect() as conn:
        rows = conn.execute(
            select(resource.c.id, resource.c.body).where(resource.c.rtype == "AuditEvent")
        ).all()
    return [(id, orjson.loads(body)) for id, body in rows]


def test_core_parameters_are_told_apart_from_custom_ones_on_auditevent() -> None:
    from fhir_server.audit.trail import _core_audit_parameters
    from fhir_server.search import registry
    from fhir_server.search.custom import custom_params

    def with_parameter(base: str) -> object:
        sp = {
            "resourceType": "SearchParameter",
            "url": f"http://example.org/fhir/SearchParameter/{base}-x",
            "name": "x",
            "status": "active",
            "code": "x-code",
            "base": [base],
            "type": "token",
            "expression": f"{base}.id",
        }
        found = custom_params([sp], registry())
        return registry().with_params(found.params)

    assert _core_audit_parameters(registry())
    assert _core_audit_parameters(with_parameter("Observation"))  # type: ignore[arg-type]
    assert not _core_audit_parameters(with_parameter("AuditEvent"))  # type: ignore[arg-type]
    assert not _core_audit_parameters(with_parameter("Resource"))  # type: ignore[arg-type]


def test_patients_are_looked_up_per_version_for_the_whole_batch(repository: Repository) -> None:
    """One lookup for a batch: each read gets the patients of the version it read (a
    resource's subject changed between versions), the current version when the record
    names none, and nothing for what is not stored or not in a patient compartment."""
    first = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "steps"},
        "subject": {"reference": "Patient/pa"},
    }
    second = {**first, "subject": {"reference": "Patient/pb"}}

    def work(session: WriteSession) -> None:
        write_version(session, first, id="ob", now=now_us(), method="POST", previous=None)
        previous = session.current("Observation", "ob")
        write_version(session, second, id="ob", now=now_us(), method="PUT", previous=previous)

    repository.write(work)
    trail = AuditTrail(repository, SERVER)
    base = AccessRecord("read", 200, now_us(), resource_type="Observation", resource_id="ob")
    trail.record(replace(base, version=1))
    trail.record(replace(base, version=2))
    trail.record(replace(base, version=1, client_ip="10.0.0.2"))  # the same version again
    trail.record(base)  # no version: the current one
    trail.record(replace(base, resource_id="missing", version=1))
    trail.record(replace(base, resource_type="Organization", resource_id="org", version=1))
    assert trail.flush() == 6
    patients = sorted(
        (
            next(
                e["what"]["reference"] for e in event["entity"] if e["role"]["code"] in ("4", "1")
            ),
            tuple(e["what"]["reference"] for e in event["entity"][1:]),
        )
        for _, event in stored_events(repository)
    )
    assert patients == [
        ("Observation/missing/_history/1", ()),
        ("Observation/ob", ("Patient/pb",)),
        ("Observation/ob/_history/1", ("Patient/pa",)),
        ("Observation/ob/_history/1", ("Patient/pa",)),
        ("Observation/ob/_history/2", ("Patient/pb",)),
        ("Organization/org/_history/1", ()),
    ]
