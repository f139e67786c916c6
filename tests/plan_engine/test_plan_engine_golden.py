"""Golden plans for the personas: a readable summary plus the hash of the exact FHIR bytes.

A deliberate change to rules, texts or case base changes these files. Review the diff, then
regenerate with ``PLAN_ENGINE_UPDATE_GOLDEN=1 .venv/bin/pytest tests/plan_engine -k golden``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from pe_personas import AS_OF, PERSONAS

from plan_engine import PlanDecision, decide_plan

GOLDEN = Path(__file__).parent / "golden"


def summary(decision: PlanDecision) -> dict[str, Any]:
    goal = decision.step_goal
    return {
        "status": decision.status,
        "mode": decision.mode,
        "mode_reasons": [r.ref for r in decision.mode_reasons],
        "step_goal": None
        if goal is None
        else {
            "previous": goal.previous,
            "steps_per_day": goal.steps_per_day,
            "band": [goal.band_low, goal.band_high],
            "reasons": [r.ref for r in goal.reasons],
        },
        "exercises": [
            {
                "id": e.exercise_id,
                "level": e.level,
                "previous_level": e.previous_level,
                "reasons": [r.ref for r in e.reasons],
            }
            for e in decision.exercises
        ],
        "education": [
            {
                "day": i.day.isoformat(),
                "id": i.item_id,
                "quiz": i.as_quiz,
                "reasons": [r.ref for r in i.reasons],
            }
            for i in decision.education
        ],
        "findings": [{"id": f.id, "severity": f.severity} for f in decision.findings],
        "patient_message": decision.patient_message,
        "clinician_messages": [
            {"priority": m.priority, "text": m.text} for m in decision.clinician_messages
        ],
        "diff": [[d.element, d.change, d.before, d.after] for d in decision.diff],
        "cases": [[c.component, c.case_id, c.similarity] for c in decision.retrieved_cases],
        "resources": [r["resourceType"] for r in decision.resources],
        "fhir_sha256": hashlib.sha256(decision.to_json().encode()).hexdigest(),
    }


@pytest.mark.parametrize("name", sorted(PERSONAS))
def test_golden_plan(name: str) -> None:
    actual = summary(decide_plan(PERSONAS[name](), AS_OF))
    path = GOLDEN / f"{name}.json"
    if os.environ.get("PLAN_ENGINE_UPDATE_GOLDEN") == "1":
        path.write_text(json.dumps(actual, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    expected = json.loads(path.read_text(encoding="utf-8"))
    assert actual == expected


def _empties(value: object, path: str = "") -> list[str]:
    if value in ([], {}):
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _empties(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _empties(v, f"{path}[{i}]")]
    return []


@pytest.mark.parametrize("name", sorted(PERSONAS))
def test_output_has_no_empty_arrays_or_objects(name: str) -> None:
    """R4 json.html forbids empty arrays and objects; the server would refuse them."""
    decision = decide_plan(PERSONAS[name](), AS_OF)
    for resource in decision.resources:
        assert _empties(resource) == [], (resource["resourceType"], _empties(resource))
