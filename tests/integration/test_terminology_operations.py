"""The terminology operations over HTTP (FHIR R4 valueset-operation-expand,
valueset-operation-validate-code, codesystem-operation-lookup,
codesystem-operation-validate-code, codesystem-operation-subsumes,
conceptmap-operation-translate) and the token search modifiers that use them.

Each test stores what it needs under URLs of its own (the session's database is shared),
and also uses the programme content loaded at start-up and the shipped R4 core content.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from terminology import ORDINAL_VALUE
from tests.conftest import drop_database, fresh_database_url, start_server, stop_server

SB = "http://selfback.example.org/fhir"
GENDER_VS = "http://hl7.org/fhir/ValueSet/administrative-gender"
GENDER = "http://hl7.org/fhir/administrative-gender"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
OBS_STATUS = "http://hl7.org/fhir/observation-status"


def param(body: dict[str, Any], name: str) -> Any:
    """The value of the first parameter ``name`` of a Parameters resource."""
    for p in body["parameter"]:
        if p["name"] == name:
            return next((v for k, v in p.items() if k.startswith("value")), p.get("part"))
    return None


def parameters(*items: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": list(items)}


def codes(expanded: dict[str, Any]) -> list[str]:
    return [c["code"] for c in expanded["expansion"].get("contains", [])]


def issue(answer: httpx.Response) -> dict[str, Any]:
    body = answer.json()
    assert body["resourceType"] == "OperationOutcome", body
    first: dict[str, Any] = body["issue"][0]
    return first


@pytest.fixture
def stored(fhir: httpx.Client) -> dict[str, str]:
    """A stored is-a CodeSystem, a ValueSet over it and a ConceptMap from it, under fresh
    URLs; answers their URLs and ids."""
    tag = uuid.uuid4().hex[:10]
    system = f"http://example.org/fhir/CodeSystem/site-{tag}"
    cs = {
        "resourceType": "CodeSystem",
        "url": system,
        "version": "1",
        "name": "Site",
        "status": "active",
        "content": "complete",
        "hierarchyMeaning": "is-a",
        "concept": [
            {
                "code": "back",
                "display": "Back",
                "designation": [{"language": "da", "value": "Ryg"}],
                "concept": [
                    {"code": "lower-back", "display": "Lower back"},
                    {"code": "upper-back", "display": "Upper back"},
                ],
            },
            {"code": "neck", "display": "Neck"},
        ],
    }
    vs = {
        "resourceType": "ValueSet",
        "url": f"http://example.org/fhir/ValueSet/spine-{tag}",
        "status": "active",
        "compose": {
            "include": [
                {
                    "system": system,
                    "filter": [{"property": "concept", "op": "is-a", "value": "back"}],
                }
            ]
        },
    }
    cm = {
        "resourceType": "ConceptMap",
        "url": f"http://example.org/fhir/ConceptMap/site-{tag}",
        "status": "active",
        "group": [
            {
                "source": system,
                "target": f"urn:region-{tag}",
                "element": [
                    {
                        "code": "lower-back",
                        "target": [{"code": "lumbar", "equivalence": "equivalent"}],
                    },
                    {"code": "back", "target": [{"code": "trunk", "equivalence": "narrower"}]},
                ],
            }
        ],
    }
    out = {"tag": tag, "system": system, "vs": vs["url"], "cm": cm["url"]}
    for resource, key in ((cs, "cs_id"), (vs, "vs_id"), (cm, "cm_id")):
        created = fhir.post(f"/{resource['resourceType']}", json=resource)
        assert created.status_code == 201, created.text
        out[key] = created.json()["id"]
    return out


# --- CapabilityStatement --------------------------------------------------------------


def test_capability_statement_lists_the_operations(fhir: httpx.Client) -> None:
    resources = {r["type"]: r for r in fhir.get("/metadata").json()["rest"][0]["resource"]}

    def ops(rtype: str) -> dict[str, str]:
        return {o["name"]: o["definition"] for o in resources[rtype].get("operation", [])}

    base = "http://hl7.org/fhir/OperationDefinition/"
    assert ops("ValueSet")["expand"] == base + "ValueSet-expand"
    assert ops("ValueSet")["validate-code"] == base + "ValueSet-validate-code"
    assert ops("CodeSystem")["validate-code"] == base + "CodeSystem-validate-code"
    assert ops("CodeSystem")["lookup"] == base + "CodeSystem-lookup"
    assert ops("CodeSystem")["subsumes"] == base + "CodeSystem-subsumes"
    assert ops("ConceptMap")["translate"] == base + "ConceptMap-translate"
    assert "expand" not in ops("Patient")


# --- $expand --------------------------------------------------------------------------


def test_expand_r4_core_by_url_with_paging(fhir: httpx.Client) -> None:
    answer = fhir.get("/ValueSet/$expand", params={"url": GENDER_VS, "count": 2, "offset": 1})
    assert answer.status_code == 200, answer.text
    expansion = answer.json()["expansion"]
    assert (expansion["total"], expansion["offset"]) == (4, 1)
    assert expansion["contains"] == [
        {"system": GENDER, "version": "4.0.1", "code": "female", "display": "Female"},
        {"system": GENDER, "version": "4.0.1", "code": "other", "display": "Other"},
    ]
    assert expansion["timestamp"] and expansion["identifier"].startswith("urn:uuid:")


def test_expand_programme_content_in_danish_with_a_filter(fhir: httpx.Client) -> None:
    answer = fhir.get(
        "/ValueSet/$expand",
        params={
            "url": f"{SB}/ValueSet/answer-sick-leave",
            "displayLanguage": "da",
            "filter": "fuldt",
        },
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["expansion"]["contains"] == [
        {
            # The answer's ordinal from the CodeSystem (extension-ordinalvalue.html).
            "extension": [{"url": ORDINAL_VALUE, "valueDecimal": 2}],
            "system": f"{SB}/CodeSystem/questionnaire-answer",
            "version": "1.0.0",
            "code": "sick-leave-full",
            "display": "Fuldt sygemeldt",
        }
    ]
    assert '"valueDecimal":2}' in answer.text.replace(" ", "")


def test_expand_a_stored_value_set_by_instance_and_url(
    fhir: httpx.Client, stored: dict[str, str]
) -> None:
    by_id = fhir.get(f"/ValueSet/{stored['vs_id']}/$expand")
    assert by_id.status_code == 200, by_id.text
    assert codes(by_id.json()) == ["back", "lower-back", "upper-back"]
    by_url = fhir.post(
        "/ValueSet/$expand", json=parameters({"name": "url", "valueUri": stored["vs"]})
    )
    assert codes(by_url.json()) == ["back", "lower-back", "upper-back"]


def test_expand_a_value_set_sent_in_the_body(fhir: httpx.Client, stored: dict[str, str]) -> None:
    vs = {
        "resourceType": "ValueSet",
        "status": "draft",
        "compose": {
            "include": [{"system": stored["system"]}],
            "exclude": [{"valueSet": [stored["vs"]]}],
        },
    }
    as_parameter = fhir.post(
        "/ValueSet/$expand",
        json=parameters({"name": "valueSet", "resource": vs}, {"name": "count", "valueInteger": 5}),
    )
    assert as_parameter.status_code == 200, as_parameter.text
    assert codes(as_parameter.json()) == ["neck"]
    as_body = fhir.post(
        "/ValueSet/$expand?includeDesignations=true",
        json={
            **vs,
            "compose": {"include": [{"system": stored["system"], "concept": [{"code": "back"}]}]},
        },
    )
    assert as_body.json()["expansion"]["contains"][0]["designation"] == [
        {"language": "da", "value": "Ryg"}
    ]


EXPAND_ERRORS = [
    # (rule, params, status, issue code)
    ("unknown ValueSet", {"url": "http://example.org/fhir/ValueSet/none"}, 404, "not-found"),
    ("no ValueSet named", {}, 400, "invalid"),
    (
        "all of SNOMED CT",
        {"url": "http://hl7.org/fhir/ValueSet/clinical-findings"},
        422,
        "not-supported",
    ),
    ("count is not a number", {"url": GENDER_VS, "count": "many"}, 400, "invalid"),
    ("offset is negative", {"url": GENDER_VS, "offset": "-1"}, 400, "invalid"),
    ("unknown ValueSet version", {"url": GENDER_VS, "valueSetVersion": "9.9"}, 404, "not-found"),
]


@pytest.mark.parametrize(
    "params,status,code", [c[1:] for c in EXPAND_ERRORS], ids=[c[0] for c in EXPAND_ERRORS]
)
def test_expand_errors(fhir: httpx.Client, params: dict[str, str], status: int, code: str) -> None:
    answer = fhir.get("/ValueSet/$expand", params=params)
    assert answer.status_code == status, answer.text
    assert issue(answer)["code"] == code


def test_expand_unknown_instance_and_contradictory_requests(fhir: httpx.Client) -> None:
    assert fhir.get("/ValueSet/no-such-vs/$expand").status_code == 404
    both = fhir.post(
        "/ValueSet/$expand",
        json=parameters(
            {"name": "url", "valueUri": GENDER_VS},
            {"name": "valueSet", "resource": {"resourceType": "ValueSet", "status": "draft"}},
        ),
    )
    assert both.status_code == 400 and "one ValueSet" in issue(both)["diagnostics"]
    wrong = fhir.post(
        "/ValueSet/$expand", json=parameters({"name": "valueSet", "valueString": "x"})
    )
    assert wrong.status_code == 400
    malformed = fhir.post(
        "/ValueSet/$expand",
        json={"resourceType": "ValueSet", "status": "draft", "compose": {"include": "all"}},
    )
    assert malformed.status_code == 400
    assert issue(malformed)["expression"][0].startswith("ValueSet.compose.include")


@pytest.fixture
def limited_server(tmp_path: Path) -> Iterator[str]:
    url = fresh_database_url(tmp_path, "limited")
    running = start_server(
        url, tmp_path / "server", SELFBACK_TERMINOLOGY_MAX_EXPANSION="3", SELFBACK_LOAD_CONTENT="0"
    )
    try:
        yield running.fhir
    finally:
        stop_server(running)
        drop_database(url)


@pytest.mark.db
def test_too_large_expansion_is_too_costly(limited_server: str) -> None:
    with httpx.Client(base_url=limited_server, timeout=60) as client:
        answer = client.get("/ValueSet/$expand", params={"url": GENDER_VS})
        assert answer.status_code == 422, answer.text
        assert issue(answer)["code"] == "too-costly"
        assert "more than 3 codes" in issue(answer)["diagnostics"]
        # The same limit guards the :in search modifier.
        search = client.get("/Patient", params={"gender:in": GENDER_VS})
        assert search.status_code == 400 and issue(search)["code"] == "too-costly"


# --- ValueSet/$validate-code ----------------------------------------------------------

VALIDATE_CASES = [
    # (rule, query, result, display)
    ("a code in the value set", {"system": GENDER, "code": "female"}, True, "Female"),
    ("a code outside it", {"system": GENDER, "code": "woman"}, False, None),
    ("a wrong display", {"system": GENDER, "code": "female", "display": "Lady"}, False, "Female"),
]


@pytest.mark.parametrize(
    "query,result,display", [c[1:] for c in VALIDATE_CASES], ids=[c[0] for c in VALIDATE_CASES]
)
def test_validate_code_in_value_set_by_get(
    fhir: httpx.Client, query: dict[str, str], result: bool, display: str | None
) -> None:
    answer = fhir.get("/ValueSet/$validate-code", params={"url": GENDER_VS, **query})
    assert answer.status_code == 200, answer.text
    assert param(answer.json(), "result") is result
    assert param(answer.json(), "display") == display
    if not result:
        assert param(answer.json(), "message")


def test_validate_code_with_coding_and_codeable_concept(
    fhir: httpx.Client, stored: dict[str, str]
) -> None:
    coding = fhir.post(
        f"/ValueSet/{stored['vs_id']}/$validate-code",
        json=parameters(
            {"name": "coding", "valueCoding": {"system": stored["system"], "code": "upper-back"}}
        ),
    )
    assert param(coding.json(), "result") is True
    assert param(coding.json(), "display") == "Upper back"
    concept = fhir.post(
        "/ValueSet/$validate-code",
        json=parameters(
            {"name": "url", "valueUri": stored["vs"]},
            {
                "name": "codeableConcept",
                "valueCodeableConcept": {
                    "coding": [
                        {"system": stored["system"], "code": "neck"},
                        {"system": stored["system"], "code": "lower-back"},
                    ]
                },
            },
        ),
    )
    assert param(concept.json(), "result") is True
    neck = fhir.get(
        "/ValueSet/$validate-code",
        params={"url": stored["vs"], "system": stored["system"], "code": "neck"},
    )
    assert param(neck.json(), "result") is False
    assert "valid in its code system but is not in" in param(neck.json(), "message")


VALIDATE_ERRORS = [
    ("no code", {"url": GENDER_VS}, 400),
    ("unknown value set", {"url": "http://example.org/fhir/ValueSet/none", "code": "x"}, 404),
    (
        "a value set we cannot expand",
        {
            "url": "http://hl7.org/fhir/ValueSet/clinical-findings",
            "code": "1",
            "system": "http://snomed.info/sct",
        },
        422,
    ),
    ("no value set", {"code": "male"}, 400),
]


@pytest.mark.parametrize(
    "query,status", [c[1:] for c in VALIDATE_ERRORS], ids=[c[0] for c in VALIDATE_ERRORS]
)
def test_validate_code_errors(fhir: httpx.Client, query: dict[str, str], status: int) -> None:
    assert fhir.get("/ValueSet/$validate-code", params=query).status_code == status


def test_validate_code_coding_by_get_and_two_code_forms_are_400(fhir: httpx.Client) -> None:
    assert (
        fhir.get("/ValueSet/$validate-code", params={"url": GENDER_VS, "coding": "x"}).status_code
        == 400
    )
    both = fhir.post(
        "/ValueSet/$validate-code",
        json=parameters(
            {"name": "url", "valueUri": GENDER_VS},
            {"name": "code", "valueCode": "male"},
            {"name": "coding", "valueCoding": {"system": GENDER, "code": "male"}},
        ),
    )
    assert both.status_code == 400


# --- CodeSystem/$validate-code ----------------------------------------------------------


def test_validate_code_in_code_system(fhir: httpx.Client, stored: dict[str, str]) -> None:
    by_url = fhir.get("/CodeSystem/$validate-code", params={"url": OBS_STATUS, "code": "corrected"})
    assert param(by_url.json(), "result") is True and param(by_url.json(), "display") == "Corrected"
    by_coding = fhir.post(
        "/CodeSystem/$validate-code",
        json=parameters({"name": "coding", "valueCoding": {"system": OBS_STATUS, "code": "done"}}),
    )
    assert param(by_coding.json(), "result") is False
    by_id = fhir.get(
        f"/CodeSystem/{stored['cs_id']}/$validate-code", params={"code": "neck", "display": "Neck"}
    )
    assert param(by_id.json(), "result") is True
    assert fhir.get("/CodeSystem/$validate-code", params={"code": "x"}).status_code == 400
    unknown = fhir.get(
        "/CodeSystem/$validate-code", params={"url": "http://loinc.org", "code": "1-8"}
    )
    assert unknown.status_code == 404


# --- CodeSystem/$lookup -----------------------------------------------------------------


def test_lookup_core_and_programme_codes(fhir: httpx.Client) -> None:
    core = fhir.get("/CodeSystem/$lookup", params={"system": CLINICAL, "code": "inactive"})
    assert core.status_code == 200, core.text
    body = core.json()
    assert param(body, "name") == "ConditionClinicalStatusCodes"
    assert param(body, "display") == "Inactive"
    children = [p["part"][1]["valueCode"] for p in body["parameter"] if p["name"] == "property"]
    assert children == ["remission", "resolved"]
    ours = fhir.post(
        "/CodeSystem/$lookup",
        json=parameters(
            {
                "name": "coding",
                "valueCoding": {
                    "system": f"{SB}/CodeSystem/questionnaire-answer",
                    "code": "very-much",
                },
            },
            {"name": "displayLanguage", "valueCode": "da"},
        ),
    )
    assert param(ours.json(), "display") == "Meget"


def test_lookup_instance_and_property_filter(fhir: httpx.Client, stored: dict[str, str]) -> None:
    answer = fhir.get(
        f"/CodeSystem/{stored['cs_id']}/$lookup",
        params={"code": "lower-back", "property": "parent"},
    )
    assert answer.status_code == 200, answer.text
    props = [p for p in answer.json()["parameter"] if p["name"] == "property"]
    assert props == [
        {
            "name": "property",
            "part": [
                {"name": "code", "valueCode": "parent"},
                {"name": "value", "valueCode": "back"},
            ],
        }
    ]


LOOKUP_ERRORS = [
    ("unknown code", {"system": CLINICAL, "code": "gone"}, 404),
    ("unknown code system", {"system": "http://loinc.org", "code": "1-8"}, 404),
    ("no system", {"code": "active"}, 400),
    ("no code", {"system": CLINICAL}, 400),
]


@pytest.mark.parametrize(
    "query,status", [c[1:] for c in LOOKUP_ERRORS], ids=[c[0] for c in LOOKUP_ERRORS]
)
def test_lookup_errors(fhir: httpx.Client, query: dict[str, str], status: int) -> None:
    assert fhir.get("/CodeSystem/$lookup", params=query).status_code == status


# --- CodeSystem/$subsumes ---------------------------------------------------------------

SUBSUMES_CASES = [
    ("active", "relapse", "subsumes"),
    ("remission", "inactive", "subsumed-by"),
    ("active", "active", "equivalent"),
    ("active", "resolved", "not-subsumed"),
]


@pytest.mark.parametrize("a,b,outcome", SUBSUMES_CASES)
def test_subsumes_by_get(fhir: httpx.Client, a: str, b: str, outcome: str) -> None:
    answer = fhir.get("/CodeSystem/$subsumes", params={"system": CLINICAL, "codeA": a, "codeB": b})
    assert answer.status_code == 200, answer.text
    assert param(answer.json(), "outcome") == outcome


def test_subsumes_with_codings_and_by_instance(fhir: httpx.Client, stored: dict[str, str]) -> None:
    codings = fhir.post(
        "/CodeSystem/$subsumes",
        json=parameters(
            {"name": "codingA", "valueCoding": {"system": stored["system"], "code": "lower-back"}},
            {"name": "codingB", "valueCoding": {"system": stored["system"], "code": "back"}},
        ),
    )
    assert param(codings.json(), "outcome") == "subsumed-by"
    by_id = fhir.get(
        f"/CodeSystem/{stored['cs_id']}/$subsumes", params={"codeA": "back", "codeB": "upper-back"}
    )
    assert param(by_id.json(), "outcome") == "subsumes"


SUBSUMES_ERRORS = [
    (
        "grouped-by hierarchy",
        {"system": f"{SB}/CodeSystem/assessment", "codeA": "rmdq", "codeB": "rmdq-total"},
        422,
        "not-supported",
    ),
    ("unknown code", {"system": CLINICAL, "codeA": "active", "codeB": "gone"}, 400, "code-invalid"),
    ("codeB missing", {"system": CLINICAL, "codeA": "active"}, 400, "invalid"),
    (
        "unknown code system",
        {"system": "http://loinc.org", "codeA": "1", "codeB": "2"},
        404,
        "not-found",
    ),
]


@pytest.mark.parametrize(
    "query,status,code", [c[1:] for c in SUBSUMES_ERRORS], ids=[c[0] for c in SUBSUMES_ERRORS]
)
def test_subsumes_errors(fhir: httpx.Client, query: dict[str, str], status: int, code: str) -> None:
    answer = fhir.get("/CodeSystem/$subsumes", params=query)
    assert answer.status_code == status, answer.text
    assert issue(answer)["code"] == code


# --- ConceptMap/$translate --------------------------------------------------------------


def _match_codes(body: dict[str, Any]) -> list[tuple[str, str | None]]:
    out = []
    for p in body["parameter"]:
        if p["name"] == "match":
            parts = {q["name"]: q for q in p["part"]}
            concept = parts.get("concept", {}).get("valueCoding", {})
            out.append((parts["equivalence"]["valueCode"], concept.get("code")))
    return out


def test_translate_programme_and_core_maps(fhir: httpx.Client) -> None:
    band = fhir.get(
        "/ConceptMap/$translate",
        params={"system": f"{SB}/CodeSystem/score-band", "code": "sbst-high"},
    )
    assert band.status_code == 200, band.text
    assert param(band.json(), "result") is True
    assert _match_codes(band.json()) == [("equivalent", "LA9193-9")]
    reverse = fhir.get(
        "/ConceptMap/$translate",
        params={
            "system": "http://terminology.hl7.org/CodeSystem/v3-AdministrativeGender",
            "code": "F",
            "reverse": "true",
        },
    )
    assert _match_codes(reverse.json()) == [("equal", "female")]
    unmatched = fhir.get(
        "/ConceptMap/$translate",
        params={"system": f"{SB}/CodeSystem/assessment", "code": "rmdq-total"},
    )
    assert param(unmatched.json(), "result") is False
    assert _match_codes(unmatched.json()) == [("unmatched", None)]


def test_translate_a_stored_map(fhir: httpx.Client, stored: dict[str, str]) -> None:
    by_id = fhir.get(
        f"/ConceptMap/{stored['cm_id']}/$translate",
        params={"system": stored["system"], "code": "lower-back"},
    )
    assert _match_codes(by_id.json()) == [("equivalent", "lumbar")]
    reverse = fhir.post(
        "/ConceptMap/$translate",
        json=parameters(
            {"name": "url", "valueUri": stored["cm"]},
            {
                "name": "coding",
                "valueCoding": {"system": f"urn:region-{stored['tag']}", "code": "trunk"},
            },
            {"name": "reverse", "valueBoolean": True},
        ),
    )
    assert _match_codes(reverse.json()) == [("wider", "back")]
    found_by_system = fhir.get(
        "/ConceptMap/$translate", params={"system": stored["system"], "code": "back"}
    )
    assert _match_codes(found_by_system.json()) == [("narrower", "trunk")]


TRANSLATE_ERRORS = [
    (
        "unknown map",
        {"url": "http://example.org/fhir/ConceptMap/none", "system": GENDER, "code": "male"},
        404,
    ),
    ("no system", {"code": "male"}, 400),
    ("reverse is not a boolean", {"system": GENDER, "code": "male", "reverse": "maybe"}, 400),
]


@pytest.mark.parametrize(
    "query,status", [c[1:] for c in TRANSLATE_ERRORS], ids=[c[0] for c in TRANSLATE_ERRORS]
)
def test_translate_errors(fhir: httpx.Client, query: dict[str, str], status: int) -> None:
    assert fhir.get("/ConceptMap/$translate", params=query).status_code == status


# --- search modifiers over HTTP ---------------------------------------------------------


def test_token_modifiers_over_http(fhir: httpx.Client, stored: dict[str, str]) -> None:
    patient = fhir.post("/Patient", json={"resourceType": "Patient"}).json()["id"]
    made = {}
    for status in ("active", "relapse", "remission"):
        condition = {
            "resourceType": "Condition",
            "clinicalStatus": {"coding": [{"system": CLINICAL, "code": status}]},
            "code": {"coding": [{"system": stored["system"], "code": "lower-back"}]},
            "subject": {"reference": f"Patient/{patient}"},
        }
        created = fhir.post("/Condition", json=condition)
        assert created.status_code == 201, created.text
        made[status] = created.json()["id"]

    def found(**query: str) -> set[str]:
        answer = fhir.get("/Condition", params={"subject": f"Patient/{patient}", **query})
        assert answer.status_code == 200, answer.text
        return {
            e["resource"]["id"]
            for e in answer.json().get("entry", [])
            if e["search"]["mode"] == "match"
        }

    assert found(**{"clinical-status:below": f"{CLINICAL}|active"}) == {
        made["active"],
        made["relapse"],
    }
    assert found(**{"clinical-status:above": f"{CLINICAL}|remission"}) == {made["remission"]}
    assert found(**{"code:in": stored["vs"]}) == set(made.values())
    assert found(**{"code:not-in": stored["vs"]}) == set()
    assert found(**{"code:below": f"{stored['system']}|upper-back"}) == set()
    posted = fhir.post(
        "/Condition/_search",
        data={
            "subject": f"Patient/{patient}",
            "clinical-status:in": "http://hl7.org/fhir/ValueSet/condition-clinical",
        },
    )
    assert len(posted.json()["entry"]) == 3
    bad = fhir.get("/Condition", params={"code:in": "http://example.org/fhir/ValueSet/none"})
    assert bad.status_code == 400 and issue(bad)["code"] == "not-found"
    # Conditional interactions resolve the modifiers too (FHIR R4 http.html#ccreate).
    again = fhir.post(
        "/Condition",
        json={"resourceType": "Condition", "subject": {"reference": f"Patient/{patient}"}},
        headers={
            "If-None-Exist": f"subject=Patient/{patient}&clinical-status:below={CLINICAL}|inactive"
        },
    )
    assert again.status_code == 200 and again.json()["id"] == made["remission"]
    refused = fhir.post(
        "/Condition",
        json={"resourceType": "Condition", "subject": {"reference": f"Patient/{patient}"}},
        headers={"If-None-Exist": f"code:below={SB}/CodeSystem/assessment|rmdq"},
    )
    assert refused.status_code == 400 and issue(refused)["code"] == "not-supported"
