"""What the audit trail's writer spends per AuditEvent, by stage, in-process.

Writes ``-n`` records of the read kind (``GET /fhir/Observation/<id>`` by a backend
client, as ``bench/auth_bench.py --parts overhead`` makes them) through
:meth:`AuditTrail.flush` into a fresh database (SQLite, or PostgreSQL with
``--postgres``), twice:

1. plain, for the true total: CPU time of this process (``time.process_time``) per
   AuditEvent, and on PostgreSQL also the CPU the server's backends spent (from
   ``/proc/<pid>/stat`` of the backends connected to the database);
2. with every stage of the write path wrapped in a CPU timer, for the split. The wrappers
   cost about a microsecond per call, so the stages add up to a little more than the
   plain total.

``--lookup`` leaves the patient out of the records, as the server does for a backend
client's read (the body is not parsed on the request path), so the trail looks it up from
the stored version; by default the records name their patient. ``--cprofile FILE`` also
writes a cProfile of a third run.

    .venv/bin/python bench/audit_trail_profile.py -n 5000
    .venv/bin/python bench/audit_trail_profile.py -n 5000 --postgres --lookup
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import os
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _common as c  # noqa: E402

from fhir_server.access.claims import Claims  # noqa: E402
from fhir_server.access.scopes import parse  # noqa: E402
from fhir_server.audit import AccessRecord, AuditTrail, ServerIdentity  # noqa: E402
from fhir_server.config import normalise_database_url  # noqa: E402
from fhir_server.events.handlers import HANDLERS  # noqa: E402
from fhir_server.storage.database import Database, open_database  # noqa: E402
from fhir_server.storage.migrate import upgrade  # noqa: E402
from fhir_server.storage.repository import Repository  # noqa: E402
from fhir_server.versioning import new_id, now_us  # noqa: E402

PARENT = "(transaction)"
# (module, attribute, stage): the functions of the write path, wrapped for the split.
# Missing ones are skipped, so the list covers the write path before and after changes.
STAGES: list[tuple[str, str, str]] = [
    ("fhir_server.audit.trail", "AuditTrail._with_patients", "patient lookup"),
    ("fhir_server.audit.trail", "AuditTrail._patients_for", "patient lookup"),
    ("fhir_server.audit.trail", "audit_event", "build"),
    ("fhir_server.audit.trail", "audit_event_with_rows", "build + index rows"),
    ("fhir_server.audit.trail", "index_rows", "index rows"),
    ("fhir_server.interactions.access", "check_write", "access check"),
    ("fhir_server.conformance", "check_write", "conformance check"),
    ("fhir_server.interactions.write", "stamp", "stamp"),
    ("fhir_server.audit.trail", "stamp", "stamp"),
    ("fhir_server.interactions.write", "live_registry", "registry check"),
    ("fhir_server.audit.trail", "live_registry", "registry check"),
    ("fhir_server.interactions.write", "extract_index_rows", "index rows"),
    ("fhir_server.audit.trail", "extract_index_rows", "index rows"),
    ("fhir_server.storage.repository", "WriteSession.put", "put (buffer)"),
    ("fhir_server.storage.repository", "WriteSession.put_new", "put (buffer)"),
    ("fhir_server.storage.repository", "WriteSession.flush", "inserts"),
    ("fhir_server.storage.repository", "Repository.write", PARENT),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=5000, help="AuditEvents to write")
    parser.add_argument("--batch", type=int, default=500, help="records per transaction")
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--lookup", action="store_true", help="records without the patient")
    parser.add_argument("--cprofile", type=Path, help="write a cProfile of a third run here")
    args = parser.parse_args()

    db_info = c.fresh_database(args.postgres, "audit")
    database = open_database(normalise_database_url(db_info.url))
    try:
        upgrade(database)
        repository = Repository(database, event_types=frozenset(HANDLERS))
        ids = seed_observations(repository, min(args.n, 1000))
        runs = [("plain", None), ("split", "split")]
        if args.cprofile:
            runs.append(("cprofile", "cprofile"))
        for label, how in runs:
            records = read_records(ids, args.n, with_patient=not args.lookup)
            trail = AuditTrail(
                repository,
                ServerIdentity("http://bench.test/fhir"),
                batch_size=args.batch,
                max_queue=args.n + 1,
            )
            for record in records:
                trail.record(record)
            backends = Backends(database, db_info._pg_name)
            timers: dict[str, list[int]] = defaultdict(lambda: [0, 0])
            with wrapped(timers) if how == "split" else nothing():
                profiler = cProfile.Profile(time.process_time) if how == "cprofile" else None
                if profiler:
                    profiler.enable()
                backends.start()
                started = time.process_time_ns()
                written = trail.flush()
                spent = time.process_time_ns() - started
                server_us = backends.stop()
                if profiler:
                    profiler.disable()
                    profiler.dump_stats(args.cprofile)
            if written != args.n:
                raise SystemExit(f"wrote {written} of {args.n}")
            report(db_info.kind, label, args, spent, server_us, timers)
    finally:
        database.dispose()
        db_info.drop()
    return 0


def seed_observations(repository: Repository, count: int) -> list[str]:
    """Observations of 100 patients, as the records read them."""
    from fhir_server.interactions.write import write_version

    ids = [new_id() for _ in range(count)]

    def work(session: Any) -> None:
        now = now_us()
        for n, id in enumerate(ids):
            body = {
                "resourceType": "Observation",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                "subject": {"reference": f"Patient/p{n % 100}"},
                "effectiveDateTime": "2026-01-01T10:00:00Z",
                "valueQuantity": {
                    "value": 60 + n % 40,
                    "unit": "/min",
                    "system": "http://unitsofmeasure.org",
                    "code": "/min",
                },
            }
            write_version(session, body, id=id, now=now, method="POST", previous=None)

    repository.write(work)
    return ids


def read_records(ids: list[str], n: int, *, with_patient: bool) -> list[AccessRecord]:
    claims = Claims(client_id="bench-backend", scopes=parse("system/*.rs"))
    out = []
    for i in range(n):
        id = ids[i % len(ids)]
        out.append(
            AccessRecord(
                action="read",
                outcome=200,
                at_us=now_us(),
                claims=claims,
                client_id=claims.client_id,
                resource_type="Observation",
                resource_id=id,
                version=1,
                patient_ids=(f"p{(i % len(ids)) % 100}",) if with_patient else (),
                client_ip="127.0.0.1",
            )
        )
    return out


@contextmanager
def nothing() -> Iterator[None]:
    yield


@contextmanager
def wrapped(timers: dict[str, list[int]]) -> Iterator[None]:
    """Wrap each stage function in a CPU timer; nested stages are charged once (a stage
    called inside another, e.g. the registry check inside the index rows, is taken out
    of the outer one)."""
    import importlib

    undo: list[Callable[[], None]] = []
    stack: list[list[int]] = []  # per active stage: time spent in nested stages

    def timer(stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def run(*a: Any, **k: Any) -> Any:
            stack.append([0])
            t0 = time.process_time_ns()
            try:
                return fn(*a, **k)
            finally:
                total = time.process_time_ns() - t0
                inner = stack.pop()[0]
                slot = timers[stage]
                slot[0] += total - inner
                slot[1] += 1
                if stack:
                    stack[-1][0] += total

        return run

    for module_name, attribute, stage in STAGES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        owner: Any = module
        *path, name = attribute.split(".")
        for part in path:
            owner = getattr(owner, part, None)
        if owner is None or not hasattr(owner, name):
            continue
        original = owner.__dict__[name] if name in vars(owner) else getattr(owner, name)
        setattr(owner, name, timer(stage, original))
        undo.append(functools.partial(setattr, owner, name, original))
    try:
        yield
    finally:
        for step in reversed(undo):
            step()


class Backends:
    """CPU time of the PostgreSQL backends serving this database (same machine)."""

    def __init__(self, database: Database, pg_name: str | None) -> None:
        self.database = database
        self.pg_name = pg_name
        self.before = 0

    def _ticks(self) -> int:
        if not self.pg_name:
            return 0
        total = 0
        for pid in self._pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime + stime
        return total

    def _pids(self) -> list[int]:
        import psycopg

        with psycopg.connect(c.POSTGRES_ADMIN, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s", (self.pg_name,)
            ).fetchall()
        return [int(r[0]) for r in rows]

    def start(self) -> None:
        self.before = self._ticks()

    def stop(self) -> float | None:
        if not self.pg_name:
            return None
        return (self._ticks() - self.before) * 1e6 / os.sysconf("SC_CLK_TCK")


def report(
    kind: str,
    label: str,
    args: argparse.Namespace,
    spent_ns: int,
    server_us: float | None,
    timers: dict[str, list[int]],
) -> None:
    n = args.n
    head = f"[{kind}, {'lookup' if args.lookup else 'patient known'}, {n} records, batches of {args.batch}] {label}:"
    line = f"{head} writer CPU {spent_ns / 1000 / n:.1f} us per AuditEvent"
    if server_us is not None:
        line += f"; PostgreSQL backends {server_us / n:.1f} us"
    print(line, flush=True)
    if not timers:
        return
    inner = 0
    for stage, (ns, calls) in sorted(timers.items(), key=lambda kv: -kv[1][0]):
        inner += ns
        name = "transaction, rest" if stage == PARENT else stage
        print(f"    {name:<22} {ns / 1000 / n:7.1f} us   ({calls} calls)", flush=True)
    print(f"    {'other':<22} {(spent_ns - inner) / 1000 / n:7.1f} us", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
