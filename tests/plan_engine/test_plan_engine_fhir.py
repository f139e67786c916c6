"""FHIR output: R4 validity, references, provenance, explanation and determinism."""

from __future__ import annotations

from dataclasses import replace

import pytest
from fhir.resources.R4B import get_fhir_model_class
from pe_personas import AS_OF, PERSONAS, progressing, red_flag

from plan_engine import codes, decide_plan, load_catalogue, versions

CATALOGUE = load_catalogue()
CANONICALS = {
    f"{d['url']}|{d['version']}"
    for d in CATALOGUE.all_definitions()
    if d["resourceType"] == "ActivityDefinition"
}


@pytest.mark.parametrize("name", sorted(PERSONAS))
def test_every_resource_validates_and_every_internal_reference_resolves(name: str) -> None:
    decision = decide_plan(PERSONAS[name](), AS_OF)
    emitted = {f"{r['resourceType']}/{r['id']}" for r in decision.resources}
    for resource in decision.resources:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    for care_plan in decision.resources_of("CarePlan"):
        assert {g["reference"] for g in care_plan.get("goal", [])} <= emitted
        for activity in care_plan.get("activity", []):
            for canonical in activity["detail"].get("instantiatesCanonical", []):
                assert canonical in CANONICALS
    for provenance in decision.resources_of("Provenance"):
        assert {t["reference"] for t in provenance["target"]} <= emitted
    for guidance in decision.resources_of("GuidanceResponse"):
        assert guidance["result"]["reference"] in emitted
        assert guidance["contained"][0]["id"] == "explanation"
    for message in decision.resources_of("Communication"):
        assert {a["reference"] for a in message["about"]} <= emitted


def test_weekly_care_plan_shape() -> None:
    decision = decide_plan(progressing(), AS_OF)
    care_plan = decision.resources_of("CarePlan")[0]
    assert care_plan["instantiatesCanonical"] == [
        f"{codes.PLAN_DEFINITION_URL}|{CATALOGUE.version}"
    ]
    assert care_plan["basedOn"] == [{"reference": "CarePlan/programme-1"}]
    assert care_plan["replaces"] == [{"reference": "CarePlan/week-3"}]
    assert care_plan["period"] == {"start": "2026-03-02", "end": "2026-03-08"}
    assert care_plan["status"] == "active" and care_plan["intent"] == "plan"
    kinds = [a["detail"]["kind"] for a in care_plan["activity"]]
    assert kinds.count("ServiceRequest") == 4 and kinds.count("CommunicationRequest") == 7
    goal = decision.resources_of("Goal")[0]
    assert goal["target"][0]["measure"]["coding"][0]["code"] == "41950-7"
    assert goal["target"][0]["detailQuantity"]["value"] == decision.step_goal.steps_per_day  # type: ignore[union-attr]


def test_provenance_names_inputs_previous_plan_and_versions() -> None:
    decision = decide_plan(progressing(), AS_OF)
    provenance = decision.resources_of("Provenance")[0]
    v = versions()
    assert provenance["recorded"] == "2026-03-02T00:00:00Z"
    assert {"role": "revision", "what": {"reference": "CarePlan/week-3"}} in provenance["entity"]
    assert {
        "role": "source",
        "what": {"reference": "QuestionnaireResponse/weekly-3"},
    } in provenance["entity"]
    assert f"{codes.RULESET_LIBRARY_URL}|{v.rules}" in provenance["policy"]
    assert f"{codes.CASE_BASE_LIBRARY_URL}|{v.case_base}" in provenance["policy"]
    assert provenance["agent"][0]["who"]["display"].endswith(v.engine)


def test_explanation_carries_reasons_cases_and_the_diff() -> None:
    decision = decide_plan(progressing(), AS_OF)
    parameters = decision.resources_of("GuidanceResponse")[0]["contained"][0]["parameter"]
    names = [p["name"] for p in parameters]
    assert names.count("exercise") == 4 and names.count("education") == 7
    assert "case" in names and "diff" in names and "step-goal" in names
    for p in parameters:
        if p["name"] in ("exercise", "education", "step-goal"):
            assert any(part["name"] == "reason" for part in p["part"])


def test_byte_identical_json_for_the_same_snapshot_and_new_ids_for_another() -> None:
    first = decide_plan(progressing(), AS_OF)
    again = decide_plan(progressing(), AS_OF)
    assert first.to_json() == again.to_json()
    other = decide_plan(replace(progressing(), exercise_minutes=25), AS_OF)
    assert other.decision_id != first.decision_id
    assert {r["id"] for r in other.resources}.isdisjoint({r["id"] for r in first.resources})


def test_red_flag_plan_keeps_only_the_safety_message() -> None:
    care_plan = decide_plan(red_flag(), AS_OF).resources_of("CarePlan")[0]
    assert care_plan["status"] == "on-hold"
    assert [a["detail"]["code"]["coding"][0]["code"] for a in care_plan["activity"]] == [
        "safety-message"
    ]
