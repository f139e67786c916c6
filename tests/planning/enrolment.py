"""Builders for an enrolled patient as the app and the clinic write it: Patient, the
responsible PractitionerRole, the programme CarePlan, the baseline and weekly responses,
exercise feedback, daily steps and a clinician's step goal (docs/PLAN_ENGINE.md, "In the
server", lists these conventions)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from fhir_server.planning import conventions as fc
from mappings import red_flag_items
from tests.mappings.qr_builder import build_response

# Baseline answers: pain 5/7, RMDQ 10, STarT Back medium, no comorbidity.
BASELINE: dict[str, Any] = {
    "age": 47,
    "sex": "female",
    "height": 168,
    "weight": 70,
    "living-with": "lives-with-partner",
    "education": "edu-gt-12",
    "employment": "employed",
    "job-physical-demand": "job-mostly-sitting",
    "lbp-days-12m": "lbp-days-8-30",
    "activity-reduced-work": False,
    "activity-reduced-leisure": True,
    "analgesic-days": 2,
    "psfs-1-activity": "Gardening",
    "psfs-1-score": 5,
    "psfs-2-activity": "Cycling",
    "psfs-2-score": 6,
    "nrs-pain-average": 5,
    "nrs-pain-worst": 7,
    "fear-avoidance-item": 4,
    "episode-duration": "episode-5-12w",
    **{f"rmdq-{i}": i <= 10 for i in range(1, 25)},
    **{f"fabq-{i}": 3 for i in range(1, 6)},
    **{f"pseq-{i}": 4 for i in range(1, 11)},
    **{f"sbst-{i}": "agree" if i in (1, 2, 5) else "disagree" for i in range(1, 9)},
    "sbst-9": "slightly",
    "comorbidity": "comorbidity-none",
}


# Every red-flag item of the weekly check-in and the baseline safety check, answered no
# (the items are those whose Questionnaire.item.code is a red-flag code).
NO_RED_FLAGS = {link_id: False for link_id in red_flag_items()[fc.WEEKLY_QUESTIONNAIRE]}
NO_BASELINE_RED_FLAGS = {link_id: False for link_id in red_flag_items()[fc.BASELINE_QUESTIONNAIRE]}


def patient(pid: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "1979-03-02"}


def practitioner_role(rid: str) -> dict[str, Any]:
    return {"resourceType": "PractitionerRole", "id": rid, "active": True}


def programme_plan(
    cid: str,
    pid: str,
    role: str,
    start: date,
    *,
    minutes: int | None = 15,
    excluded: tuple[str, ...] = (),
) -> dict[str, Any]:
    plan: dict[str, Any] = {
        "resourceType": "CarePlan",
        "id": cid,
        "status": "active",
        "intent": "plan",
        "category": [{"coding": [{"system": fc.CAREPLAN_KIND, "code": fc.PROGRAMME}]}],
        "title": "SelfBACK self-management programme",
        "subject": {"reference": f"Patient/{pid}"},
        "period": {"start": start.isoformat()},
        "author": {"reference": f"PractitionerRole/{role}"},
    }
    if minutes is not None:
        plan["extension"] = [{"url": fc.EXT_EXERCISE_MINUTES, "valueInteger": minutes}]
    if excluded:
        plan["activity"] = [
            {
                "detail": {
                    "kind": "ServiceRequest",
                    "instantiatesCanonical": [
                        f"http://selfback.example.org/fhir/ActivityDefinition/exercise-{e}-l1"
                    ],
                    "status": "not-started",
                    "doNotPerform": True,
                    "description": f"Not {e}: clinician's exclusion",
                }
            }
            for e in excluded
        ]
    return plan


def _response(qid: str, rid: str, pid: str, answers: dict[str, Any], day: date) -> dict[str, Any]:
    response = build_response(qid, answers, rid=rid)
    response["subject"] = {"reference": f"Patient/{pid}"}
    response["source"] = {"reference": f"Patient/{pid}"}
    response["authored"] = f"{day.isoformat()}T08:00:00Z"
    return response


def baseline_response(rid: str, pid: str, day: date, **changes: Any) -> dict[str, Any]:
    answers = {**BASELINE, **NO_BASELINE_RED_FLAGS, **changes}
    return _response("selfback-baseline", rid, pid, answers, day)


def weekly_response(
    rid: str, pid: str, day: date, *, pain: int, red_flags: dict[str, bool] | None = None
) -> dict[str, Any]:
    answers = {**NO_RED_FLAGS, **(red_flags or {}), "nrs-pain-average": pain}
    return _response("selfback-weekly", rid, pid, answers, day)


def exercise_feedback(
    rid: str, pid: str, day: date, exercise: str, level: int, reason: str
) -> dict[str, Any]:
    answers = {
        "exercise": exercise,
        "exercise-level": level,
        "exercise-outcome": "exercise-replaced",
        "replace-reason": reason,
    }
    return _response("selfback-exercise-feedback", rid, pid, answers, day)


def step_observation(
    oid: str, pid: str, day: date, steps: int, valid: bool = True
) -> dict[str, Any]:
    observation: dict[str, Any] = {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "activity",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": "41950-7"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": day.isoformat(),
        "valueQuantity": {
            "value": steps,
            "unit": "steps/day",
            "system": "http://unitsofmeasure.org",
            "code": "/d",
        },
    }
    if not valid:
        observation["extension"] = [{"url": fc.EXT_STEP_DAY_VALID, "valueBoolean": False}]
    return observation


def steps_before(pid: str, end: date, days: int = 14, steps: int = 5200) -> list[dict[str, Any]]:
    """``days`` daily counts on the days before ``end``."""
    return [
        step_observation(f"{pid}-steps-{n}", pid, end - timedelta(days=n), steps + 37 * n)
        for n in range(1, days + 1)
    ]


def clinician_goal(gid: str, pid: str, role: str, steps: int, start: date) -> dict[str, Any]:
    return {
        "resourceType": "Goal",
        "id": gid,
        "lifecycleStatus": "active",
        "description": {"text": f"{steps} steps a day, fixed by the physiotherapist"},
        "subject": {"reference": f"Patient/{pid}"},
        "startDate": start.isoformat(),
        "expressedBy": {"reference": f"PractitionerRole/{role}"},
        "target": [
            {
                "measure": {"coding": [{"system": "http://loinc.org", "code": "41950-7"}]},
                "detailQuantity": {
                    "value": steps,
                    "unit": "steps/day",
                    "system": "http://unitsofmeasure.org",
                    "code": "/d",
                },
            }
        ],
        "note": [{"text": "Knee surgery planned: keep the goal fixed"}],
    }


def enrolment(pid: str, start: date, today: date, **plan: Any) -> list[dict[str, Any]]:
    """Everything an enrolment writes: patient, clinician role, programme plan, the
    baseline (answered on ``start``) and 14 days of steps before ``today``."""
    role = f"{pid}-physio"
    return [
        patient(pid),
        practitioner_role(role),
        programme_plan(f"{pid}-programme", pid, role, start, **plan),
        baseline_response(f"{pid}-baseline", pid, start),
        *steps_before(pid, today),
    ]


def transaction(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": r,
                "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
            }
            for r in resources
        ],
    }


def goal_setting_response(pid: str, day: date, **answers: Any) -> dict[str, Any]:
    """The goal-setting answers (Questionnaire selfback-goal-setting), days Mon/Wed/Fri."""
    given = {
        "goal-steps": 5000,
        "goal-days": "mon",
        "goal-minutes": 20,
        "goal-what-matters": "Playing football with my son",
        **answers,
    }
    response = _response("selfback-goal-setting", "x", pid, given, day)
    days = ["mon", "wed", "fri"]
    for item in response["item"]:
        if item["linkId"] == "goal-days":
            item["answer"] = [
                {
                    "valueCoding": {
                        "system": "http://hl7.org/fhir/days-of-week",
                        "code": d,
                        "display": {"mon": "Monday", "wed": "Wednesday", "fri": "Friday"}[d],
                    }
                }
                for d in days
            ]
    return response
