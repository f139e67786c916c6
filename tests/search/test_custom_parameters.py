"""Custom SearchParameter resources (searchparameter.html): which ones are taken, how the
live registry picks them up, and that extraction and search then use them (pure; the HTTP
path and $reindex are in test_custom_parameters_http.py)."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_server.search import extract_index_rows, parse_search, registry
from fhir_server.search.custom import LiveRegistry, custom_params, expression_for

NICKNAME = {
    "resourceType": "SearchParameter",
    "id": "patient-nickname",
    "url": "http://example.org/fhir/SearchParameter/patient-nickname",
    "name": "nickname",
    "status": "active",
    "code": "nickname",
    "base": ["Patient"],
    "type": "string",
    "expression": "Patient.name.where(use='nickname').given",
}


def sp(**changes: Any) -> dict[str, Any]:
    out = {**NICKNAME, **changes}
    return {k: v for k, v in out.items() if v is not None}


REFUSED = [
    # (rule, SearchParameter, what the problem says)
    ("composite is not supported", sp(type="composite"), "not supported"),
    ("special is not supported", sp(type="special"), "not supported"),
    ("no expression", sp(expression=None), "no expression"),
    ("no base", sp(base=[]), "no base"),
    ("unknown base", sp(base=["Nonsense"]), "not a resource type"),
    ("a core code on the same base", sp(code="name"), "core parameter"),
    ("a common core code", sp(code="_id"), "reserved"),
    ("the expression does not compile", sp(expression="Patient.name.nosuchfn()"), "compile"),
    ("no part for the base", sp(expression="Practitioner.name.given"), "no part"),
]


@pytest.mark.parametrize(("resource", "problem"), [pytest.param(r, p, id=n) for n, r, p in REFUSED])
def test_refused_definitions_say_why(resource: dict[str, Any], problem: str) -> None:
    found = custom_params([resource], registry())
    assert found.params == ()
    assert len(found.problems) == 1 and problem in found.problems[0]


@pytest.mark.parametrize("status", ["draft", "retired", "unknown"])
def test_only_active_definitions_count(status: str) -> None:
    assert custom_params([sp(status=status)], registry()) == custom_params([], registry())


def test_a_copy_of_a_core_definition_is_the_core_one() -> None:
    core = registry().get("Patient", "name")
    assert core is not None
    copy = sp(url=core.url, code="name", expression="Patient.name")
    assert custom_params([copy], registry()).params == ()


def test_two_claims_on_one_code_smaller_url_wins() -> None:
    a = sp(id="a", url="http://example.org/a")
    b = sp(id="b", url="http://example.org/b", expression="Patient.name.given")
    found = custom_params([b, a], registry())
    assert [p.url for p in found.params] == ["http://example.org/a"]
    assert "already defined" in found.problems[0]


def test_expression_is_split_per_base() -> None:
    both = "Patient.name.given | Practitioner.name.given | (RelatedPerson.name)"
    assert expression_for(both, "Practitioner") == "Practitioner.name.given"
    assert expression_for(both, "RelatedPerson") == "(RelatedPerson.name)"
    multi = sp(base=["Patient", "Practitioner"], expression=both)
    found = custom_params([multi], registry())
    assert {(p.rtype, p.expression) for p in found.params} == {
        ("Patient", "Patient.name.given"),
        ("Practitioner", "Practitioner.name.given"),
    }


PATIENT = {
    "resourceType": "Patient",
    "id": "x",
    "name": [{"family": "Hansen", "given": ["Johannes"]}, {"use": "nickname", "given": ["Hans"]}],
}


def test_extraction_and_parsing_use_the_registry_given() -> None:
    live = LiveRegistry()
    reg = live.current((1, 1), lambda: [NICKNAME])
    rows = extract_index_rows(PATIENT, reg)["sp_string"]
    assert {"param": "nickname", "value_norm": "hans", "value_exact": "Hans", "grp": None} in rows
    # the core registry knows nothing of it
    assert all(r["param"] != "nickname" for r in extract_index_rows(PATIENT)["sp_string"])
    assert parse_search("Patient", [("nickname", "hans")], reg=reg, strict=True).criteria
    lenient = parse_search("Patient", [("nickname", "hans")])
    assert not lenient.criteria and lenient.warnings


CUSTOM_TYPES = [
    # (type, expression, resource fields, search value, expected index table)
    (
        "token",
        "Patient.maritalStatus",
        {"maritalStatus": {"coding": [{"system": "s", "code": "M"}]}},
        "s|M",
        "sp_token",
    ),
    ("date", "Patient.birthDate", {"birthDate": "1970-02-03"}, "1970-02", "sp_date"),
    (
        "reference",
        "Patient.managingOrganization",
        {"managingOrganization": {"reference": "Organization/o"}},
        "Organization/o",
        "sp_reference",
    ),
    ("uri", "Patient.implicitRules", {"implicitRules": "http://x/y"}, "http://x/y", "sp_uri"),
    ("number", "Patient.multipleBirth", {"multipleBirthInteger": 2}, "2", "sp_number"),
]


@pytest.mark.parametrize(("ptype", "expression", "fields", "value", "table"), CUSTOM_TYPES)
def test_every_indexed_type_extracts(
    ptype: str, expression: str, fields: dict[str, Any], value: str, table: str
) -> None:
    reg = LiveRegistry().current(
        (1, 1), lambda: [sp(code="custom", type=ptype, expression=expression)]
    )
    rows = extract_index_rows({"resourceType": "Patient", "id": "x", **fields}, reg)[table]
    assert [r for r in rows if r["param"] == "custom"], rows
    assert parse_search("Patient", [("custom", value)], reg=reg, strict=True).criteria


def test_an_expression_failing_on_a_resource_indexes_nothing() -> None:
    # substring() of a non-string fails inside fhirpathpy; the write must still go through
    bad = sp(code="broken", expression="Patient.name.substring(1)")
    reg = LiveRegistry().current((1, 1), lambda: [bad])
    rows = extract_index_rows(PATIENT, reg)
    assert all(r["param"] != "broken" for found in rows.values() for r in found)


def test_live_registry_rebuilds_only_when_the_stamp_changes() -> None:
    loads: list[int] = []

    def load() -> list[dict[str, Any]]:
        loads.append(1)
        return [NICKNAME]

    live = LiveRegistry()
    first = live.current((1, 1), load)
    assert live.current((1, 1), load) is first and len(loads) == 1
    second = live.current((1, 2), load)
    assert second is not first and len(loads) == 2
    assert second.get("Patient", "nickname") is not None
    # no SearchParameter stored: the core registry itself, compiled plans and all
    assert live.current((0, 0), list) is registry()


def test_reindex_rewrites_the_same_rows_in_keyset_batches(search_engine: Any) -> None:
    """$reindex with the core registry changes nothing; batches of 2 (keyset on
    last_updated and pk for one type, on pk for all) visit every current resource once."""
    from search_db import RESOURCES
    from sqlalchemy import select

    from fhir_server.interactions.reindex import reindex
    from fhir_server.storage.database import Database
    from fhir_server.storage.repository import Repository
    from fhir_server.storage.schema import INDEX_TABLES

    def snapshot() -> dict[str, list[tuple[Any, ...]]]:
        with search_engine.connect() as conn:
            return {
                name: sorted(map(tuple, conn.execute(select(table)).all()), key=repr)
                for name, table in INDEX_TABLES.items()
            }

    before = snapshot()
    repo = Repository(Database(str(search_engine.url), search_engine, search_engine))
    observations = sum(
        1 for r, _, gone in RESOURCES if r["resourceType"] == "Observation" and not gone
    )
    one_type = reindex(repo, "Observation", batch=2)["issue"][0]["diagnostics"]
    assert f"Reindexed {observations} Observation resources" in one_type
    every = reindex(repo, None, batch=2)["issue"][0]["diagnostics"]
    assert f"Reindexed {sum(1 for _, _, gone in RESOURCES if not gone)} resources" in every
    assert snapshot() == before
