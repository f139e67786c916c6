"""_summary and _elements (FHIR R4 search.html#summary, search.html#elements)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from fhir_server.errors import FhirError
from fhir_server.formats.summary import SUBSETTED_TAG, select_elements, summarize

OBSERVATION: dict[str, Any] = {
    "resourceType": "Observation",
    "id": "bp",
    "meta": {"versionId": "2", "tag": [{"system": "http://example.org/tags", "code": "keep"}]},
    "text": {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">BP</div>'},
    "contained": [{"resourceType": "Patient", "id": "p"}],
    "extension": [{"url": "http://example.org/ext", "valueString": "x"}],
    "status": "final",
    "_status": {"extension": [{"url": "http://example.org/why", "valueString": "checked"}]},
    "category": [{"text": "vital-signs"}],
    "code": {"text": "Blood pressure"},
    "subject": {"reference": "Patient/p"},
    "effectiveDateTime": "2024-05-01",
    "valueString": "120/80",
    "interpretation": [{"text": "normal"}],
    "note": [{"text": "seated"}],
    "component": [
        {
            "code": {"text": "systolic"},
            "valueQuantity": {"value": 120, "unit": "mmHg"},
            "interpretation": [{"text": "normal"}],
        }
    ],
}

SUBSETTED = [{"system": "http://example.org/tags", "code": "keep"}, SUBSETTED_TAG]


@pytest.mark.parametrize(
    ("rule", "mode", "expected_keys"),
    [
        (
            # true: isSummary elements (status, code, subject, effective, value, component)
            # plus mandatory ones; text, contained, extension, category, note and
            # interpretation are not summary elements of R4 Observation.
            "true keeps summary elements",
            "true",
            [
                "resourceType",
                "id",
                "meta",
                "status",
                "_status",
                "code",
                "subject",
                "effectiveDateTime",
                "valueString",
                "component",
            ],
        ),
        (
            "text keeps text, id, meta and top-level mandatory elements",
            "text",
            ["resourceType", "id", "meta", "text", "status", "_status", "code"],
        ),
        (
            "data removes only the text",
            "data",
            [k for k in OBSERVATION if k != "text"],
        ),
    ],
)
def test_summary_modes(rule: str, mode: str, expected_keys: list[str]) -> None:
    result = summarize(OBSERVATION, mode)
    assert sorted(result) == sorted(expected_keys), rule
    assert result["meta"]["tag"] == SUBSETTED, rule
    assert result["meta"]["versionId"] == "2"


def test_summary_true_filters_inside_backbone_elements() -> None:
    # Observation.component.interpretation is not a summary element; code and value are.
    component = summarize(OBSERVATION, "true")["component"][0]
    assert component == {
        "code": {"text": "systolic"},
        "valueQuantity": {"value": 120, "unit": "mmHg"},
    }


def test_summary_true_keeps_mandatory_and_modifier_extension() -> None:
    questionnaire = {
        "resourceType": "Questionnaire",
        "status": "active",
        "modifierExtension": [{"url": "http://example.org/m", "valueBoolean": True}],
        "item": [{"linkId": "1", "type": "string"}],
    }
    result = summarize(questionnaire, "true")
    # Questionnaire.item is not a summary element, status is; modifiers are never dropped.
    assert "item" not in result
    assert result["status"] == "active"
    assert result["modifierExtension"] == questionnaire["modifierExtension"]
    assert result["meta"] == {"tag": [SUBSETTED_TAG]}
    assert list(result)[:2] == ["resourceType", "meta"]


def test_summary_false_returns_the_resource_unchanged() -> None:
    assert summarize(OBSERVATION, "false") is OBSERVATION


def test_nothing_removed_means_no_subsetted_tag() -> None:
    patient = {"resourceType": "Patient", "id": "p", "active": True}
    assert summarize(patient, "data") == patient
    assert summarize(patient, "true") == patient
    assert select_elements(patient, ["active"]) == patient


def test_the_input_is_never_changed() -> None:
    before = copy.deepcopy(OBSERVATION)
    summarize(OBSERVATION, "true")
    summarize(OBSERVATION, "text")
    select_elements(OBSERVATION, ["note"])
    assert before == OBSERVATION


def test_subsetted_tag_is_not_added_twice() -> None:
    once = summarize(OBSERVATION, "data")
    twice = summarize({**once, "text": OBSERVATION["text"]}, "data")
    assert twice["meta"]["tag"] == SUBSETTED


@pytest.mark.parametrize("mode", ["count", "TRUE", "", "yes"])
def test_unknown_summary_modes_are_400(mode: str) -> None:
    with pytest.raises(FhirError) as caught:
        summarize(OBSERVATION, mode)
    assert caught.value.status == 400
    assert caught.value.issues[0].expression == ("_summary",)


@pytest.mark.parametrize(
    ("rule", "elements", "expected_keys"),
    [
        (
            "listed elements plus id, meta and mandatory status and code",
            ["subject", "note"],
            ["resourceType", "id", "meta", "status", "_status", "code", "subject", "note"],
        ),
        (
            "a choice is named by its stem",
            ["value"],
            ["resourceType", "id", "meta", "status", "_status", "code", "valueString"],
        ),
        (
            "the [x] spelling of a choice works too",
            ["effective[x]"],
            ["resourceType", "id", "meta", "status", "_status", "code", "effectiveDateTime"],
        ),
        (
            "a type prefix selects for that type only",
            ["Observation.subject", "Patient.name"],
            ["resourceType", "id", "meta", "status", "_status", "code", "subject"],
        ),
        (
            "unknown and empty names select nothing more",
            ["nothing", ""],
            ["resourceType", "id", "meta", "status", "_status", "code"],
        ),
    ],
)
def test_select_elements(rule: str, elements: list[str], expected_keys: list[str]) -> None:
    result = select_elements(OBSERVATION, elements)
    assert sorted(result) == sorted(expected_keys), rule
    assert result["meta"]["tag"] == SUBSETTED, rule


def test_select_elements_refuses_nested_paths() -> None:
    # R4 search.html#elements: "a comma separated list of base element names".
    with pytest.raises(FhirError) as caught:
        select_elements(OBSERVATION, ["code.text"])
    assert caught.value.status == 400


def test_unknown_resource_type_is_400() -> None:
    with pytest.raises(FhirError):
        summarize({"resourceType": "Nope"}, "true")
    with pytest.raises(FhirError):
        select_elements({"id": "x"}, ["id"])
