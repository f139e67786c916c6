"""One planning run: read the patient's data, decide the week's plan, and (optionally) store it.

Used by the outbox handlers (a check-in or exercise feedback arrived; the weekly schedule
came due) and by the operations (``$apply``, ``$plan-week``, ``$plan-week-dry-run``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from fhir_server.planning.record import ResourceSource, read_history, read_plans
from fhir_server.planning.snapshot import (
    PatientRecord,
    PlanningInputError,
    build_snapshot,
    plan_weeks,
    programme_start,
)
from fhir_server.planning.store import StoredDecision, store_decision
from fhir_server.planning.weeks import target_week
from fhir_server.storage.repository import WriteSession
from plan_engine import PlanDecision, SnapshotError, decide_plan


@dataclass(frozen=True, slots=True)
class PlanRun:
    decision: PlanDecision
    record: PatientRecord
    stored: StoredDecision | None = None


def decide_week(
    source: ResourceSource, patient_id: str, *, as_of: date | None, today: date
) -> PlanRun:
    """The decision for the week starting ``as_of``; without ``as_of``, for the week a
    trigger on ``today`` plans (weeks.target_week). Raises ``PlanningInputError`` when the
    data cannot be planned from and a 404 FhirError for an unknown patient."""
    plans = read_plans(source, patient_id)
    start = programme_start(plans.programme_plan)
    if as_of is None:
        as_of = target_week(start, today, set(plan_weeks(plans)))
    if as_of < start:
        raise PlanningInputError(f"The plan week {as_of} starts before the programme ({start})")
    # Only the history window the engine plans from is read (record.read_history).
    record = read_history(source, plans, as_of)
    snapshot = build_snapshot(record, as_of)
    try:
        decision = decide_plan(snapshot, as_of)
    except SnapshotError as exc:
        raise PlanningInputError("; ".join(exc.issues)) from exc
    return PlanRun(decision, record)


def plan_and_store(
    session: WriteSession, patient_id: str, *, as_of: date | None, today: date, now: int
) -> PlanRun:
    run = decide_week(session, patient_id, as_of=as_of, today=today)
    stored = store_decision(session, run.decision, run.record, now=now)
    return PlanRun(run.decision, run.record, stored)
