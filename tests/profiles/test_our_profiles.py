"""Our seven profiles: what they accept, what they refuse, and that what the plan engine and
the scoring emit conforms to them."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import pytest

import profiles
from mappings import score_observations, score_response
from plan_engine import decide_plan
from tests.mappings.qr_builder import AS_OF as SCORED_AT
from tests.mappings.qr_builder import build_response
from tests.plan_engine.pe_personas import AS_OF, PERSONAS
from tests.profiles.builders import (
    LOINC,
    OBSERVATION_CATEGORY,
    UCUM,
    VALID_BY_PROFILE,
    changed,
    daily_steps,
    data_sharing_consent,
    programme_response,
    prom_score,
    step_goal,
    weekly_careplan,
)

OURS = sorted(VALID_BY_PROFILE)


def _errors(resource: Any, urls: list[str] | None = None) -> list[tuple[str, str]]:
    return [(i.rule, i.expression[0]) for i in profiles.validate(resource, urls) if i.is_error]


def test_the_seven_profiles_are_packaged_under_our_canonical_base():
    urls = {sd["url"] for sd in profiles.our_structure_definitions()}
    assert urls == set(OURS)
    assert all(url.startswith(profiles.CANONICAL_BASE) for url in urls)
    assert set(OURS) <= set(profiles.known_profiles())


@pytest.mark.parametrize("url", OURS)
def test_a_minimal_conforming_instance_has_no_errors(url):
    assert _errors(VALID_BY_PROFILE[url]()) == []


@pytest.mark.parametrize("url", OURS)
def test_our_structure_definitions_are_valid_r4_structure_definitions(url):
    sd = next(sd for sd in profiles.our_structure_definitions() if sd["url"] == url)
    assert profiles.validate(sd) == []


@pytest.mark.parametrize("url", OURS)
def test_the_packaged_differential_is_the_authored_one(url):
    sd = next(sd for sd in profiles.our_structure_definitions() if sd["url"] == url)
    authored = json.loads(
        resources.files("profiles")
        .joinpath("differential", f"StructureDefinition-{sd['id']}.json")
        .read_text(encoding="utf-8")
    )
    assert sd["differential"] == authored["differential"]
    assert sd["snapshot"]["element"][0]["id"] == sd["type"]


PER_DAY = {"system": UCUM, "code": "/d", "unit": "steps/day"}

REFUSED = [
    # daily steps
    (
        "steps: another LOINC code",
        changed(daily_steps(), code={"coding": [{"system": LOINC, "code": "55423-8"}]}),
        ("pattern", "Observation.code"),
    ),
    (
        "steps: not in /d",
        changed(daily_steps(), valueQuantity={"value": 10, "system": UCUM, "code": "/wk"}),
        ("fixed", "Observation.value.ofType(Quantity).code"),
    ),
    ("steps: no value", changed(daily_steps(), valueQuantity=None), ("cardinality", "Observation")),
    (
        "steps: a fraction",
        changed(daily_steps(), valueQuantity={"value": 10.5, **PER_DAY}),
        ("selfback-steps-2", "Observation.value.ofType(Quantity)"),
    ),
    (
        "steps: negative",
        changed(daily_steps(), valueQuantity={"value": -1, **PER_DAY}),
        ("min-max-value", "Observation.value.ofType(Quantity).value"),
    ),
    (
        "steps: no effective time",
        changed(daily_steps(), effectiveDateTime=None),
        ("cardinality", "Observation"),
    ),
    (
        "steps: open period",
        changed(daily_steps(), effectiveDateTime=None, effectivePeriod={"start": "2026-03-01"}),
        ("selfback-steps-1", "Observation"),
    ),
    (
        "steps: instant is not allowed",
        changed(daily_steps(), effectiveDateTime=None, effectiveInstant="2026-03-01T00:00:00Z"),
        ("type", "Observation.effectiveInstant"),
    ),
    (
        "steps: not an activity observation",
        changed(
            daily_steps(),
            category=[{"coding": [{"system": OBSERVATION_CATEGORY, "code": "survey"}]}],
        ),
        ("slice-cardinality", "Observation"),
    ),
    (
        "steps: subject a group",
        changed(daily_steps(), subject={"reference": "Group/g"}),
        ("reference-target", "Observation.subject"),
    ),
    # PROM score
    (
        "score: code outside the score codes",
        changed(prom_score(), code={"coding": [{"system": LOINC, "code": "8867-4"}]}),
        ("binding", "Observation.code"),
    ),
    (
        "score: not derived from a response",
        changed(prom_score(), derivedFrom=None),
        ("cardinality", "Observation"),
    ),
    (
        "score: derived from an observation",
        changed(prom_score(), derivedFrom=[{"reference": "Observation/o"}]),
        ("reference-target", "Observation.derivedFrom[0]"),
    ),
    (
        "score: no scoring algorithm",
        changed(prom_score(), method={"text": "by hand"}),
        ("pattern", "Observation.method"),
    ),
    (
        "score: a period is not allowed",
        changed(prom_score(), effectiveDateTime=None, effectivePeriod={"start": "2026-03-01"}),
        ("type", "Observation.effectivePeriod"),
    ),
    (
        "score: not a survey",
        changed(
            prom_score(), category=[{"coding": [{"system": OBSERVATION_CATEGORY, "code": "exam"}]}]
        ),
        ("slice-cardinality", "Observation"),
    ),
    # weekly care plan
    (
        "plan: more than a week",
        changed(weekly_careplan(), period={"start": "2026-03-02", "end": "2026-03-10"}),
        ("selfback-careplan-2", "CarePlan"),
    ),
    (
        "plan: open-ended",
        changed(weekly_careplan(), period={"start": "2026-03-02"}),
        ("cardinality", "CarePlan.period"),
    ),
    (
        "plan: another plan definition",
        changed(weekly_careplan(), instantiatesCanonical=["http://x.org/PlanDefinition/p"]),
        ("selfback-careplan-1", "CarePlan"),
    ),
    ("plan: an order", changed(weekly_careplan(), intent="order"), ("fixed", "CarePlan.intent")),
    ("plan: no author", changed(weekly_careplan(), author=None), ("cardinality", "CarePlan")),
    # programme questionnaire response
    (
        "response: another questionnaire",
        changed(programme_response(), questionnaire="http://x.org/Questionnaire/q"),
        ("selfback-qr-1", "QuestionnaireResponse.questionnaire"),
    ),
    (
        "response: no subject",
        changed(programme_response(), subject=None),
        ("cardinality", "QuestionnaireResponse"),
    ),
    (
        "response: not dated",
        changed(programme_response(), authored=None),
        ("cardinality", "QuestionnaireResponse"),
    ),
    # step goal
    ("goal: no target", changed(step_goal(), target=None), ("cardinality", "Goal")),
    (
        "goal: another measure",
        changed(
            step_goal(),
            target=[
                {
                    "measure": {"coding": [{"system": LOINC, "code": "8867-4"}]},
                    "detailQuantity": {"value": 60, **PER_DAY},
                }
            ],
        ),
        ("pattern", "Goal.target[0].measure"),
    ),
    (
        "goal: steps per week",
        changed(
            step_goal(),
            target=[
                {
                    "measure": {"coding": [{"system": LOINC, "code": "41950-7"}]},
                    "detailQuantity": {"value": 42000, "system": UCUM, "code": "/wk"},
                }
            ],
        ),
        ("selfback-goal-1", "Goal.target[0]"),
    ),
    (
        "goal: band in the wrong unit",
        changed(
            step_goal(),
            target=[
                {
                    "measure": {"coding": [{"system": LOINC, "code": "41950-7"}]},
                    "detailRange": {
                        "low": {"value": 1, **PER_DAY},
                        "high": {"value": 2, "system": UCUM, "code": "/h"},
                    },
                }
            ],
        ),
        ("selfback-goal-1", "Goal.target[0]"),
    ),
    ("goal: no start", changed(step_goal(), startDate=None), ("cardinality", "Goal")),
    # data-sharing consent
    (
        "consent: research scope",
        changed(
            data_sharing_consent(),
            scope={
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                        "code": "research",
                    }
                ]
            },
        ),
        ("pattern", "Consent.scope"),
    ),
    (
        "consent: no LOINC category",
        changed(data_sharing_consent(), category=[{"text": "consent"}]),
        ("slice-cardinality", "Consent"),
    ),
    (
        "consent: opt-out",
        changed(
            data_sharing_consent(),
            policyRule={
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}
                ]
            },
        ),
        ("pattern", "Consent.policyRule"),
    ),
    (
        "consent: no provision",
        changed(data_sharing_consent(), provision=None),
        ("cardinality", "Consent"),
    ),
    (
        "consent: deny provision",
        changed(
            data_sharing_consent(), provision=dict(data_sharing_consent()["provision"], type="deny")
        ),
        ("fixed", "Consent.provision.type"),
    ),
    (
        "consent: nobody to share with",
        changed(
            data_sharing_consent(),
            provision={
                k: v for k, v in data_sharing_consent()["provision"].items() if k != "actor"
            },
        ),
        ("cardinality", "Consent.provision"),
    ),
]


@pytest.mark.parametrize(("name", "resource", "expected"), REFUSED, ids=[c[0] for c in REFUSED])
def test_each_profile_refuses_what_it_constrains(name, resource, expected):
    assert expected in _errors(resource)


def test_the_engines_step_goals_conform():
    for make in PERSONAS.values():
        for goal in decide_plan(make(), AS_OF).resources_of("Goal"):
            assert _errors(goal, [profiles.STEP_GOAL]) == []


def test_the_engines_weekly_plans_conform_but_for_empty_reason_arrays():
    # plan_engine writes "reasonCode": [] for activities without rule reasons; R4 json.html
    # forbids empty arrays, and nothing else in the plans breaks the profile.
    for make in PERSONAS.values():
        for plan in decide_plan(make(), AS_OF).resources_of("CarePlan"):
            errors = _errors(plan, [profiles.WEEKLY_CAREPLAN])
            assert all(
                rule == "empty-array" and where.endswith(".detail.reasonCode")
                for rule, where in errors
            ), errors


RESPONSES = [
    ("selfback-weekly", {"nrs-pain-average": 6, "pain-interference": 4, "pseq-5": 2, "pseq-9": 3}),
    (
        "selfback-mental-health",
        {**{f"phq-{i}": 2 for i in range(1, 9)}, **{f"pss-{i}": 2 for i in range(1, 11)}},
    ),
    (
        "selfback-pain-perception",
        {**{f"bipq-{i}": 6 for i in range(1, 9)}, **{f"pcs-{i}": 3 for i in range(1, 14)}},
    ),
]


@pytest.mark.parametrize(("qid", "answers"), RESPONSES, ids=[r[0] for r in RESPONSES])
def test_scored_responses_and_their_score_observations_conform(qid, answers):
    response = build_response(qid, answers, rid=f"qr-{qid}")
    assert _errors(response, [profiles.PROGRAMME_RESPONSE]) == []
    emitted = score_observations(response, score_response(response, SCORED_AT), SCORED_AT)
    observations = [r for r in emitted if r["resourceType"] == "Observation"]
    assert observations
    for observation in observations:
        assert _errors(observation, [profiles.PROM_SCORE]) == []
