"""Does the cost of one weekly plan grow with the patient's history? (docs/SIMULATION.md,
engine finding 6.)

Simulated patients (``plan_engine.simulation``) are run through the programme for each
history length; then, for the next week, ``decide_plan`` is called ``--repeat`` times. Three
in-process CPU figures (``time.process_time``, so other load on a shared machine does not
count) are printed per history length, as p50/p95 over patients x repeats:

- ``decide_cpu_ms``: on the snapshot as the app (and the server's snapshot builder) hands it
  over: only the window of history the engine plans from (``plan_engine.bounded_snapshot``);
- ``full_history_decide_cpu_ms``: on the whole stored history (the engine bounds it first);
- ``snapshot_and_decide_cpu_ms``: building the whole-history ``PatientSnapshot`` (its
  sorting) and then deciding.

It also prints how many earlier plans, weekly reports and education records the engine
actually planned from. Nothing here asserts on timings. Keep runs short on a shared
machine (the defaults take well under a minute)::

    .venv/bin/python bench/plan_engine_history.py --history 4,52 --patients 10 --repeat 10

``--server`` times the server's planning reader instead (``fhir_server.planning.record``).
Patients are written week by week through the server's write path into a fresh SQLite
database (``--database-url`` for another, e.g. PostgreSQL): each week daily steps, exercise
feedback, two education reads and the weekly check-in, scored and planned by the outbox
worker. Then, per patient and ``--repeat`` times, the reads for next week's plan are timed
(``time.process_time``), p50/p95:

- ``before_cpu_ms``: the reader as it was before the history window (``_read_everything``
  below, a copy: every resource of the patient, whatever its age);
- ``after_cpu_ms``: ``read_plans`` and ``read_history`` (the window the engine plans from);

with the searches each ran and the resources they returned, and the same with the snapshot
built (``build_snapshot``), the whole read half of a weekly run. ``--sparse``: check-ins
answer pain only, so the reader finds no newest answers and reads back to the beginning.
Writing the history is not
timed (about 10 s per 52 weeks on SQLite)::

    .venv/bin/python bench/plan_engine_history.py --server --history 4,52 --patients 2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import fields
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT))  # after PYTHONPATH, so an older tree can be measured too

import plan_engine  # noqa: E402
from plan_engine import PatientSnapshot, decide_plan  # noqa: E402
from plan_engine.simulation import (  # noqa: E402
    CohortSpec,
    PatientRun,
    assembly,  # noqa: E402
)
from plan_engine.simulation.metrics import percentile  # noqa: E402


def _rebuild(snapshot: PatientSnapshot) -> PatientSnapshot:
    """The same snapshot built again from its parts (the constructor's sorting runs)."""
    return PatientSnapshot(**{f.name: getattr(snapshot, f.name) for f in fields(snapshot)})


def _planned_from(snapshot: PatientSnapshot, as_of: date) -> dict[str, int]:
    """How much history the engine plans from (after its own bounding, where it has one)."""
    bounded = getattr(plan_engine, "bounded_snapshot", None)
    used = bounded(snapshot, as_of) if bounded is not None else snapshot
    return {
        "previous_plans": len(used.previous_plans),
        "weekly_reports": len(used.weekly_reports),
        "education": len(used.education),
    }


def measure(history_weeks: int, patients: int, repeat: int, seed: int) -> dict[str, object]:
    spec = CohortSpec(patients=patients, weeks=min(52, history_weeks + 1), seed=seed)
    decide_ms: list[float] = []
    full_ms: list[float] = []
    total_ms: list[float] = []
    sizes: dict[str, int] = {}
    for index in range(patients):
        run = PatientRun(spec, index)
        for _ in range(history_weeks):
            snapshot = run.snapshot()
            run.record(snapshot, decide_plan(snapshot, run.as_of), decide_plan)
        snapshot = run.snapshot()
        # An engine from before finding 6 has no full_snapshot: its snapshot was the whole
        # history (run with PYTHONPATH pointing at an older tree to compare).
        full_of = getattr(assembly, "full_snapshot", None)
        full = full_of(run.patient, run.stored, run.spec.start, run.as_of) if full_of else snapshot
        for _ in range(repeat):
            start = time.process_time()
            decide_plan(snapshot, run.as_of)
            decide_ms.append((time.process_time() - start) * 1000)
            start = time.process_time()
            decide_plan(full, run.as_of)
            full_ms.append((time.process_time() - start) * 1000)
            start = time.process_time()
            decide_plan(_rebuild(full), run.as_of)
            total_ms.append((time.process_time() - start) * 1000)
        for name, value in _planned_from(full, run.as_of).items():
            sizes[name] = max(sizes.get(name, 0), value)
        sizes["stored_plans"] = max(sizes.get("stored_plans", 0), len(full.previous_plans))
    return {
        "history_weeks": history_weeks,
        "plans_timed": len(decide_ms),
        "decide_cpu_ms": {
            "p50": round(percentile(decide_ms, 50), 2),
            "p95": round(percentile(decide_ms, 95), 2),
        },
        "full_history_decide_cpu_ms": {
            "p50": round(percentile(full_ms, 50), 2),
            "p95": round(percentile(full_ms, 95), 2),
        },
        "snapshot_and_decide_cpu_ms": {
            "p50": round(percentile(total_ms, 50), 2),
            "p95": round(percentile(total_ms, 95), 2),
        },
        "max_records_planned_from": sizes,
    }


# --- the server's planning reader (--server) ------------------------------------------


def _read_everything(source: Any, patient_id: str) -> Any:
    """The planning reader before the history window (fhir_server/planning/record.py as of
    plan engine 1.2.0), kept here so "before" stays what it was."""
    from fhir_server.planning.record import _search, programme_plans, read_patient
    from fhir_server.planning.snapshot import PatientRecord

    patient = read_patient(source, patient_id)
    programme = programme_plans(source, patient_id)[0]
    subject = ("subject", f"Patient/{patient_id}")
    return PatientRecord(
        patient=patient,
        programme_plan=programme,
        responses=tuple(_search(source, "QuestionnaireResponse", [subject])),
        observations=tuple(_search(source, "Observation", [subject])),
        weekly_plans=tuple(
            _search(source, "CarePlan", [("based-on", f"CarePlan/{programme['id']}")])
        ),
        goals=tuple(_search(source, "Goal", [subject])),
        communications=tuple(_search(source, "Communication", [subject, ("status", "completed")])),
        consents=tuple(_search(source, "Consent", [("patient", f"Patient/{patient_id}")])),
        detected_issues=tuple(
            _search(source, "DetectedIssue", [("patient", f"Patient/{patient_id}")])
        ),
    )


class _Counting:
    """A read session that counts the searches and what they return."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.searches = 0
        self.returned = 0

    def read(self, rtype: str, id: str) -> Any:
        return self.session.read(rtype, id)

    def find(self, query: Any, limit: int) -> Any:
        found = self.session.find(query, limit)
        self.searches += 1
        self.returned += len(found)
        return found


def _check_in(rid: str, pid: str, day: date, week: int, sparse: bool) -> dict[str, Any]:
    """The weekly check-in: every group answered, or (``sparse``) pain only, the case where
    the reader must look through every check-in for the newest answers (none exist)."""
    from tests.mappings.qr_builder import build_response
    from tests.planning.enrolment import NO_RED_FLAGS

    answers: dict[str, Any] = {**NO_RED_FLAGS, "nrs-pain-average": 3 + week % 3}
    if not sparse:
        answers |= {"pain-interference": 4, "fear-avoidance-item": 3, "pseq-5": 4, "pseq-9": 3}
        answers |= {"pss-2": 1, "pss-4": 2, "pss-5": 1, "pss-10": 2, "phq-1": 1, "phq-2": 0}
        answers |= {"wai-1": 6, "sleep-weekly": 5, "sick-leave": "sick-leave-none"}
    response = build_response("selfback-weekly", answers, rid=rid)
    response["subject"] = response["source"] = {"reference": f"Patient/{pid}"}
    response["authored"] = f"{day.isoformat()}T08:00:00Z"
    return response


def _write_history(repo: Any, pid: str, weeks: int, start: date, sparse: bool) -> date:
    """Enrol ``pid`` on ``start`` and live ``weeks`` weeks; answers the next week's start."""
    from datetime import timedelta

    from fhir_server.events.handlers import HANDLERS, TOPIC_HANDLERS
    from fhir_server.events.worker import OutboxWorker
    from fhir_server.interactions.transaction import BundleOptions, process_bundle
    from fhir_server.planning import conventions as fc
    from fhir_server.planning.operation_support import reading
    from fhir_server.planning.record import read_plans
    from fhir_server.planning.snapshot import plan_weeks
    from fhir_server.planning.weeks import start_of_day_us
    from tests.planning.enrolment import enrolment, exercise_feedback, step_observation, transaction

    def write(resources: list[dict[str, Any]], day: date, hour: int) -> None:
        now = start_of_day_us(day) + hour * 3_600_000_000
        process_bundle(repo, transaction(resources), BundleOptions(base_url="http://b", now=now))
        work = OutboxWorker(repo, HANDLERS, topic_handlers=TOPIC_HANDLERS)
        while work.run_once(now=now):
            now += 1

    write(enrolment(pid, start, start), start, 8)
    for week in range(1, weeks + 1):
        monday = start + timedelta(days=7 * (week - 1))
        with reading(repo) as source:
            plan = plan_weeks(read_plans(source, pid))[monday]
        details = [a["detail"] for a in plan.get("activity", [])]
        resources: list[dict[str, Any]] = [
            step_observation(f"{pid}-s{week}-{n}", pid, monday + timedelta(days=n), 5000 + 97 * n)
            for n in range(7)
        ]
        exercises = [d for d in details if d["kind"] == "ServiceRequest"]
        if exercises:
            exercise, level = exercises[0]["description"].split(", level ")
            resources.append(
                exercise_feedback(f"{pid}-fb{week}", pid, monday + timedelta(days=2), exercise,
                                  int(level), ("easy", "difficult")[week % 2])
            )  # fmt: skip
        messages = [
            d
            for d in details
            if d["kind"] == "CommunicationRequest" and "instantiatesCanonical" in d
        ]
        for n, message in enumerate(messages[:2]):
            resources.append(
                {
                    "resourceType": "Communication",
                    "id": f"{pid}-read{week}-{n}",
                    "status": "completed",
                    "instantiatesCanonical": message["instantiatesCanonical"],
                    "subject": {"reference": f"Patient/{pid}"},
                    "received": f"{(monday + timedelta(days=3)).isoformat()}T19:00:00Z",
                    "extension": [{"url": fc.EXT_QUIZ_PASSED, "valueBoolean": n == 0}],
                }
            )
        saturday = monday + timedelta(days=5)
        resources.append(_check_in(f"{pid}-w{week}", pid, saturday, week, sparse))
        write(resources, saturday, 8)
    return start + timedelta(days=7 * weeks)


def measure_server(
    history_weeks: int, patients: int, repeat: int, database_url: str | None, sparse: bool
) -> dict[str, object]:
    import tempfile

    from fhir_server.events.handlers import HANDLERS
    from fhir_server.planning.operation_support import reading
    from fhir_server.planning.record import read_history, read_plans
    from fhir_server.planning.snapshot import build_snapshot
    from fhir_server.storage.database import open_database
    from fhir_server.storage.migrate import upgrade
    from fhir_server.storage.repository import Repository

    with tempfile.TemporaryDirectory() as folder:
        url = database_url or f"sqlite:///{folder}/history.sqlite"
        database = open_database(url)
        upgrade(database)
        repo = Repository(database, event_types=frozenset(HANDLERS))
        start = date(2026, 3, 2)
        run = f"h{history_weeks}-{time.time_ns() % 10**9}"
        written = time.perf_counter()
        pids = [f"{run}-{n}" for n in range(patients)]
        as_of = {pid: _write_history(repo, pid, history_weeks, start, sparse) for pid in pids}
        written = time.perf_counter() - written
        timed: dict[str, list[float]] = {k: [] for k in ("before", "after", "before+", "after+")}
        counts: dict[str, tuple[int, int]] = {}
        for pid in pids:
            for _ in range(repeat):
                for name in ("before", "after"):
                    with reading(repo) as session:
                        source = _Counting(session)
                        clock = time.process_time()
                        if name == "before":
                            record = _read_everything(source, pid)
                        else:
                            record = read_history(source, read_plans(source, pid), as_of[pid])
                        read = time.process_time()
                        build_snapshot(record, as_of[pid])
                        built = time.process_time()
                    timed[name].append((read - clock) * 1000)
                    timed[name + "+"].append((built - clock) * 1000)
                    counts[name] = (source.searches, source.returned)
        database.dispose()

    def spread(values: list[float]) -> dict[str, float]:
        return {"p50": round(percentile(values, 50), 2), "p95": round(percentile(values, 95), 2)}

    return {
        "history_weeks": history_weeks,
        "database": url.split(":", 1)[0] if database_url else "sqlite",
        "reads_timed": len(timed["after"]),
        "write_history_wall_s": round(written, 1),
        "check_ins": "pain only" if sparse else "every answer",
        "before_cpu_ms": spread(timed["before"]),
        "after_cpu_ms": spread(timed["after"]),
        "before_with_snapshot_cpu_ms": spread(timed["before+"]),
        "after_with_snapshot_cpu_ms": spread(timed["after+"]),
        "searches": {"before": counts["before"][0], "after": counts["after"][0]},
        "resources_returned": {"before": counts["before"][1], "after": counts["after"][1]},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--history", default="4,52", help="comma-separated weeks of history")
    parser.add_argument("--patients", type=int, default=None, help="10; with --server 2")
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--server", action="store_true", help="time the server's reader")
    parser.add_argument("--database-url", default=None, help="with --server (default SQLite)")
    parser.add_argument("--sparse", action="store_true", help="with --server: pain-only check-ins")
    args = parser.parse_args(argv)
    weeks = [int(h) for h in args.history.split(",")]
    if args.server:
        patients = args.patients or 2
        results = [
            measure_server(h, patients, args.repeat, args.database_url, args.sparse) for h in weeks
        ]
        print(json.dumps(results, indent=1))
        return 0
    results = [measure(h, args.patients or 10, args.repeat, args.seed) for h in weeks]
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
