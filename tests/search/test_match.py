"""Which resources a search matches, per parameter type x modifier x prefix x value form.

Every case runs against the fixed resources of conftest.py on SQLite and on PostgreSQL.
The expected ids follow FHIR R4 search.html; the comment on each group names the rule.
"""

from __future__ import annotations

import pytest
from search_db import search_ids
from sqlalchemy import Engine

CASES: list[tuple[str, str, str, set[str]]] = [
    # (rule, type, query, expected ids)
    # --- string (search.html#string): starts-with after case and accent folding ---
    ("string starts with", "Patient", "name=smi", {"p1", "p2"}),
    ("string ignores case", "Patient", "name=SMITH", {"p1", "p2"}),
    ("string ignores accents", "Patient", "given=jose", {"p1"}),
    ("string accents in the query too", "Patient", "given=JOSÉ", {"p1"}),
    ("string matches any name part", "Patient", "name=ann", {"p2", "p3"}),
    ("string :exact is exact", "Patient", "name:exact=Smith", {"p1"}),
    ("string :exact is case-sensitive", "Patient", "name:exact=smith", set()),
    ("string :contains", "Patient", "name:contains=MITH", {"p1", "p2"}),
    ("string :contains middle of a word", "Organization", "name:contains=me hos", {"org1"}),
    ("string address part", "Patient", "address-city=arhus", {"p1"}),
    ("string OR with commas", "Patient", "name=jones,smithson", {"p2", "p3"}),
    ("string AND when repeated", "Patient", "name=smith&name=anna", {"p2"}),
    ("string no match", "Patient", "name=zed", set()),
    # --- token (search.html#token) ---
    ("token code", "Patient", "gender=male", {"p1"}),
    ("token system|code", "Patient", "identifier=urn:mrn|A1", {"p1"}),
    ("token code in any system", "Patient", "identifier=A1", {"p1"}),
    ("token system|", "Patient", "identifier=urn:mrn|", {"p1", "p2"}),
    ("token wrong system", "Patient", "identifier=urn:other|A1", set()),
    ("token is case-sensitive", "Patient", "identifier=a1", set()),
    ("token |code: no system", "Observation", "code=|local-code", {"o5"}),
    ("token |code excludes coded", "Observation", "code=|8867-4", set()),
    (
        "token CodeableConcept coding",
        "Observation",
        "code=http://loinc.org|8867-4",
        {"o1", "o6", "o7"},
    ),
    ("token OR", "Observation", "code=8867-4,29463-7", {"o1", "o2", "o6", "o7"}),
    ("token :not keeps resources without value", "Patient", "gender:not=male", {"p2", "p3"}),
    (
        "token :not with system",
        "Observation",
        "code:not=http://loinc.org|8867-4",
        {"o2", "o3", "o4", "o5"},
    ),
    ("token :text on display", "Observation", "code:text=heart", {"o1", "o6", "o7"}),
    ("token :text on CodeableConcept.text", "Observation", "code:text=free TEXT", {"o4"}),
    (
        "token :of-type",
        "Patient",
        "identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|B2",
        {"p2"},
    ),
    (
        "token :of-type needs the value too",
        "Patient",
        "identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|A1",
        set(),
    ),
    ("token ContactPoint", "Patient", "telecom=phone|555-1234", {"p1"}),
    ("token ContactPoint where(system='email')", "Patient", "email=jose@example.org", {"p1"}),
    ("token boolean", "Patient", "active=true", {"p1"}),
    ("token FHIRPath fallback (deceased)", "Patient", "deceased=true", {"p2"}),
    ("token FHIRPath fallback false", "Patient", "deceased=false", {"p1", "p3"}),
    ("token _tag", "Patient", "_tag=urn:tags|demo", {"p1"}),
    ("token category", "Observation", "category=vital-signs", {"o1"}),
    ("_id", "Patient", "_id=p1,p3", {"p1", "p3"}),
    ("_id of a deleted resource", "Patient", "_id=p4", set()),
    # --- uri (search.html#uri) ---
    ("uri equality", "ValueSet", "url=http://example.org/fhir/ValueSet/a", {"vs1"}),
    ("uri is not a prefix match", "ValueSet", "url=http://example.org/fhir", set()),
    ("uri :below", "ValueSet", "url:below=http://example.org/fhir/", {"vs1", "vs2"}),
    ("uri :above", "ValueSet", "url:above=http://example.org/fhir/ValueSet/b/c/d", {"vs2"}),
    ("uri _profile", "Patient", "_profile=http://example.org/StructureDefinition/pt", {"p1"}),
    # --- date (search.html#date, #prefix): ranges from precision, UTC ---
    ("date year covers the year", "Patient", "birthdate=1980", {"p1", "p3"}),
    ("date eq needs containment", "Patient", "birthdate=1980-05-14", {"p1"}),
    ("date month value", "Patient", "birthdate=1980-05", {"p1", "p3"}),
    ("date lt", "Patient", "birthdate=lt1980", {"p2"}),
    ("date ge", "Patient", "birthdate=ge1980-05", {"p1", "p3"}),
    ("date gt", "Patient", "birthdate=gt1980-05-01", {"p1", "p3"}),
    ("date le", "Patient", "birthdate=le1975-06", {"p2"}),
    ("date sa", "Patient", "birthdate=sa1979", {"p1", "p3"}),
    ("date eb", "Patient", "birthdate=eb1979", {"p2"}),
    ("date ne", "Patient", "birthdate=ne1980", {"p2"}),
    ("date day contains instants", "Observation", "date=2021-03-04", {"o1", "o4"}),
    ("date zone offset is applied", "Observation", "date=2021-03-04T10:00:00Z", {"o1", "o4"}),
    ("date value without zone is UTC", "Observation", "date=2021-03-04T10:00", {"o1", "o4"}),
    ("date year contains Period", "Observation", "date=2021", {"o1", "o2", "o3", "o4", "o6"}),
    ("date lt reaches Period start", "Observation", "date=lt2021-03-02", {"o2", "o3", "o5"}),
    ("date gt", "Observation", "date=gt2021-04-01", {"o3", "o6"}),
    ("date ap overlaps", "Observation", "date=ap2021-03-15", {"o2", "o3"}),
    (
        "date AND makes a window",
        "Observation",
        "date=ge2021-03-01&date=lt2021-04",
        {"o1", "o2", "o3", "o4"},
    ),
    ("_lastUpdated gt", "Patient", "_lastUpdated=gt2022-12-31", {"p2", "p3"}),
    ("_lastUpdated eq day", "Patient", "_lastUpdated=2022-01-01", {"p1"}),
    # --- number (search.html#number): significant figures ---
    ("number eq within precision", "RiskAssessment", "probability=0.25", {"ra1"}),
    ("number eq precision excludes", "RiskAssessment", "probability=0.2", set()),
    ("number eq coarse precision", "RiskAssessment", "probability=0.3", {"ra1"}),
    (
        "number gt includes Range reaching above",
        "RiskAssessment",
        "probability=gt0.2",
        {"ra1", "ra2"},
    ),
    ("number lt includes Range reaching below", "RiskAssessment", "probability=lt0.2", {"ra2"}),
    ("number le exact", "RiskAssessment", "probability=le0.25", {"ra1", "ra2"}),
    ("number ap", "RiskAssessment", "probability=ap0.26", {"ra1", "ra2"}),
    # --- quantity (search.html#quantity) ---
    ("quantity number only", "Observation", "value-quantity=72", {"o1"}),
    (
        "quantity system|code",
        "Observation",
        "value-quantity=72|http://unitsofmeasure.org|/min",
        {"o1"},
    ),
    ("quantity ||code", "Observation", "value-quantity=gt70||/min", {"o1"}),
    ("quantity ||unit", "Observation", "value-quantity=100||mg", {"o5"}),
    (
        "quantity UCUM canonical kg -> g",
        "Observation",
        "value-quantity=5.4|http://unitsofmeasure.org|kg",
        {"o2"},
    ),
    (
        "quantity UCUM canonical /min -> /s",
        "Observation",
        "value-quantity=gt5|http://unitsofmeasure.org|/min",
        {"o1", "o6"},
    ),
    ("quantity lt", "Observation", "value-quantity=lt80", {"o1", "o6"}),
    ("quantity ap", "Observation", "value-quantity=ap75", {"o1"}),
    ("quantity wrong unit", "Observation", "value-quantity=72|http://unitsofmeasure.org|kg", set()),
    # --- reference (search.html#reference) ---
    ("reference Type/id", "Observation", "subject=Patient/p1", {"o1", "o3"}),
    ("reference id", "Observation", "subject=p1", {"o1", "o3"}),
    ("reference :Type", "Observation", "subject:Patient=p1", {"o1", "o3"}),
    (
        "reference patient = subject.where(resolve() is Patient)",
        "Observation",
        "patient=p1",
        {"o1", "o3"},
    ),
    ("reference other type", "Observation", "subject=Group/g1", {"o4"}),
    ("reference patient excludes Group", "Observation", "patient=g1", set()),
    (
        "reference absolute URL",
        "Observation",
        "subject=http://other.example/fhir/Patient/p1",
        {"o5"},
    ),
    (
        "reference canonical any version",
        "QuestionnaireResponse",
        "questionnaire=http://example.org/Questionnaire/phq9",
        {"qr1", "qr2"},
    ),
    (
        "reference canonical |version",
        "QuestionnaireResponse",
        "questionnaire=http://example.org/Questionnaire/phq9|1.0",
        {"qr1"},
    ),
    ("reference :identifier", "Observation", "performer:identifier=urn:npi|123", {"o2"}),
    ("reference OR", "Observation", "subject=Patient/p1,Patient/p2", {"o1", "o2", "o3"}),
    # --- :missing (search.html#missing) ---
    ("missing=true", "Patient", "identifier:missing=true", {"p3"}),
    ("missing=false", "Patient", "identifier:missing=false", {"p1", "p2"}),
    ("missing quantity", "Observation", "value-quantity:missing=true", {"o3", "o4", "o7"}),
    ("missing date", "Observation", "date:missing=true", {"o7"}),
    # --- composite (search.html#composite): components from the same element ---
    (
        "composite token$quantity",
        "Observation",
        "component-code-value-quantity=http://loinc.org|8480-6$gt100",
        {"o3"},
    ),
    (
        "composite components must share an element",
        "Observation",
        "component-code-value-quantity=8480-6$lt100",
        set(),
    ),
    (
        "composite other component",
        "Observation",
        "component-code-value-quantity=8462-4$lt100",
        {"o3"},
    ),
    ("composite on the resource itself", "Observation", "code-value-quantity=8867-4$72", {"o1"}),
    (
        "composite combo reaches components",
        "Observation",
        "combo-code-value-quantity=8480-6$120,8867-4$72",
        {"o1", "o3"},
    ),
    (
        "composite canonical units",
        "Observation",
        "code-value-quantity=29463-7$5.4|http://unitsofmeasure.org|kg",
        {"o2"},
    ),
    (
        "composite :missing",
        "Observation",
        "code-value-quantity:missing=false",
        {"o1", "o2", "o5", "o6"},
    ),
    # --- chaining (search.html#chaining) ---
    ("chain with type", "Observation", "subject:Patient.name:exact=Smith", {"o1", "o3"}),
    ("chain without type", "Observation", "subject.name=smithson", {"o2"}),
    ("chain skips deleted targets", "Observation", "subject.gender=male", {"o1", "o3"}),
    ("chain skips absolute references", "Observation", "subject._id=p1", {"o1", "o3"}),
    ("chain two levels", "Observation", "subject:Patient.organization.name=acme", {"o6"}),
    ("chain to a token", "Observation", "patient.identifier=urn:mrn|B2", {"o2"}),
    (
        "chain OR values",
        "Observation",
        "subject:Patient.birthdate=1975,1980-05-14",
        {"o1", "o2", "o3"},
    ),
    ("chain AND with a plain param", "Observation", "subject.name=smith&code=55284-4", {"o3"}),
    ("chain :missing inside", "Observation", "subject:Patient.identifier:missing=true", {"o6"}),
    (
        "chain through a canonical reference",
        "QuestionnaireResponse",
        "questionnaire.status=active",
        {"qr1", "qr2"},
    ),
    (
        "chain through a canonical, no match",
        "QuestionnaireResponse",
        "questionnaire.status=retired",
        set(),
    ),
    # --- reverse chaining (search.html#has) ---
    ("_has", "Patient", "_has:Observation:patient:code=8867-4", {"p1", "p3"}),
    (
        "_has with system|code",
        "Patient",
        "_has:Observation:subject:code=http://loinc.org|29463-7",
        {"p2"},
    ),
    (
        "_has nested",
        "Organization",
        "_has:Patient:organization:_has:Observation:patient:code=8867-4",
        {"org1"},
    ),
    (
        "_has nested no match",
        "Organization",
        "_has:Patient:organization:_has:Observation:patient:code=29463-7",
        set(),
    ),
    (
        "_has ignores deleted referrers and targets",
        "Patient",
        "_has:Observation:patient:_id=o7",
        set(),
    ),
    (
        "_has with a chain inside",
        "Patient",
        "_has:QuestionnaireResponse:subject:status=completed",
        {"p1", "p2"},
    ),
    # --- several parameters AND-ed ---
    ("AND across parameters", "Observation", "code=8867-4&subject=Patient/p1", {"o1"}),
    ("no criteria: every current resource", "Patient", "", {"p1", "p2", "p3"}),
]


@pytest.mark.parametrize(
    ("rtype", "query", "expected"),
    [pytest.param(t, q, e, id=f"{rule} [{t}?{q}]") for rule, t, q, e in CASES],
)
def test_search_matches(search_engine: Engine, rtype: str, query: str, expected: set[str]) -> None:
    assert search_ids(search_engine, rtype, query) == expected
