"""The packaged Questionnaires: valid R4, bilingual, coded, and consistent with scoring."""

import re

import pytest
from fhir.resources.R4B.questionnaire import Questionnaire

from mappings import load_questionnaires, questionnaire, scoring_config, weekly_schedule
from mappings.questionnaire_content import answer_ordinals, walk_items
from terminology import CANONICAL_BASE, lookup, ordinal_value

QUESTIONNAIRES = load_questionnaires()
IDS = [q["id"] for q in QUESTIONNAIRES]
TRANSLATION = "http://hl7.org/fhir/StructureDefinition/translation"


def _danish(element: dict) -> str | None:
    for ext in element.get("extension", []):
        if ext["url"] == TRANSLATION:
            parts = {e["url"]: e.get("valueCode", e.get("valueString")) for e in ext["extension"]}
            if parts["lang"] == "da":
                return parts["content"]
    return None


def test_the_eight_programme_questionnaires_are_packaged():
    assert set(IDS) == {
        "selfback-goal-setting",
        "selfback-baseline",
        "selfback-weekly",
        "selfback-sleep",
        "selfback-pain-perception",
        "selfback-everyday-health",
        "selfback-mental-health",
        "selfback-exercise-feedback",
    }


@pytest.mark.parametrize("q", QUESTIONNAIRES, ids=IDS)
def test_validates_with_r4b_model(q):
    Questionnaire.model_validate(q)


@pytest.mark.parametrize("q", QUESTIONNAIRES, ids=IDS)
def test_canonical_url_is_versioned_and_ours(q):
    assert q["url"] == f"{CANONICAL_BASE}/Questionnaire/{q['id']}"
    assert re.fullmatch(r"\d+\.\d+\.\d+", q["version"])
    assert questionnaire(f"{q['url']}|{q['version']}")["id"] == q["id"]
    assert questionnaire(f"{q['url']}|0.0.1") is None


@pytest.mark.parametrize("q", QUESTIONNAIRES, ids=IDS)
def test_link_ids_are_unique(q):
    link_ids = [it["linkId"] for it in walk_items(q["item"])]
    assert len(link_ids) == len(set(link_ids))


@pytest.mark.parametrize("q", QUESTIONNAIRES, ids=IDS)
def test_every_text_and_answer_has_a_danish_translation(q):
    assert _danish(q["_title"])
    for it in walk_items(q["item"]):
        assert _danish(it["_text"]), it["linkId"]
        for option in it.get("answerOption", []):
            assert _danish(option["valueCoding"]["_display"]), (it["linkId"], option)


@pytest.mark.parametrize("q", QUESTIONNAIRES, ids=IDS)
def test_codes_and_answer_codes_are_known_to_our_terminology(q):
    for it in walk_items(q["item"]):
        for code in it.get("code", []):
            concept = lookup(code["system"], code["code"])
            assert concept is not None, (it["linkId"], code)
        for option in it.get("answerOption", []):
            coding = option["valueCoding"]
            concept = lookup(coding["system"], coding["code"])
            assert concept is not None, (it["linkId"], coding)
            assert concept.display == coding["display"]
            if concept.ordinal is not None:
                assert ordinal_value(option) == concept.ordinal


@pytest.mark.parametrize("q", QUESTIONNAIRES, ids=IDS)
def test_enable_when_refers_to_earlier_questions_with_known_answers(q):
    seen: dict[str, dict] = {}
    for it in walk_items(q["item"]):
        for condition in it.get("enableWhen", []):
            source = seen[condition["question"]]
            if "answerCoding" in condition:
                codes = {o["valueCoding"]["code"] for o in source["answerOption"]}
                assert condition["answerCoding"]["code"] in codes
        seen[it["linkId"]] = it


LICENSED_LABEL = re.compile(
    r"^(RMDQ|PSEQ|FABQ|BIPQ|PCS|PSS|PHQ-8|STarT Back) item \d+$|^EQ-5D-5L dimension \d$"
)
LICENSED_PREFIXES = ("rmdq-", "pseq-", "fabq-", "bipq-", "pcs-", "pss-", "phq-", "sbst-", "eq5d-")


@pytest.mark.parametrize("q", QUESTIONNAIRES, ids=IDS)
def test_licensed_items_carry_neutral_labels_only(q):
    for it in walk_items(q["item"]):
        link_id = it["linkId"]
        if re.fullmatch(r"(rmdq|pseq|fabq|bipq|pcs|pss|phq|sbst|eq5d)-\d+", link_id):
            assert LICENSED_LABEL.match(it["text"]), (link_id, it["text"])


def test_licensed_questionnaires_state_that_wording_is_supplied_by_the_deployer():
    for q in QUESTIONNAIRES:
        has_licensed = any(
            it["linkId"].startswith(LICENSED_PREFIXES) for it in walk_items(q["item"])
        )
        if has_licensed:
            assert "not included" in q["copyright"], q["id"]


def test_mental_health_is_phq8_without_the_self_harm_item():
    q = questionnaire(f"{CANONICAL_BASE}/Questionnaire/selfback-mental-health")
    codes = {c["code"] for it in walk_items(q["item"]) for c in it.get("code", [])}
    assert "44253-3" in codes and "44260-8" not in codes


def _items_everywhere() -> dict[str, dict]:
    return {it["linkId"]: it for q in QUESTIONNAIRES for it in walk_items(q["item"])}


def _range(it: dict) -> tuple[float, float]:
    if it["type"] == "boolean":
        return 0, 1
    if it["type"] == "choice":
        ordinals = [ordinal_value(o) for o in it["answerOption"]]
        return min(ordinals), max(ordinals)
    values = {e["url"].rsplit("/", 1)[1]: e["valueInteger"] for e in it["extension"]}
    return values["minValue"], values["maxValue"]


@pytest.mark.parametrize("spec", scoring_config()["scores"], ids=lambda s: s["id"])
def test_every_scored_item_exists_with_the_configured_range(spec):
    items = _items_everywhere()
    for link_id in spec["items"]:
        lo, hi = _range(items[link_id])
        if link_id in spec["dichotomise"]:
            assert lo <= spec["dichotomise"][link_id] <= hi
        else:
            assert (lo, hi) == (spec["itemMin"], spec["itemMax"]), link_id


def test_shared_link_ids_have_the_same_definition_in_every_questionnaire():
    seen: dict[str, dict] = {}
    for q in QUESTIONNAIRES:
        for it in walk_items(q["item"]):
            if it["type"] in ("group", "display"):
                continue
            key = {k: it.get(k) for k in ("type", "code", "answerOption", "extension")}
            assert seen.setdefault(it["linkId"], key) == key, it["linkId"]
    assert answer_ordinals()["sbst-9"]  # ordinals come from the options of the item


def test_weekly_schedule_groups_exist_in_the_weekly_questionnaire():
    q = questionnaire(f"{CANONICAL_BASE}/Questionnaire/selfback-weekly")
    groups = {it["linkId"] for it in q["item"] if it["type"] == "group"}
    scheduled = [entry["group"] for entry in weekly_schedule()["groups"]]
    assert set(scheduled) == groups
    assert weekly_schedule()["questionnaire"] == f"{q['url']}|{q['version']}"


def test_weekly_schedule_conditions_refer_to_configured_scores():
    score_ids = {s["id"] for s in scoring_config()["scores"]}
    for entry in weekly_schedule()["groups"]:
        for clause in (entry["condition"] or {"any": []})["any"]:
            if "baseline" in clause:
                assert clause["baseline"] in score_ids
