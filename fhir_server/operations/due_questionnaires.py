"""Patient/{id}/$due-questionnaires: the questions the patient app should ask now.

Our operation (OperationDefinition ``Patient-due-questionnaires`` under
http://selfback.example.org/fhir/OperationDefinition/, published with the content). It
serves over HTTP what ``mappings.due_groups`` decides (the weekly schedule,
mappings/data/weekly_schedule.json), so the app needs no copy of the schedule:

- no completed baseline yet: the baseline Questionnaire;
- a baseline but no goal-setting answers yet: the goal-setting Questionnaire (asked after
  the baseline, selfBACK "goal setting and action planning");
- from the end of the first programme week: the weekly check-in with only the groups due
  this week (``week`` = completed programme weeks on ``asOf``; conditions read the
  baseline scores and last week's mean daily steps against the goal).

Answer: a ``Parameters`` with ``week``, ``asOf`` and one ``questionnaire`` parameter per
due Questionnaire (parts ``canonical``, ``group`` per due group, ``resource``: the
Questionnaire with only the due items, keeping its url and version so a response names the
real one). GET is allowed (it changes nothing); access is a read of the Patient, as for
every instance operation (fhir_server/api/routes.py authorize_operation): the patient's own
token, or a clinician the access decision lets read the patient.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from fhir_server.operations import Operation, OperationCall, OperationResult
from fhir_server.planning import conventions as fc
from fhir_server.planning.operation_support import as_of_parameter, reading, today, unplannable
from fhir_server.planning.record import read_history, read_plans
from fhir_server.planning.snapshot import (
    PatientRecord,
    PlanningInputError,
    answered_questionnaires,
    baseline_score_values,
    build_snapshot,
    programme_start,
)
from fhir_server.storage.repository import Repository
from mappings import due_groups, due_questionnaire, questionnaire

DEFINITION_BASE = "http://selfback.example.org/fhir/OperationDefinition"


def completed_weeks(start: date, as_of: date) -> int:
    """Programme weeks completed on ``as_of`` (1 = the end of the first week), the week
    the weekly schedule counts (weekly_schedule.json ``weekRule``)."""
    return max(0, (as_of - start).days // 7)


def step_goal_fraction(record: PatientRecord, as_of: date) -> float | None:
    """Last week's mean daily steps (valid days) over the newest plan's goal; None when
    unknown (the schedule then asks rather than drops a question)."""
    try:
        snapshot = build_snapshot(record, as_of)
    except PlanningInputError:
        return None
    earlier = [p for p in snapshot.previous_plans if p.week_start < as_of]
    if not earlier or earlier[-1].step_goal <= 0:
        return None
    days = [
        d.steps
        for d in snapshot.step_days
        if d.valid and as_of - timedelta(days=7) <= d.day < as_of
    ]
    if not days:
        return None
    return sum(days) / len(days) / earlier[-1].step_goal


def _entry(resource: dict[str, Any], groups: list[str] | None) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [
        {"name": "canonical", "valueCanonical": f"{resource['url']}|{resource['version']}"}
    ]
    parts += [{"name": "group", "valueString": g} for g in groups or []]
    parts.append({"name": "resource", "resource": resource})
    return {"name": "questionnaire", "part": parts}


def due_parameters(record: PatientRecord, as_of: date) -> dict[str, Any]:
    """The answer for ``record`` on ``as_of`` (pure)."""
    start = programme_start(record.programme_plan)
    week = completed_weeks(start, as_of)
    due: list[dict[str, Any]] = []
    baseline = baseline_score_values(record)
    if baseline is None:
        found = questionnaire(fc.BASELINE_QUESTIONNAIRE)
        assert found is not None
        due.append(_entry(found, None))
    else:
        if fc.GOAL_SETTING_QUESTIONNAIRE not in answered_questionnaires(
            record, as_of + timedelta(days=1)
        ):
            found = questionnaire(fc.GOAL_SETTING_QUESTIONNAIRE)
            assert found is not None
            due.append(_entry(found, None))
        if week >= 1:
            weekly = questionnaire(fc.WEEKLY_QUESTIONNAIRE)
            assert weekly is not None
            groups = due_groups(week, baseline, step_goal_fraction(record, as_of))
            due.append(_entry(due_questionnaire(weekly, groups), groups))
    return {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "week", "valueInteger": week},
            {"name": "asOf", "valueDate": as_of.isoformat()},
            *due,
        ],
    }


def due_questionnaires(repo: Repository, call: OperationCall) -> OperationResult:
    assert call.id is not None
    as_of = as_of_parameter(call) or today(call)
    try:
        with reading(repo) as source:
            plans = read_plans(source, call.id)
            record = read_history(source, plans, as_of)
            answer = due_parameters(record, as_of)
    except PlanningInputError as exc:
        raise unplannable(exc) from exc
    return OperationResult(200, answer)


DUE_QUESTIONNAIRES = Operation(
    name="due-questionnaires",
    levels=frozenset({"instance"}),
    run=due_questionnaires,
    definition=f"{DEFINITION_BASE}/Patient-due-questionnaires",
    types=frozenset({"Patient"}),
    changes_state=False,
)
