"""Planning through the outbox: after a scored response, and on the weekly schedule.

- ``QuestionnaireResponse`` (resource-written): after scoring, a response to the baseline,
  the weekly check-in or exercise feedback leaves a ``plan-trigger`` event in the same
  transaction; its handler plans in a later transaction, so it reads the committed scores,
  and a planning failure is retried on its own without re-scoring.
- ``plan-trigger``: plans the week the response's date falls before (weeks.target_week).
- ``CarePlan`` (resource-written): a programme CarePlan starts its weekly schedule.
- ``weekly-plan``: plans the week that begins now unless it has a plan, then schedules the
  next week.

Handlers are deterministic in their event: the plan's ``as_of`` and the snapshot come from
the stored data and the event, never from the worker's clock (which only stamps versions and
decides the first week of a new schedule). A trigger whose data cannot be planned from
(no baseline yet, not enrolled) is a fact about the data, kept as the event's note.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson

from fhir_server.errors import FhirError
from fhir_server.events.outbox import OutboxEvent, schedule
from fhir_server.planning import conventions as fc
from fhir_server.planning.record import read_plans
from fhir_server.planning.run import PlanRun, decide_week, plan_and_store
from fhir_server.planning.schedule import WEEKLY_PLAN, schedule_week, start_schedule
from fhir_server.planning.snapshot import (
    PatientRecord,
    PlanningInputError,
    day_of,
    plan_weeks,
    programme_start,
)
from fhir_server.planning.store import store_decision
from fhir_server.planning.weeks import day_of_us, week_number
from fhir_server.storage.repository import WriteSession
from plan_engine import PlanDecision, codes

PLAN_TRIGGER = "plan-trigger"


def _subject_patient(resource: dict[str, Any]) -> str | None:
    reference = str((resource.get("subject") or {}).get("reference") or "")
    return reference.split("/", 1)[1] if reference.startswith("Patient/") else None


def enqueue_planning(session: WriteSession, event: OutboxEvent, now: int) -> str | None:
    """After scoring: leave a plan-trigger event for a response the engine plans from."""
    stored = session.vread(event.rtype, event.res_id, event.version)
    if stored is None or stored.deleted:
        return None
    response = orjson.loads(stored.body)
    questionnaire = str(response.get("questionnaire") or "").split("|", 1)[0]
    if questionnaire not in fc.PLANNING_QUESTIONNAIRES or _subject_patient(response) is None:
        return None
    if response.get("status") not in ("completed", "amended"):
        return None
    schedule(
        session.conn,
        topic=PLAN_TRIGGER,
        rtype=event.rtype,
        res_id=event.res_id,
        version=event.version,
        at=now,
        now=now,
    )
    return "planning queued"


def plan_after_response(session: WriteSession, event: OutboxEvent, now: int) -> str | None:
    stored = session.vread(event.rtype, event.res_id, event.version)
    if stored is None or stored.deleted:
        return "response version gone"
    response = orjson.loads(stored.body)
    patient_id = _subject_patient(response)
    day = day_of(response.get("authored")) or day_of_us(stored.last_updated)
    if patient_id is None:
        return "no patient subject"
    questionnaire = str(response.get("questionnaire") or "").split("|", 1)[0]
    try:
        if questionnaire == fc.BASELINE_QUESTIONNAIRE and plan_weeks(
            read_plans(session, patient_id)
        ):
            # The baseline makes the first plan when the schedule could not (it came
            # first); once there are plans, the weekly check-ins and the schedule go on.
            return "baseline: planned already"
        if questionnaire in fc.REPLAN_IF_CHANGED:
            # A mental-health, pain-perception or goal-setting response re-plans only when
            # it changes a decision: an unchanged plan is not written again under new ids.
            proposed = decide_week(session, patient_id, as_of=None, today=day)
            stored_plan = plan_weeks(proposed.record).get(proposed.decision.as_of)
            if stored_plan is not None and same_decision(
                session, stored_plan, proposed.record, proposed.decision
            ):
                return (
                    f"week {proposed.decision.week_number} ({proposed.decision.as_of}): "
                    "decision unchanged, not re-planned"
                )
            stored = store_decision(session, proposed.decision, proposed.record, now=now)
            return _note(PlanRun(proposed.decision, proposed.record, stored))
        run = plan_and_store(session, patient_id, as_of=None, today=day, now=now)
    except PlanningInputError as exc:
        return f"not planned: {exc}"
    except FhirError as exc:  # the patient is gone (404): nothing to plan for
        return f"not planned: {exc}"
    return _note(run)


def start_programme_schedule(session: WriteSession, event: OutboxEvent, now: int) -> str | None:
    """A programme CarePlan written: start its weekly schedule (once)."""
    stored = session.vread(event.rtype, event.res_id, event.version)
    if stored is None or stored.deleted:
        return None
    plan = orjson.loads(stored.body)
    if plan.get("status") != "active" or not _is_programme(plan):
        return None
    try:
        start = programme_start(plan)
    except PlanningInputError as exc:
        return f"no schedule: {exc}"
    if start_schedule(session, plan["id"], start, day_of_us(now), now=now):
        return "weekly schedule started"
    return None


def plan_scheduled_week(session: WriteSession, event: OutboxEvent, now: int) -> str | None:
    current = session.read("CarePlan", event.res_id)
    if current is None or current.deleted:
        return "programme plan gone: schedule ends"
    plan = orjson.loads(current.body)
    if plan.get("status") != "active" or not _is_programme(plan):
        return f"programme plan {plan.get('status')}: schedule ends"
    patient_id = _subject_patient(plan)
    try:
        start = programme_start(plan)
    except PlanningInputError as exc:
        return f"schedule ends: {exc}"
    week = event.version
    boundary = start + timedelta(days=7 * (week - 1))
    schedule_week(session, plan["id"], start, week + 1, now=now)
    if patient_id is None:
        return "no patient subject"
    try:
        record = read_plans(session, patient_id)
        if record.programme_plan["id"] != plan["id"]:
            return "not the patient's current programme plan: not planned"
        if boundary in plan_weeks(record):
            return f"week {week_number(start, boundary)} already planned"
        run = plan_and_store(session, patient_id, as_of=boundary, today=boundary, now=now)
    except PlanningInputError as exc:
        return f"not planned: {exc}"
    except FhirError as exc:
        return f"not planned: {exc}"
    return _note(run)


def _activity_canonicals(plan: dict[str, Any]) -> list[str]:
    return sorted(
        str((a.get("detail") or {}).get("instantiatesCanonical") or [])
        for a in plan.get("activity") or []
    )


def same_decision(
    session: WriteSession, stored: dict[str, Any], record: PatientRecord, decision: PlanDecision
) -> bool:
    """Whether ``decision`` decides what the plan stored for its week decided: status, mode
    (category), the activities (exercise levels, education, safety message), the step goal
    and the findings. Ids, inputs and reasons may differ."""
    proposed = next(r for r in decision.resources if r["resourceType"] == "CarePlan")
    if stored.get("status") != proposed.get("status"):
        return False
    if stored.get("category") != proposed.get("category"):
        return False
    if _activity_canonicals(stored) != _activity_canonicals(proposed):
        return False
    goal_ids = {str(g.get("reference", "")).split("/", 1)[-1] for g in stored.get("goal") or []}
    stored_goals = [
        orjson.loads(found.body)
        for gid in sorted(goal_ids)
        if (found := session.read("Goal", gid)) is not None and not found.deleted
    ]
    stored_steps = {
        (t.get("detailQuantity") or {}).get("value")
        for g in stored_goals
        for t in g.get("target") or []
        if t.get("detailQuantity")
    }
    if decision.step_goal is None:
        if stored_steps:
            return False
    elif stored_steps != {decision.step_goal.steps_per_day}:
        return False
    week = decision.as_of.isoformat()
    raised = {
        c.get("code")
        for issue in record.detected_issues
        if str(issue.get("identifiedDateTime") or "")[:10] == week
        and issue.get("status") not in ("cancelled", "entered-in-error")
        for c in (issue.get("code") or {}).get("coding") or []
        if c.get("system") == codes.PLAN_RULE
    }
    return raised == {f.id for f in decision.findings}


def _is_programme(plan: dict[str, Any]) -> bool:
    return any(
        c.get("system") == fc.CAREPLAN_KIND and c.get("code") == fc.PROGRAMME
        for concept in plan.get("category") or []
        for c in concept.get("coding") or []
    )


def _note(run: Any) -> str:
    decision = run.decision
    stored = run.stored
    written = len(stored.written) if stored else 0
    return (
        f"week {decision.week_number} ({decision.as_of}) {decision.status}/{decision.mode}: "
        f"{written} versions written"
    )


__all__ = [
    "PLAN_TRIGGER",
    "WEEKLY_PLAN",
    "enqueue_planning",
    "plan_after_response",
    "plan_scheduled_week",
    "start_programme_schedule",
]
