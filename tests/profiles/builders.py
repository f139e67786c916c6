"""Small valid resources for the validator tests: one per profile, changed per test case."""

from __future__ import annotations

import copy
from typing import Any

import profiles

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
NARRATIVE = '<div xmlns="http://www.w3.org/1999/xhtml">generated for a test</div>'


def _text() -> dict[str, str]:
    return {"status": "generated", "div": NARRATIVE}


def patient(*identifiers: dict[str, Any]) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": "p-1",
        "meta": {"profile": [profiles.PATIENT]},
        "text": _text(),
        "name": [{"family": "Jensen", "given": ["Anna"]}],
        "gender": "female",
        "birthDate": "1958-08-01",
    }
    if identifiers:
        resource["identifier"] = list(identifiers)
    return resource


def nhs_number(value: str) -> dict[str, str]:
    return {"system": profiles.NHS_NUMBER_SYSTEM, "value": value}


def cpr_number(value: str) -> dict[str, str]:
    return {"use": "official", "system": profiles.CPR_SYSTEM, "value": value}


def daily_steps(steps: int = 6345) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": "steps-1",
        "meta": {"profile": [profiles.DAILY_STEPS]},
        "text": _text(),
        "status": "final",
        "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "activity"}]}],
        "code": {
            "coding": [
                {
                    "system": LOINC,
                    "code": "41950-7",
                    "display": "Number of steps in 24 hour Measured",
                }
            ]
        },
        "subject": {"reference": "Patient/p-1"},
        "effectiveDateTime": "2026-03-01",
        "valueQuantity": {"value": steps, "unit": "steps/day", "system": UCUM, "code": "/d"},
    }


def prom_score() -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": "score-1",
        "meta": {"profile": [profiles.PROM_SCORE]},
        "text": _text(),
        "status": "final",
        "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "survey"}]}],
        "code": {
            "coding": [
                {
                    "system": "http://selfback.example.org/fhir/CodeSystem/assessment",
                    "code": "rmdq-total",
                }
            ]
        },
        "subject": {"reference": "Patient/p-1"},
        "effectiveDateTime": "2026-03-01T10:00:00+01:00",
        "valueInteger": 7,
        "method": {
            "coding": [
                {
                    "system": "http://selfback.example.org/fhir/CodeSystem/scoring-algorithm",
                    "code": "rmdq-total",
                    "version": "1.0.0",
                }
            ]
        },
        "derivedFrom": [{"reference": "QuestionnaireResponse/qr-1"}],
    }


def weekly_careplan() -> dict[str, Any]:
    return {
        "resourceType": "CarePlan",
        "id": "plan-1",
        "meta": {"profile": [profiles.WEEKLY_CAREPLAN]},
        "text": _text(),
        "instantiatesCanonical": [
            "http://selfback.example.org/fhir/PlanDefinition/weekly-lbp-self-management|1.0.0"
        ],
        "status": "active",
        "intent": "plan",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://selfback.example.org/fhir/CodeSystem/plan-mode",
                        "code": "standard",
                    }
                ]
            }
        ],
        "subject": {"reference": "Patient/p-1"},
        "period": {"start": "2026-03-02", "end": "2026-03-08"},
        "author": {"display": "selfback plan_engine 1.0.0"},
    }


def programme_response() -> dict[str, Any]:
    return {
        "resourceType": "QuestionnaireResponse",
        "id": "qr-1",
        "meta": {"profile": [profiles.PROGRAMME_RESPONSE]},
        "text": _text(),
        "questionnaire": "http://selfback.example.org/fhir/Questionnaire/selfback-weekly|1.0.0",
        "status": "completed",
        "subject": {"reference": "Patient/p-1"},
        "authored": "2026-03-01T09:30:00+01:00",
        "item": [{"linkId": "nrs-pain-average", "answer": [{"valueInteger": 5}]}],
    }


def step_goal() -> dict[str, Any]:
    per_day = {"system": UCUM, "code": "/d", "unit": "steps/day"}
    measure = {"coding": [{"system": LOINC, "code": "41950-7"}]}
    return {
        "resourceType": "Goal",
        "id": "goal-1",
        "meta": {"profile": [profiles.STEP_GOAL]},
        "text": _text(),
        "lifecycleStatus": "active",
        "description": {"text": "Walk about 6000 steps a day"},
        "subject": {"reference": "Patient/p-1"},
        "startDate": "2026-03-02",
        "target": [
            {"measure": measure, "detailQuantity": {"value": 6000, **per_day}},
            {
                "measure": measure,
                "detailRange": {
                    "low": {"value": 5500, **per_day},
                    "high": {"value": 6500, **per_day},
                },
            },
        ],
    }


def data_sharing_consent() -> dict[str, Any]:
    return {
        "resourceType": "Consent",
        "id": "consent-1",
        "meta": {"profile": [profiles.DATA_SHARING_CONSENT]},
        "text": _text(),
        "status": "active",
        "scope": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                    "code": "patient-privacy",
                }
            ]
        },
        "category": [{"coding": [{"system": LOINC, "code": "59284-0"}]}],
        "patient": {"reference": "Patient/p-1"},
        "dateTime": "2026-03-01T09:00:00+01:00",
        "policyRule": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}
            ]
        },
        "provision": {
            "type": "permit",
            "period": {"start": "2026-03-01", "end": "2027-03-01"},
            "actor": [
                {
                    "role": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                "code": "IRCP",
                            }
                        ]
                    },
                    "reference": {"reference": "PractitionerRole/clinician-1"},
                }
            ],
            "action": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/consentaction",
                            "code": "access",
                        }
                    ]
                }
            ],
        },
    }


VALID_BY_PROFILE = {
    profiles.PATIENT: lambda: patient(nhs_number("9434765919")),
    profiles.DAILY_STEPS: daily_steps,
    profiles.PROM_SCORE: prom_score,
    profiles.WEEKLY_CAREPLAN: weekly_careplan,
    profiles.PROGRAMME_RESPONSE: programme_response,
    profiles.STEP_GOAL: step_goal,
    profiles.DATA_SHARING_CONSENT: data_sharing_consent,
}


def changed(resource: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A deep copy with top-level properties replaced (None removes one)."""
    result = copy.deepcopy(resource)
    for key, value in changes.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = value
    return result
