"""Storing a plan decision: the week's resources and last week's plan closed, in one
transaction, through the normal write path (``interactions.update``).

Every resource is written with PUT under the id the engine derived from its decision key,
so storing the same decision twice writes nothing the second time (an update whose content
equals the current version makes no new version). Last week's plan -- the engine's
``replaces`` -- becomes ``completed``, or ``revoked`` when safety stops the new week (an
urgent finding: the new plan is ``on-hold``) or consent is withdrawn. A plan made earlier
for the *same* week from older data (a check-in re-planned the week before it began) is
``revoked`` and marked ``superseded-by`` the new one. Their Goals follow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fhir_server.formats.fhir_json import parse_fhir_json
from fhir_server.interactions.update import update
from fhir_server.planning import conventions as fc
from fhir_server.planning.snapshot import PatientRecord, plan_weeks
from fhir_server.storage.repository import WriteSession
from fhir_server.versioning import same_content
from plan_engine import PlanDecision


@dataclass(frozen=True, slots=True)
class StoredDecision:
    care_plan_id: str | None
    written: tuple[tuple[str, str, int], ...]  # (type, id, version) of every new version
    unchanged: int


def store_decision(
    session: WriteSession, decision: PlanDecision, record: PatientRecord, *, now: int
) -> StoredDecision:
    session.lock(f"plan/{decision.patient_id}")
    written: list[tuple[str, str, int]] = []
    unchanged = 0

    def put(resource: dict[str, Any]) -> None:
        nonlocal unchanged
        rtype, rid = resource["resourceType"], resource["id"]
        current = session.current(rtype, rid)
        if current is not None and not current.deleted and same_content(current.body, resource):
            unchanged += 1  # the same decision stored again: no new version
            return
        if rtype == "Communication" and current is not None and not current.deleted:
            # Once stored, an alert's Communication belongs to its delivery
            # (fhir_server.alerts): the same decision stored again must not put it back
            # to "preparation" or drop its delivery record.
            unchanged += 1
            return
        stored = update(session, rtype, rid, resource, now=now).stored
        assert stored is not None
        written.append((stored.rtype, stored.id, stored.version))

    for resource in decision.resources:
        put(resource)
    care_plans = decision.resources_of("CarePlan")
    care_plan_id = care_plans[0]["id"] if care_plans else None

    if decision.previous_plan_id is not None:
        stopped = decision.status in ("on-hold", "not-permitted")
        _close(session, decision.previous_plan_id, put, stopped=stopped, superseded_by=None)
    same_week = plan_weeks(record).get(decision.week_start)
    if same_week is not None and same_week["id"] != care_plan_id:
        _close(session, same_week["id"], put, stopped=True, superseded_by=care_plan_id)
    return StoredDecision(care_plan_id, tuple(written), unchanged)


def _close(
    session: WriteSession,
    plan_id: str,
    put: Any,
    *,
    stopped: bool,
    superseded_by: str | None,
) -> None:
    """Last week's plan -> completed (revoked when stopped); a same-week plan -> revoked and
    superseded-by. A plan already completed or revoked is left as it is; an on-hold plan
    (a safety stop) never ran, so it is revoked."""
    current = session.read("CarePlan", plan_id)
    if current is None or current.deleted:
        return
    plan = parse_fhir_json(current.body)  # written back: decimals as stored
    if plan.get("status") not in ("active", "on-hold"):
        return
    status = "revoked" if stopped or plan["status"] == "on-hold" else "completed"
    changed = {**plan, "status": status}
    changed.pop("meta", None)
    if superseded_by is not None:
        changed["extension"] = [
            *[e for e in plan.get("extension", []) if e.get("url") != fc.EXT_SUPERSEDED_BY],
            {
                "url": fc.EXT_SUPERSEDED_BY,
                "valueReference": {"reference": f"CarePlan/{superseded_by}"},
            },
        ]
    put(changed)
    for goal_ref in plan.get("goal", []):
        goal_id = str(goal_ref.get("reference", "")).removeprefix("Goal/")
        stored_goal = session.read("Goal", goal_id) if goal_id else None
        if stored_goal is None or stored_goal.deleted:
            continue
        goal = parse_fhir_json(stored_goal.body)
        if goal.get("lifecycleStatus") in ("active", "on-hold"):
            goal.pop("meta", None)
            put({**goal, "lifecycleStatus": "completed" if status == "completed" else "cancelled"})
