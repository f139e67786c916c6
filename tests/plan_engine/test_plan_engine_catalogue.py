"""The catalogue and the configuration are well-formed, sourced data."""

from __future__ import annotations

import pytest
from fhir.resources.R4B import get_fhir_model_class

from plan_engine import codes, load_catalogue
from plan_engine.config import load_rules, read_json

CATALOGUE = load_catalogue()
STRENGTH_AND_FLEXIBILITY = (
    "abdominal",
    "back-extensor",
    "core-stability",
    "gluteal",
    "flexibility",
)


@pytest.mark.parametrize("definition", CATALOGUE.all_definitions(), ids=lambda d: d["id"])
def test_every_definition_validates_as_r4(definition: dict) -> None:
    get_fhir_model_class(definition["resourceType"]).model_validate(definition)
    assert (
        definition["url"]
        == f"{codes.CANONICAL_BASE}/{definition['resourceType']}/{definition['id']}"
    )
    assert definition["status"] == "draft"  # content awaits clinical sign-off


def test_exercises_cover_every_type_at_levels_one_to_six_and_pain_relief() -> None:
    for exercise_type in STRENGTH_AND_FLEXIBILITY:
        levels = {e.level for e in CATALOGUE.exercises if e.type == exercise_type}
        assert levels == set(range(1, 7)), exercise_type
    relief = [e for e in CATALOGUE.exercises if e.type == "pain-relief"]
    assert len(relief) >= 5 and {e.level for e in relief} == {1}


def test_every_exercise_has_dosage_duration_and_both_languages() -> None:
    for entry in CATALOGUE.exercises:
        assert entry.sets == 3 and (entry.repetitions or entry.hold_seconds)
        assert entry.minutes == 5
        assert {lang for lang, _ in entry.title} == {"en", "da"}
        definition = CATALOGUE.definition(entry.definition_id)
        assert definition["_description"]["extension"][0]["extension"][0]["valueCode"] == "da"
        assert definition["dosage"][0]["text"].startswith("3 × ")


def test_education_has_fourteen_themes_three_messages_each_and_a_quiz_per_theme() -> None:
    assert len(CATALOGUE.themes) == 14
    for theme in CATALOGUE.themes:
        items = [e for e in CATALOGUE.education if e.theme == theme]
        assert len(items) == 3
        assert sum(e.quiz for e in items) == 1
    orders = [e.order for e in CATALOGUE.education]
    assert orders == sorted(orders) and len(set(orders)) == len(orders)
    assert load_rules().education.warning_signs_item in {
        e.definition_id for e in CATALOGUE.education
    }


def test_plan_definition_names_the_weekly_actions() -> None:
    plan = CATALOGUE.plan_definition
    assert plan["url"] == codes.PLAN_DEFINITION_URL
    assert [a["id"] for a in plan["action"]] == [
        "step-goal",
        "exercise-set",
        "education-schedule",
        "safety-message",
    ]


def test_every_threshold_cites_known_sources_and_awaits_sign_off() -> None:
    raw = read_json("rules.json")
    sources = set(raw["sources"])
    sections = [k for k in raw if k not in ("version", "status", "sources")]
    assert sections
    for section in sections:
        for name, entry in raw[section].items():
            assert set(entry) >= {"value", "sources", "sign_off"}, (section, name)
            assert entry["sources"] and set(entry["sources"]) <= sources, (section, name)
            assert entry["sign_off"] == "pending", (section, name)


def test_similarity_weights_name_known_attributes_with_rationale() -> None:
    raw = read_json("similarity.json")
    attributes = set(raw["attributes"])
    for spec in raw["attributes"].values():
        assert spec["rationale"]
    for component in raw["amalgamations"].values():
        assert set(component["weights"]) <= attributes and component["rationale"]
    for entry in raw["retrieval"].values():
        assert entry["rationale"]
