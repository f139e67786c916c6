"""Answer ordinals (FHIR R4 extension-ordinalvalue.html) carried by the terminology service,
and the expansion of every programme ValueSet held against golden data.

``golden/programme-expansions.json`` was written from the library's first expansion code
(``terminology._valueset``, since folded into the service) before it was deleted: for each
programme ValueSet its codes in compose order as [system, code, display, ordinal], the
ordinal being the one the ValueSet lists, else the one the CodeSystem gives (what scoring
used). A change to the content or to the service that moves any of these shows up here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from terminology import (
    CANONICAL_BASE,
    LOINC,
    ORDINAL_VALUE,
    QUESTIONNAIRE_ANSWER,
    ResourceListSource,
    TerminologyService,
    load_content,
    lookup,
    ordinal_value,
)
from terminology.sources import packaged_source, programme_source

GOLDEN: dict[str, list[list[Any]]] = json.loads(
    (Path(__file__).parent / "golden" / "programme-expansions.json").read_text(encoding="utf-8")
)
VS = f"{CANONICAL_BASE}/ValueSet"
EX = "http://example.org/fhir"


def test_golden_data_covers_every_programme_value_set():
    ours = {r["url"] for r in load_content() if r["resourceType"] == "ValueSet"}
    assert set(GOLDEN) == ours


@pytest.mark.parametrize("source", [packaged_source, programme_source])
@pytest.mark.parametrize("url", sorted(GOLDEN))
def test_programme_value_set_expands_as_before(url, source):
    service = TerminologyService(source())
    entries = service.expansion_of(url)
    assert [[e.system, e.code, e.display, e.ordinal] for e in entries] == GOLDEN[url]


@pytest.mark.parametrize(
    "valueset,code,ordinal",
    [
        # A ValueSet's own ordinals over an external system (the PHQ LOINC answers 0-3).
        ("phq-answer", "LA6568-5", 0.0),
        ("phq-answer", "LA6571-9", 3.0),
        # Ordinals the questionnaire-answer CodeSystem gives its concepts.
        ("answer-agreement", "disagree", 0.0),
        ("answer-agreement", "agree", 1.0),
        ("answer-bothersomeness", "very-much", 3.0),
    ],
)
def test_expansion_entries_carry_the_answer_ordinal(valueset, code, ordinal):
    entries = TerminologyService().expansion_of(f"{VS}/{valueset}")
    assert {e.code: e.ordinal for e in entries}[code] == ordinal


def test_lookup_gives_the_ordinal_scoring_falls_back_to():
    assert lookup(QUESTIONNAIRE_ANSWER, "very-much").ordinal == 3
    assert lookup(LOINC, "LA6571-9").ordinal == 3
    assert lookup(QUESTIONNAIRE_ANSWER, "lives-alone").ordinal is None


def _ordinal(value: float) -> dict[str, Any]:
    return {"url": ORDINAL_VALUE, "valueDecimal": value}


SCALE_CS: dict[str, Any] = {
    "resourceType": "CodeSystem",
    "url": f"{EX}/CodeSystem/scale",
    "status": "active",
    "content": "complete",
    "concept": [
        {"code": "low", "display": "Low", "extension": [_ordinal(1)]},
        {"code": "high", "display": "High", "extension": [_ordinal(5)]},
        {"code": "unscored", "display": "Unscored"},
    ],
}


def _scale_vs(include: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "ValueSet",
        "url": f"{EX}/ValueSet/scale",
        "status": "active",
        "compose": {"include": [{"system": SCALE_CS["url"], **include}]},
    }


def _ordinals(vs: dict[str, Any]) -> dict[str, float | None]:
    service = TerminologyService(ResourceListSource([SCALE_CS, vs]))
    return {e.code: e.ordinal for e in service.expansion(vs)}


def test_a_whole_system_include_takes_the_code_systems_ordinals():
    assert _ordinals(_scale_vs({})) == {"low": 1.0, "high": 5.0, "unscored": None}


def test_the_ordinal_a_value_set_lists_wins_over_the_code_systems():
    listed = _scale_vs(
        {"concept": [{"code": "low", "extension": [_ordinal(0)]}, {"code": "high"}]}
    )
    assert _ordinals(listed) == {"low": 0.0, "high": 5.0}


def test_expand_writes_the_ordinal_on_contains_and_reads_it_back():
    vs = _scale_vs({})
    expanded = TerminologyService(ResourceListSource([SCALE_CS, vs])).expand(vs)
    low = expanded["expansion"]["contains"][0]
    assert low["code"] == "low" and low["extension"] == [_ordinal(1)]
    assert isinstance(low["extension"][0]["valueDecimal"], int)  # written as in the content
    assert "extension" not in expanded["expansion"]["contains"][2]
    # A ValueSet that only has an expansion (no compose) keeps the ordinals it states.
    stored = {k: v for k, v in expanded.items() if k != "compose"}
    stored["url"] = f"{EX}/ValueSet/stored"
    entries = TerminologyService(ResourceListSource([stored])).expansion(stored)
    assert [e.ordinal for e in entries] == [1.0, 5.0, None]


@pytest.mark.parametrize(
    "element,ordinal",
    [
        ({"extension": [_ordinal(2)]}, 2.0),
        ({"extension": [_ordinal(0.5)]}, 0.5),
        ({"extension": [{"url": f"{EX}/other", "valueDecimal": 1}]}, None),
        ({"extension": [{"url": ORDINAL_VALUE, "valueString": "2"}]}, None),
        ({}, None),
        ("not an element", None),
    ],
)
def test_ordinal_value_reads_only_a_decimal_ordinal_value_extension(element, ordinal):
    assert ordinal_value(element) == ordinal
