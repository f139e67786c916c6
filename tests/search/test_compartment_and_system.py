"""Compartment search (compartmentdefinition.html, http.html#search) and system search with
``_type`` (search.html#system), on the fixed resources of search_db.py, SQLite and
PostgreSQL."""

from __future__ import annotations

import json
from urllib.parse import parse_qsl

import pytest
from search_db import NOW_US, SHARED, matching_ids
from sqlalchemy import Engine

from fhir_server.errors import FhirError
from fhir_server.search import parse_search
from fhir_server.search.compartments import DATA_FILE, compartments
from fhir_server.search.generate import build_compartments

DEFINITIONS = SHARED / "fhir-r4" / "definitions"


def ids(
    engine: Engine, rtype: str | None, query: str, compartment: tuple[str, str] | None = None
) -> set[str]:
    parsed = parse_search(
        rtype, parse_qsl(query), strict=True, now_us=NOW_US, compartment=compartment
    )
    return matching_ids(engine, parsed)


# --- the data file ------------------------------------------------------------------


def test_compartment_definitions_shipped() -> None:
    found = compartments()
    assert set(found) == {"Patient", "Encounter", "RelatedPerson", "Practitioner", "Device"}
    patient = found["Patient"]
    assert patient.params_for("Observation") == ("subject", "performer")
    assert patient.params_for("Organization") == ()
    # {def}: the owner itself, listed by Encounter, Practitioner and RelatedPerson only
    assert found["Encounter"].includes_owner("Encounter")
    assert not patient.includes_owner("Patient")
    assert patient.params_for("Patient") == ("link",)


@pytest.mark.conformance
@pytest.mark.skipif(not SHARED.exists(), reason="../shared reference data is absent")
def test_compartments_file_is_current() -> None:
    with open(DATA_FILE, encoding="utf-8") as fh:
        assert json.load(fh) == build_compartments(DEFINITIONS)


# --- compartment search -------------------------------------------------------------

COMPARTMENT_CASES = [
    # (rule, compartment, type, query, expected ids)
    ("subject refers to the patient", ("Patient", "p1"), "Observation", "", {"o1", "o3"}),
    # o5 refers to Patient/p1 on another server: not this patient
    (
        "absolute references elsewhere are not in",
        ("Patient", "p1"),
        "Observation",
        "",
        {"o1", "o3"},
    ),
    ("criteria narrow the compartment", ("Patient", "p1"), "Observation", "code=8867-4", {"o1"}),
    ("another patient", ("Patient", "p2"), "Observation", "", {"o2"}),
    # membership is by reference, as for subject=Patient/p4, whether the owner exists or not
    ("a deleted owner's references still count", ("Patient", "p4"), "Observation", "", {"o7"}),
    ("unknown owner", ("Patient", "nobody"), "Observation", "", set()),
    ("QuestionnaireResponse by subject", ("Patient", "p1"), "QuestionnaireResponse", "", {"qr1"}),
    ("every type with *", ("Patient", "p1"), None, "", {"o1", "o3", "qr1", "ra1"}),
    ("* with _type", ("Patient", "p1"), None, "_type=Observation", {"o1", "o3"}),
    ("* with a common parameter", ("Patient", "p1"), None, "_id=o3,qr1,o6", {"o3", "qr1"}),
    # Patient/p1/Patient: patients that link to p1 (R4 lists no {def} for Patient)
    ("the patient compartment lists no {def}", ("Patient", "p1"), "Patient", "", set()),
    ("RiskAssessment by subject", ("Patient", "p1"), "RiskAssessment", "", {"ra1"}),
]


@pytest.mark.parametrize(
    ("compartment", "rtype", "query", "expected"),
    [pytest.param(c, t, q, e, id=r) for r, c, t, q, e in COMPARTMENT_CASES],
)
def test_compartment_search(
    search_engine: Engine,
    compartment: tuple[str, str],
    rtype: str | None,
    query: str,
    expected: set[str],
) -> None:
    assert ids(search_engine, rtype, query, compartment) == expected


@pytest.mark.parametrize(
    ("compartment", "rtype", "query", "status"),
    [
        (("Organization", "org1"), "Patient", "", 404),  # not a compartment
        (("Patient", "p1"), "Organization", "", 400),  # never in a patient compartment
        (("Patient", "p1"), "Observation", "_type=Observation", 400),
        (("Patient", "p1"), None, "_type=Organization", 400),
        (("Patient", "p1"), None, "code=8867-4", 400),  # not common to every type
    ],
)
def test_compartment_refusals(
    compartment: tuple[str, str], rtype: str | None, query: str, status: int
) -> None:
    with pytest.raises(FhirError) as err:
        parse_search(rtype, parse_qsl(query), strict=True, compartment=compartment)
    assert err.value.status == status


# --- system search with _type (search.html#system) -----------------------------------

SYSTEM_CASES = [
    ("_type alone", "_type=Organization,Questionnaire", {"org1", "q1"}),
    ("_type repeated", "_type=Organization&_type=Questionnaire", {"org1", "q1"}),
    (
        "a parameter every listed type has",
        "_type=Observation,RiskAssessment&subject=Patient/p1",
        {"o1", "o3", "ra1"},
    ),
    ("common parameters", "_type=Patient,Organization&_id=p2,org1,o1", {"p2", "org1"}),
    ("_type after the criteria", "status=completed&_type=QuestionnaireResponse", {"qr1", "qr2"}),
    ("no _type: common parameters only", "_id=p1,o1", {"p1", "o1"}),
]


@pytest.mark.parametrize(
    ("query", "expected"), [pytest.param(q, e, id=r) for r, q, e in SYSTEM_CASES]
)
def test_system_search_with_type(search_engine: Engine, query: str, expected: set[str]) -> None:
    assert ids(search_engine, None, query) == expected


def test_system_search_parameter_missing_on_a_listed_type() -> None:
    # Organization has no `subject`: unknown for the list, ignored leniently, 400 when strict
    params = parse_qsl("_type=Observation,Organization&subject=Patient/p1")
    assert parse_search(None, params).warnings
    with pytest.raises(FhirError) as err:
        parse_search(None, params, strict=True)
    assert err.value.status == 400


def test_system_search_refuses_bad_type() -> None:
    with pytest.raises(FhirError) as err:
        parse_search(None, [("_type", "Patient,NoSuchType")])
    assert err.value.status == 400
