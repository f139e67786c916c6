"""The terminology service (terminology.service) over our content, the shipped R4 core
terminology and hand-made resources. Expected answers follow FHIR R4 valueset.html#compose,
the $expand / $validate-code / $lookup / $subsumes / $translate operation definitions, and
the concept lists of the R4 core code systems (valuesets.json, 4.0.1)."""

from __future__ import annotations

from typing import Any

import pytest

from terminology import (
    CANONICAL_BASE,
    QUESTIONNAIRE_ANSWER,
    ChainSource,
    Coding,
    Found,
    ResourceListSource,
    TerminologyError,
    TerminologyService,
)
from terminology.service import clear_caches
from terminology.sources import core_provenance, core_resources, packaged_source

GENDER_VS = "http://hl7.org/fhir/ValueSet/administrative-gender"
GENDER = "http://hl7.org/fhir/administrative-gender"
OBS_STATUS = "http://hl7.org/fhir/observation-status"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
EX = "http://example.org/fhir"

# A hand-made is-a CodeSystem: nesting for body > back > lower-back / upper-back, and the
# parent property for neck-back-pain (under back); "grp" is a grouper (notSelectable).
BODY_CS: dict[str, Any] = {
    "resourceType": "CodeSystem",
    "url": f"{EX}/CodeSystem/body",
    "version": "2",
    "name": "Body",
    "status": "active",
    "content": "complete",
    "hierarchyMeaning": "is-a",
    "property": [{"code": "side", "type": "code"}, {"code": "notSelectable", "type": "boolean"}],
    "concept": [
        {
            "code": "body",
            "display": "Body",
            "concept": [
                {
                    "code": "back",
                    "display": "Back",
                    "designation": [{"language": "da", "value": "Ryg"}],
                    "concept": [
                        {
                            "code": "lower-back",
                            "display": "Lower back",
                            "property": [{"code": "side", "valueCode": "left"}],
                        },
                        {
                            "code": "upper-back",
                            "display": "Upper back",
                            "property": [{"code": "side", "valueCode": "right"}],
                        },
                    ],
                },
                {"code": "neck", "display": "Neck"},
            ],
        },
        {
            "code": "neck-back-pain",
            "display": "Neck and back",
            "property": [{"code": "parent", "valueCode": "back"}],
        },
        {
            "code": "grp",
            "display": "Grouper",
            "property": [{"code": "notSelectable", "valueBoolean": True}],
        },
    ],
}

GROUPED_CS = {**BODY_CS, "url": f"{EX}/CodeSystem/grouped", "hierarchyMeaning": "grouped-by"}


def vs(name: str, *include: dict[str, Any], exclude: list[dict[str, Any]] | None = None):
    compose: dict[str, Any] = {"include": list(include)}
    if exclude:
        compose["exclude"] = exclude
    return {
        "resourceType": "ValueSet",
        "url": f"{EX}/ValueSet/{name}",
        "status": "active",
        "compose": compose,
    }


BODY = BODY_CS["url"]
SPINE_VS = vs(
    "spine", {"system": BODY, "filter": [{"property": "concept", "op": "is-a", "value": "back"}]}
)

MAP = {
    "resourceType": "ConceptMap",
    "url": f"{EX}/ConceptMap/body-to-region",
    "status": "active",
    "sourceUri": SPINE_VS["url"],
    "targetUri": f"{EX}/ValueSet/region",
    "group": [
        {
            "source": BODY,
            "target": f"{EX}/region",
            "element": [
                {
                    "code": "lower-back",
                    "target": [
                        {"code": "lumbar", "display": "Lumbar", "equivalence": "equivalent"}
                    ],
                },
                {"code": "back", "target": [{"code": "trunk", "equivalence": "narrower"}]},
                {"code": "neck", "target": [{"equivalence": "unmatched"}]},
            ],
        }
    ],
}


def service(*resources: dict[str, Any], max_expansion: int = 10_000) -> TerminologyService:
    local = ResourceListSource([BODY_CS, GROUPED_CS, SPINE_VS, MAP, *resources], marker="test")
    return TerminologyService(ChainSource(local, packaged_source()), max_expansion=max_expansion)


def codes(expanded: dict[str, Any]) -> list[str]:
    return [c["code"] for c in expanded["expansion"].get("contains", [])]


# --- $expand --------------------------------------------------------------------------

COMPOSE_CASES = [
    # (rule, include, exclude, expected codes in order)
    (
        "whole system, groupers left out",
        {"system": BODY},
        None,
        ["body", "back", "lower-back", "upper-back", "neck", "neck-back-pain"],
    ),
    (
        "enumerated concepts keep their order",
        {"system": BODY, "concept": [{"code": "neck"}, {"code": "back"}]},
        None,
        ["neck", "back"],
    ),
    (
        "is-a: the code and its descendants (nesting and parent property)",
        {"system": BODY, "filter": [{"property": "concept", "op": "is-a", "value": "back"}]},
        None,
        ["back", "lower-back", "upper-back", "neck-back-pain"],
    ),
    (
        "descendent-of: descendants only",
        {
            "system": BODY,
            "filter": [{"property": "concept", "op": "descendent-of", "value": "back"}],
        },
        None,
        ["lower-back", "upper-back", "neck-back-pain"],
    ),
    (
        "is-not-a: everything outside the subtree",
        {"system": BODY, "filter": [{"property": "concept", "op": "is-not-a", "value": "back"}]},
        None,
        ["body", "neck"],
    ),
    (
        "generalizes: the code and its ancestors",
        {
            "system": BODY,
            "filter": [{"property": "concept", "op": "generalizes", "value": "lower-back"}],
        },
        None,
        ["body", "back", "lower-back"],
    ),
    (
        "= on a property",
        {"system": BODY, "filter": [{"property": "side", "op": "=", "value": "left"}]},
        None,
        ["lower-back"],
    ),
    (
        "in on codes",
        {"system": BODY, "filter": [{"property": "code", "op": "in", "value": "neck,body"}]},
        None,
        ["body", "neck"],
    ),
    (
        "regex on codes matches the whole code",
        {"system": BODY, "filter": [{"property": "code", "op": "regex", "value": ".*-back"}]},
        None,
        ["lower-back", "upper-back"],
    ),
    (
        "exists on a property",
        {"system": BODY, "filter": [{"property": "side", "op": "exists", "value": "true"}]},
        None,
        ["lower-back", "upper-back"],
    ),
    (
        "= parent",
        {"system": BODY, "filter": [{"property": "parent", "op": "=", "value": "body"}]},
        None,
        ["back", "neck"],
    ),
    (
        "filters are AND-ed",
        {
            "system": BODY,
            "filter": [
                {"property": "concept", "op": "is-a", "value": "back"},
                {"property": "code", "op": "regex", "value": "upper.*"},
            ],
        },
        None,
        ["upper-back"],
    ),
    (
        "exclude removes codes",
        {"system": BODY},
        [{"system": BODY, "filter": [{"property": "concept", "op": "is-a", "value": "back"}]}],
        ["body", "neck"],
    ),
    (
        "valueSet import intersects with the system part",
        {
            "system": BODY,
            "concept": [{"code": "neck"}, {"code": "lower-back"}],
            "valueSet": [SPINE_VS["url"]],
        },
        None,
        ["lower-back"],
    ),
    (
        "valueSet import alone",
        {"valueSet": [SPINE_VS["url"]]},
        None,
        ["back", "lower-back", "upper-back", "neck-back-pain"],
    ),
]


@pytest.mark.parametrize(
    "include,exclude,expected", [c[1:] for c in COMPOSE_CASES], ids=[c[0] for c in COMPOSE_CASES]
)
def test_compose(include, exclude, expected):
    assert codes(service().expand(vs("case", include, exclude=exclude))) == expected


ERROR_CASES = [
    # (rule, include, issue code, words in the message)
    (
        "all of SNOMED CT is not held",
        {"system": "http://snomed.info/sct"},
        "not-supported",
        "http://snomed.info/sct",
    ),
    (
        "LOINC filters are not held",
        {
            "system": "http://loinc.org",
            "filter": [{"property": "SCALE_TYP", "op": "=", "value": "Doc"}],
        },
        "not-supported",
        "http://loinc.org",
    ),
    (
        "an unknown imported ValueSet",
        {"valueSet": [f"{EX}/ValueSet/absent"]},
        "not-supported",
        "absent",
    ),
    (
        "a listed code the complete system lacks",
        {"system": BODY, "concept": [{"code": "knee"}]},
        "code-invalid",
        "knee",
    ),
    (
        "is-a over a grouped-by hierarchy",
        {
            "system": GROUPED_CS["url"],
            "filter": [{"property": "concept", "op": "is-a", "value": "back"}],
        },
        "not-supported",
        "grouped-by",
    ),
    (
        "is-a on an unknown code",
        {"system": BODY, "filter": [{"property": "concept", "op": "is-a", "value": "knee"}]},
        "code-invalid",
        "knee",
    ),
    (
        "a bad regular expression",
        {"system": BODY, "filter": [{"property": "code", "op": "regex", "value": "("}]},
        "invalid",
        "regular",
    ),
    (
        "an unknown filter operator",
        {"system": BODY, "filter": [{"property": "code", "op": "near", "value": "x"}]},
        "not-supported",
        "near",
    ),
]


@pytest.mark.parametrize(
    "include,code,words", [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES]
)
def test_compose_errors(include, code, words):
    with pytest.raises(TerminologyError) as caught:
        service().expand(vs("case", include))
    assert caught.value.code == code
    assert words in str(caught.value)


def test_a_value_set_that_imports_itself_is_invalid():
    loop = vs("loop", {"valueSet": [f"{EX}/ValueSet/loop"]})
    with pytest.raises(TerminologyError) as caught:
        service(loop).expand(loop)
    assert caught.value.code == "invalid"


def test_too_many_codes_is_too_costly():
    with pytest.raises(TerminologyError) as caught:
        service(max_expansion=3).expand(vs("all", {"system": BODY}))
    assert caught.value.code == "too-costly"
    assert "3" in str(caught.value)


def test_r4_core_administrative_gender_with_paging():
    s = service()
    found = s.find("ValueSet", GENDER_VS)
    whole = s.expand(found.resource, marker=found.marker)
    assert codes(whole) == ["male", "female", "other", "unknown"]
    page = s.expand(found.resource, marker=found.marker, count=2, offset=1)
    expansion = page["expansion"]
    assert expansion["total"] == 4 and expansion["offset"] == 1
    assert expansion["contains"] == [
        {"system": GENDER, "version": "4.0.1", "code": "female", "display": "Female"},
        {"system": GENDER, "version": "4.0.1", "code": "other", "display": "Other"},
    ]
    assert {"name": "count", "valueInteger": 2} in expansion["parameter"]
    assert {"name": "offset", "valueInteger": 1} in expansion["parameter"]


def test_r4_core_observation_status_includes_nested_codes():
    s = service()
    found = s.find("ValueSet", "http://hl7.org/fhir/ValueSet/observation-status")
    assert codes(s.expand(found.resource)) == [
        "registered",
        "preliminary",
        "final",
        "amended",
        "corrected",
        "cancelled",
        "entered-in-error",
        "unknown",
    ]


def test_text_filter_and_display_language_on_our_content():
    s = service()
    found = s.find("ValueSet", f"{CANONICAL_BASE}/ValueSet/answer-sick-leave")
    danish = s.expand(found.resource, display_language="da", filter="sygemeld")
    assert [c["display"] for c in danish["expansion"]["contains"]] == [
        "Ingen sygemelding",
        "Delvist sygemeldt",
        "Fuldt sygemeldt",
    ]
    assert danish["expansion"]["total"] == 3
    english = s.expand(found.resource, filter="LEAVE partly")
    assert codes(english) == ["sick-leave-partial"]


def test_designations_are_included_on_request():
    expanded = service().expand(SPINE_VS, include_designations=True, count=1)
    assert expanded["expansion"]["contains"][0]["designation"] == [
        {"language": "da", "value": "Ryg"}
    ]


def test_a_value_set_with_only_an_expansion_is_read_from_it():
    stored = {
        "resourceType": "ValueSet",
        "url": f"{EX}/ValueSet/expanded",
        "status": "active",
        "expansion": {
            "timestamp": "2020-01-01",
            "contains": [
                {"system": "urn:s", "code": "a", "contains": [{"system": "urn:s", "code": "b"}]}
            ],
        },
    }
    assert codes(service().expand(stored)) == ["a", "b"]


def test_every_r4_core_value_set_expands_or_says_what_it_lacks():
    s = service()
    failures: dict[str, str] = {}
    expanded = 0
    for resource in core_resources():
        if resource["resourceType"] != "ValueSet":
            continue
        try:
            s.expansion(resource, "r4-core")
            expanded += 1
        except TerminologyError as exc:
            failures[resource["url"]] = exc.code
    assert set(failures.values()) == {"not-supported"}
    assert (
        expanded == 560 and len(failures) == 112
    )  # of 672: the rest need LOINC, SNOMED CT, v2/v3...


def test_core_data_records_its_provenance():
    provenance = core_provenance()
    assert provenance["fhirVersion"] == "4.0.1"
    assert {s["file"] for s in provenance["sources"]} == {"valuesets.json.gz", "conceptmaps.json"}


class _Versioned:
    """A source whose CodeSystem can be replaced, to see the cache notice."""

    def __init__(self) -> None:
        self.cs = BODY_CS
        self.version = 1

    def find(self, resource_type: str, url: str, version: str | None = None) -> Found | None:
        if resource_type == "CodeSystem" and url == BODY:
            return Found(self.cs, f"v{self.version}")
        return None

    def concept_maps(self, system: str, reverse: bool = False) -> list[Found]:
        return []


def test_cached_expansions_follow_changes_of_what_they_used():
    clear_caches()
    source = _Versioned()
    s = TerminologyService(source)
    spine = vs(
        "cached",
        {"system": BODY, "filter": [{"property": "concept", "op": "is-a", "value": "back"}]},
    )
    assert len(s.expansion(spine, "vs-1")) == 4
    source.cs = {**BODY_CS, "concept": [{"code": "back", "concept": [{"code": "lower-back"}]}]}
    assert len(s.expansion(spine, "vs-1")) == 4  # same marker: the cached expansion
    source.version = 2
    assert [e.code for e in s.expansion(spine, "vs-1")] == ["back", "lower-back"]


# --- $validate-code ---------------------------------------------------------------------

VALIDATE_CASES = [
    # (rule, codings, result, display, words in the message)
    ("a code in the value set", [Coding("female", GENDER)], True, "Female", None),
    ("without a system, the code alone", [Coding("other")], True, "Other", None),
    ("a code the system does not define", [Coding("x", GENDER)], False, None, "Unknown code"),
    ("a code of another system", [Coding("final", OBS_STATUS)], False, None, "not in"),
    ("a wrong display", [Coding("female", GENDER, display="Woman")], False, "Female", "display"),
    (
        "the display is case-insensitive",
        [Coding("female", GENDER, display="FEMALE")],
        True,
        "Female",
        None,
    ),
    (
        "a codeableConcept with one good coding",
        [Coding("x", "urn:other"), Coding("male", GENDER)],
        True,
        "Male",
        None,
    ),
    ("a version that differs", [Coding("male", GENDER, version="3.0.0")], False, None, "version"),
]


@pytest.mark.parametrize(
    "codings,result,display,words",
    [c[1:] for c in VALIDATE_CASES],
    ids=[c[0] for c in VALIDATE_CASES],
)
def test_validate_code_in_value_set(codings, result, display, words):
    s = service()
    answer = s.validate_in_value_set(s.find("ValueSet", GENDER_VS).resource, codings)
    assert (answer.result, answer.display) == (result, display)
    if words:
        assert words in answer.message


def test_validate_code_in_our_value_set_names_a_valid_code_outside_it():
    s = service()
    answer = s.validate_in_value_set(
        s.find("ValueSet", f"{CANONICAL_BASE}/ValueSet/answer-sick-leave").resource,
        [Coding("very-much", QUESTIONNAIRE_ANSWER)],
    )
    assert not answer.result
    assert "valid in its code system but is not in" in answer.message


def test_validate_code_in_code_system():
    s = service()
    found = s.find("CodeSystem", OBS_STATUS)
    assert s.validate_in_code_system(found, Coding("corrected")).display == "Corrected"
    assert not s.validate_in_code_system(found, Coding("done")).result
    assert not s.validate_in_code_system(found, Coding("final", display="Done")).result
    with pytest.raises(TerminologyError):  # content not-present: nothing to check against
        s.validate_in_code_system(s.find("CodeSystem", "http://snomed.info/sct"), Coding("1"))


# --- $lookup ----------------------------------------------------------------------------


def test_lookup_returns_hierarchy_properties_and_designations():
    answer = service().lookup(Coding("back", BODY))
    assert (answer.name, answer.version, answer.display) == ("Body", "2", "Back")
    assert set(answer.properties) == {
        ("parent", "body"),
        ("child", "lower-back"),
        ("child", "upper-back"),
        ("child", "neck-back-pain"),
    }
    assert [d.value for d in answer.designations] == ["Ryg"]
    params = answer.as_parameters()["parameter"]
    assert params[0] == {"name": "name", "valueString": "Body"}


def test_lookup_limits_properties_and_picks_a_language():
    answer = service().lookup(Coding("back", BODY), properties=["parent"], display_language="da")
    assert answer.properties == (("parent", "body"),)
    assert answer.display == "Ryg"


def test_lookup_of_our_code_and_a_core_code():
    assert service().lookup(Coding("very-much", QUESTIONNAIRE_ANSWER)).properties == (
        ("parent", "bothersomeness"),
    )
    core = service().lookup(Coding("amended", OBS_STATUS))
    assert core.display == "Amended" and core.properties == (("child", "corrected"),)


@pytest.mark.parametrize(
    "coding",
    [Coding("knee", BODY), Coding("1", "http://loinc.org")],
    ids=["unknown code", "unknown code system"],
)
def test_lookup_of_the_unknown_is_not_found(coding):
    with pytest.raises(TerminologyError) as caught:
        service().lookup(coding)
    assert caught.value.code == "not-found"


# --- $subsumes ----------------------------------------------------------------------------

SUBSUMES_CASES = [
    (BODY, "back", "back", "equivalent"),
    (BODY, "body", "lower-back", "subsumes"),
    (BODY, "neck-back-pain", "back", "subsumed-by"),  # parent property
    (BODY, "neck", "back", "not-subsumed"),
    (CLINICAL, "inactive", "remission", "subsumes"),
    (CLINICAL, "relapse", "active", "subsumed-by"),
    (OBS_STATUS, "final", "corrected", "not-subsumed"),
]


@pytest.mark.parametrize("system,a,b,outcome", SUBSUMES_CASES)
def test_subsumes(system, a, b, outcome):
    assert service().subsumes(system, a, b) == outcome


@pytest.mark.parametrize(
    "system,code,issue",
    [
        (GROUPED_CS["url"], "back", "not-supported"),  # grouped-by is not is-a
        (f"{CANONICAL_BASE}/CodeSystem/assessment", "rmdq", "not-supported"),  # ours: grouped-by
        (BODY, "knee", "code-invalid"),
        ("http://loinc.org", "1", "not-found"),
    ],
)
def test_subsumes_errors(system, code, issue):
    with pytest.raises(TerminologyError) as caught:
        service().subsumes(system, code, code)
    assert caught.value.code == issue


def test_related_codes_for_the_search_modifiers():
    s = service()
    assert s.related_codes(BODY, "back", "below") == {
        "back",
        "lower-back",
        "upper-back",
        "neck-back-pain",
    }
    assert s.related_codes(BODY, "lower-back", "above") == {"lower-back", "back", "body"}
    with pytest.raises(TerminologyError) as caught:
        s.related_codes("http://loinc.org", "1", "below")
    assert caught.value.code == "not-supported" and "no hierarchy" in str(caught.value)


# --- $translate ---------------------------------------------------------------------------


def _matches(answer):
    return [(m.equivalence, m.system, m.code) for m in answer.matches]


def test_translate_forward_and_reverse():
    s = service()
    forward = s.translate(Coding("lower-back", BODY))
    assert forward.result and _matches(forward) == [("equivalent", f"{EX}/region", "lumbar")]
    # reverse: narrower read backwards is wider
    backward = s.translate(Coding("trunk", f"{EX}/region"), reverse=True)
    assert _matches(backward) == [("wider", BODY, "back")]


def test_translate_unmatched_and_unknown():
    s = service()
    unmatched = s.translate(Coding("neck", BODY))
    assert not unmatched.result and _matches(unmatched) == [("unmatched", f"{EX}/region", None)]
    nothing = s.translate(Coding("body", BODY))
    assert not nothing.result and "No mapping" in nothing.message


def test_translate_narrowed_by_target_and_value_sets():
    s = service()
    assert s.translate(Coding("lower-back", BODY), target_system="urn:other").matches == ()
    assert s.translate(Coding("lower-back", BODY), source_vs=SPINE_VS["url"]).result
    assert not s.translate(Coding("lower-back", BODY), target_vs="urn:vs").matches


def test_translate_over_r4_core_and_our_maps():
    s = service()
    gender = s.translate(
        Coding("male", GENDER), target_system="http://terminology.hl7.org/CodeSystem/v2-0001"
    )
    assert _matches(gender) == [("equal", "http://terminology.hl7.org/CodeSystem/v2-0001", "M")]
    band = s.translate(Coding("sbst-high", f"{CANONICAL_BASE}/CodeSystem/score-band"))
    assert _matches(band) == [("equivalent", "http://loinc.org", "LA9193-9")]
    params = band.as_parameters()["parameter"]
    assert params[0] == {"name": "result", "valueBoolean": True}
    assert params[1]["part"][1]["valueCoding"]["display"] == "High"
