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
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import fields
from datetime import date
from pathlib import Path

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--history", default="4,52", help="comma-separated weeks of history")
    parser.add_argument("--patients", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    results = [
        measure(int(h), args.patients, args.repeat, args.seed) for h in args.history.split(",")
    ]
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
