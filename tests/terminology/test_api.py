"""lookup, and the service's expansion, $validate-code and $translate, over the packaged
content (what the programme's own code asks of its terminology)."""

import pytest

from terminology import (
    ASSESSMENT,
    CANONICAL_BASE,
    EXERCISE_FEEDBACK_REASON,
    LOINC,
    QUESTIONNAIRE_ANSWER,
    RED_FLAG,
    SCORE_BAND,
    SNOMED_CT,
    Coding,
    TerminologyError,
    TerminologyService,
    Validation,
    load_content,
    lookup,
    resource_by_url,
)

VS = f"{CANONICAL_BASE}/ValueSet"
SERVICE = TerminologyService()


def validate_code(valueset: str, system: str, code: str) -> Validation:
    found = SERVICE.find("ValueSet", valueset)
    coding = Coding(code, system)
    return SERVICE.validate_in_value_set(found.resource, [coding], marker=found.marker)


def test_load_content_returns_copies():
    first = load_content()
    first[0]["id"] = "changed"
    assert load_content()[0]["id"] != "changed"


@pytest.mark.parametrize(
    "system,code,display",
    [
        (ASSESSMENT, "rmdq-total", "RMDQ total score"),
        (RED_FLAG, "saddle-numbness", "New numbness around the genitals, buttocks or inner thighs"),
        (LOINC, "91351-7", "Total score [STarT Back]"),
        (SNOMED_CT, "279039007", "Low back pain"),
    ],
)
def test_lookup_finds_our_codes_and_listed_external_codes(system, code, display):
    assert lookup(system, code).display == display


def test_lookup_returns_designations_parent_properties_and_ordinal():
    concept = lookup(QUESTIONNAIRE_ANSWER, "very-much")
    assert concept.parent == "bothersomeness"
    assert concept.ordinal == 3
    assert concept.designations["da"] == "Meget"
    assert lookup(RED_FLAG, "fever").properties == {"urgency": "urgent"}
    assert lookup(LOINC, "LA6571-9").ordinal == 3


@pytest.mark.parametrize(
    "system,code",
    [(ASSESSMENT, "no-such-score"), (LOINC, "1234-5"), ("http://example.org/unknown", "x")],
)
def test_lookup_unknown_code_is_none(system, code):
    assert lookup(system, code) is None


@pytest.mark.parametrize(
    "valueset,system,code,result",
    [
        ("exercise-feedback-reason", EXERCISE_FEEDBACK_REASON, "pain", True),
        ("exercise-feedback-reason", EXERCISE_FEEDBACK_REASON, "boring", False),
        ("exercise-feedback-reason", RED_FLAG, "pain", False),
        ("score-observation-code", LOINC, "55758-7", True),
        ("score-observation-code", ASSESSMENT, "phq8-total", True),
        ("score-observation-code", LOINC, "44261-6", False),
        ("low-back-pain-condition", SNOMED_CT, "279039007", True),
        ("daily-steps-code", LOINC, "41950-7", True),
        ("answer-agreement", QUESTIONNAIRE_ANSWER, "agree", True),
        ("answer-agreement", QUESTIONNAIRE_ANSWER, "very-much", False),
    ],
)
def test_validate_code(valueset, system, code, result):
    assert validate_code(f"{VS}/{valueset}", system, code).result is result


def test_validate_code_returns_display_and_accepts_version():
    answer = validate_code(
        f"{VS}/education-theme|1.0.0", f"{CANONICAL_BASE}/CodeSystem/education-theme", "sleep"
    )
    assert answer.result and answer.display == "Sleep"


@pytest.mark.parametrize("url", [f"{VS}/no-such-set", f"{VS}/education-theme|9.9.9"])
def test_unknown_valueset_or_version_raises(url):
    with pytest.raises(TerminologyError):
        validate_code(url, LOINC, "41950-7")


def test_validate_code_says_why_a_code_is_not_in_the_value_set():
    answer = validate_code(f"{VS}/answer-agreement", QUESTIONNAIRE_ANSWER, "very-much")
    assert answer.message == (
        f"The code {QUESTIONNAIRE_ANSWER}#very-much is valid in its code system but is not in "
        f"{VS}/answer-agreement"
    )


def test_whole_system_include_leaves_out_grouping_concepts():
    codes = {c.code for c in SERVICE.expansion_of(f"{VS}/score-band")}
    assert "sbst-high" in codes and "phq-severe" in codes
    assert "sbst" not in codes and "phq" not in codes


def test_resource_by_url_matches_version():
    url = f"{CANONICAL_BASE}/CodeSystem/red-flag"
    assert resource_by_url(url)["id"] == "red-flag"
    assert resource_by_url(url + "|1.0.0") is not None
    assert resource_by_url(url + "|0.1") is None


def test_translate_maps_bands_to_loinc_answers():
    answer = SERVICE.translate(Coding("sbst-high", SCORE_BAND), target_system=LOINC)
    [high] = answer.matches
    assert answer.result
    assert (high.system, high.code, high.equivalence) == (LOINC, "LA9193-9", "equivalent")
    assert high.source == f"{CANONICAL_BASE}/ConceptMap/score-band-to-loinc"


def test_translate_marks_scores_without_loinc_as_unmatched():
    answer = SERVICE.translate(Coding("rmdq-total", ASSESSMENT))
    [rmdq] = answer.matches
    assert not answer.result
    assert rmdq.equivalence == "unmatched" and rmdq.code is None


def test_translate_keeps_the_comment_of_the_map():
    answer = SERVICE.translate(Coding("phq-8", ASSESSMENT), target_system=LOINC)
    assert [m.comment for m in answer.matches] == ["PHQ-8 is the PHQ-9 without item 9."]
