"""Clinician overrides within the rules' bounds, checked when they are written (issue 11, 3).

Two kinds of override reach the plan engine (docs/PLAN_ENGINE.md, "Clinician overrides"):

- a **fixed step goal**: an active ``Goal`` whose ``expressedBy`` is a Practitioner or
  PractitionerRole, with a LOINC 41950-7 target and a ``detailQuantity``. It must lie within
  ``step_goal.override_min_steps``..``override_max_steps`` of plan_engine/config/rules.json;
- an **excluded exercise**: a programme CarePlan activity with ``detail.doNotPerform`` true
  naming an exercise ActivityDefinition. It must name an exercise and a level the catalogue
  has (levels ``exercise.level_min``..``level_max``).

Anything else is refused with 422 and an OperationOutcome that names the bound, before it is
stored; the engine ignores an out-of-bounds goal that got in another way
(OVERRIDE-STEP-GOAL-REFUSED). Pure: the resource in, issues out.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from fhir_server.errors import Issue
from fhir_server.planning import conventions as fc
from plan_engine import codes, load_catalogue
from plan_engine.config import load_rules
from plan_engine.step_goal import override_refusal

_EXERCISE_DEFINITION = re.compile(r"^exercise-(?P<exercise>[a-z0-9-]+?)-l(?P<level>\d+)$")


def _is_clinician_goal(goal: dict[str, Any]) -> bool:
    author = str((goal.get("expressedBy") or {}).get("reference", ""))
    return author.startswith(("Practitioner/", "PractitionerRole/"))


def _measures_steps(target: dict[str, Any]) -> bool:
    return any(
        c.get("system") == codes.LOINC and c.get("code") == fc.LOINC_STEPS
        for c in (target.get("measure") or {}).get("coding") or []
    )


def _goal_issues(goal: dict[str, Any]) -> list[Issue]:
    if not _is_clinician_goal(goal) or goal.get("lifecycleStatus") != "active":
        return []
    rules = load_rules().step_goal
    issues = []
    for index, target in enumerate(goal.get("target") or []):
        if not _measures_steps(target):
            continue
        value = (target.get("detailQuantity") or {}).get("value")
        if not isinstance(value, int | float | Decimal) or isinstance(value, bool):
            continue
        refusal = override_refusal(int(value), rules) if value == int(value) else None
        if value != int(value):
            refusal = f"{value} steps/day is not a whole number of steps"
        if refusal is not None:
            issues.append(
                Issue(
                    "business-rule",
                    f"A clinician's fixed step goal must lie within "
                    f"{rules.override_min_steps}-{rules.override_max_steps} steps/day "
                    f"(plan_engine/config/rules.json step_goal): {refusal}",
                    expression=(f"Goal.target[{index}].detailQuantity.value",),
                )
            )
    return issues


def _is_programme(plan: dict[str, Any]) -> bool:
    return any(
        c.get("system") == fc.CAREPLAN_KIND and c.get("code") == fc.PROGRAMME
        for concept in plan.get("category") or []
        for c in concept.get("coding") or []
    )


def _exclusion_issues(plan: dict[str, Any]) -> list[Issue]:
    if not _is_programme(plan):
        return []
    catalogue = load_catalogue()
    rules = load_rules().exercise
    issues = []
    for a_index, activity in enumerate(plan.get("activity") or []):
        detail = activity.get("detail") or {}
        if detail.get("doNotPerform") is not True:
            continue
        for c_index, canonical in enumerate(detail.get("instantiatesCanonical") or []):
            url = str(canonical).split("|", 1)[0]
            if not url.startswith(f"{codes.CANONICAL_BASE}/ActivityDefinition/exercise-"):
                continue
            match = _EXERCISE_DEFINITION.match(url.rsplit("/", 1)[-1])
            where = (f"CarePlan.activity[{a_index}].detail.instantiatesCanonical[{c_index}]",)
            levels = catalogue.levels(match["exercise"]) if match is not None else ()
            if match is None or not levels:
                issues.append(
                    Issue(
                        "business-rule",
                        f"{url} is not an exercise of the catalogue",
                        expression=where,
                    )
                )
                continue
            level = int(match["level"])
            if level not in levels:
                issues.append(
                    Issue(
                        "business-rule",
                        f"{match['exercise']} has levels {min(levels)}-{max(levels)} in the "
                        f"catalogue (exercise levels {rules.level_min}-{rules.level_max}): "
                        f"level {level} cannot be excluded",
                        expression=where,
                    )
                )
    return issues


def override_issues(resource: dict[str, Any]) -> list[Issue]:
    """Why ``resource``, as a clinician override, breaks the rules' bounds (empty: it is
    within them, or it is not an override)."""
    kind = resource.get("resourceType")
    if kind == "Goal":
        return _goal_issues(resource)
    if kind == "CarePlan":
        return _exclusion_issues(resource)
    return []
