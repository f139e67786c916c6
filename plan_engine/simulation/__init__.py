"""Cohort simulator: synthetic selfBACK-like patients run through the engine week by week.

Pure and deterministic: seeded randomness only, no clock, no I/O (the CLI in ``__main__``
prints). The engine is passed in, so benchmarks can time it::

    from plan_engine.simulation import CohortSpec, run_cohort
    report = run_cohort(CohortSpec(patients=1000, weeks=12, seed=7))

docs/SIMULATION.md describes the model, the report fields and a committed report.
"""

from __future__ import annotations

from typing import Any

from plan_engine import decide_plan
from plan_engine.simulation.metrics import build_report
from plan_engine.simulation.population import SyntheticPatient, draw_patient
from plan_engine.simulation.runner import (
    Decide,
    PatientRun,
    PatientTrace,
    WeekRecord,
    simulate_cohort,
    simulate_patient,
)
from plan_engine.simulation.spec import CohortSpec


def run_cohort(spec: CohortSpec, decide: Decide = decide_plan) -> dict[str, Any]:
    """Simulate every patient of ``spec`` and return the report (a JSON-ready dict)."""
    return build_report(spec, simulate_cohort(spec, decide))


__all__ = [
    "CohortSpec",
    "Decide",
    "PatientRun",
    "PatientTrace",
    "SyntheticPatient",
    "WeekRecord",
    "build_report",
    "draw_patient",
    "run_cohort",
    "simulate_cohort",
    "simulate_patient",
]
