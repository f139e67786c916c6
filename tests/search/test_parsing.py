"""parse_search: the expression tree, result parameters, and what is refused (search.html)."""

from __future__ import annotations

import pytest

from fhir_server.errors import FhirError
from fhir_server.search import Chain, Criterion, Has, parse_search
from fhir_server.search.dates import instant_us
from fhir_server.search.parsing import split_escaped, unescape
from fhir_server.search.query import (
    CompositeValue,
    DateValue,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    TextValue,
    TokenValue,
)

NOW = instant_us("2021-04-01T00:00:00Z")


def parse(rtype: str | None, query: list[tuple[str, str]], **kw: object):  # type: ignore[no-untyped-def]
    return parse_search(rtype, query, now_us=NOW, **kw)  # type: ignore[arg-type]


def only(query) -> Criterion:  # type: ignore[no-untyped-def]
    assert len(query.criteria) == 1
    node = query.criteria[0]
    assert isinstance(node, Criterion)
    return node


# --- values -------------------------------------------------------------------------

VALUE_CASES = [
    ("Patient", "gender", "male", TokenValue(None, "male")),
    ("Patient", "identifier", "urn:mrn|A1", TokenValue("urn:mrn", "A1")),
    ("Patient", "identifier", "|A1", TokenValue(None, "A1", no_system=True)),
    ("Patient", "identifier", "urn:mrn|", TokenValue("urn:mrn", None)),
    ("Patient", "identifier", r"urn\|x|A1", TokenValue("urn|x", "A1")),
    ("Patient", "name", "Smith", TextValue("Smith")),
    (
        "Patient",
        "birthdate",
        "ge2020",
        DateValue("ge", instant_us("2020-01-01"), instant_us("2021-01-01") - 1),
    ),
    ("RiskAssessment", "probability", "100", NumberValue("eq", 100.0, 99.5, 100.5)),
    ("RiskAssessment", "probability", "lt1e2", NumberValue("lt", 100.0, 50.0, 150.0)),
    ("RiskAssessment", "probability", "100.00", NumberValue("eq", 100.0, 99.995, 100.005)),
    ("Observation", "subject", "Patient/1", ReferenceValue("Patient", "1", None, None)),
    ("Observation", "subject", "1", ReferenceValue(None, "1", None, None)),
    ("Observation", "subject", "Patient/1/_history/2", ReferenceValue("Patient", "1", "2", None)),
    (
        "Observation",
        "subject",
        "http://x.org/fhir/Patient/1",
        ReferenceValue(None, None, None, "http://x.org/fhir/Patient/1"),
    ),
    (
        "QuestionnaireResponse",
        "questionnaire",
        "http://x.org/Questionnaire/q|2.0",
        ReferenceValue(None, None, "2.0", "http://x.org/Questionnaire/q"),
    ),
    ("Observation", "subject", "urn:uuid:abc", ReferenceValue(None, None, None, "urn:uuid:abc")),
]


@pytest.mark.parametrize(("rtype", "name", "raw", "expected"), VALUE_CASES)
def test_value_forms(rtype: str, name: str, raw: str, expected: object) -> None:
    assert only(parse(rtype, [(name, raw)])).values == (expected,)


def test_quantity_value_carries_canonical_units() -> None:
    (value,) = only(
        parse("Observation", [("value-quantity", "5.4|http://unitsofmeasure.org|kg")])
    ).values
    assert isinstance(value, QuantityValue)
    assert (value.system, value.code, value.canonical_code) == (
        "http://unitsofmeasure.org",
        "kg",
        "g",
    )
    assert value.canonical is not None
    assert value.canonical.value == pytest.approx(5400)
    assert (value.canonical.lo, value.canonical.hi) == pytest.approx((5350, 5450))


def test_ap_on_dates_widens_by_a_tenth_of_the_distance_to_now() -> None:
    (value,) = only(parse("Patient", [("birthdate", "ap2011-04-01")])).values
    assert isinstance(value, DateValue)
    day_lo, day_hi = instant_us("2011-04-01"), instant_us("2011-04-02") - 1
    slack = day_lo - value.lo
    # ten years from "now": about one year of slack either side
    assert 360 * 86_400_000_000 < slack < 370 * 86_400_000_000
    assert value.hi - day_hi == slack


def test_commas_or_values_and_escaped_commas_do_not() -> None:
    node = only(parse("Patient", [("name", r"a\,b,c")]))
    assert node.values == (TextValue("a,b"), TextValue("c"))


def test_repeated_parameters_are_anded() -> None:
    query = parse("Patient", [("name", "a"), ("name", "b")])
    assert [n.values for n in query.criteria] == [(TextValue("a"),), (TextValue("b"),)]  # type: ignore[union-attr]


def test_composite_value() -> None:
    node = only(
        parse("Observation", [("component-code-value-quantity", "http://loinc.org|8480-6$gt100")])
    )
    (value,) = node.values
    assert isinstance(value, CompositeValue)
    code, quantity = value.parts
    assert code == TokenValue("http://loinc.org", "8480-6")
    assert isinstance(quantity, QuantityValue) and quantity.number.prefix == "gt"


def test_split_and_unescape() -> None:
    assert split_escaped(r"a\,b,c\|d|e", ",") == [r"a\,b", r"c\|d|e"]
    assert unescape(r"a\,b\$c\|d\\e") == "a,b$c|d\\e"


# --- modifiers and missing ----------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "modifier"),
    [
        ("name:exact", "exact"),
        ("name:contains", "contains"),
        ("gender:not", "not"),
        ("gender:text", "text"),
    ],
)
def test_known_modifiers(name: str, modifier: str) -> None:
    assert only(parse("Patient", [(name, "x")])).modifier == modifier


def test_missing() -> None:
    node = only(parse("Patient", [("birthdate:missing", "true")]))
    assert (node.modifier, node.missing, node.values) == ("missing", True, ())


def test_reference_type_modifier_and_base_url() -> None:
    node = only(
        parse(
            "Observation",
            [("subject", "http://me.org/fhir/Patient/7")],
            base_url="http://me.org/fhir",
        )
    )
    assert node.values == (ReferenceValue("Patient", "7", None, None),)
    node = only(parse("Observation", [("subject:Patient", "7")]))
    assert node.values == (ReferenceValue("Patient", "7", None, None),)


# --- chains and _has ----------------------------------------------------------------


def test_chain_with_type() -> None:
    (node,) = parse("Observation", [("subject:Patient.name", "smith")]).criteria
    assert isinstance(node, Chain)
    assert node.param.code == "subject"
    assert [t for t, _ in node.targets] == ["Patient"]
    inner = node.targets[0][1]
    assert isinstance(inner, Criterion) and inner.param.code == "name"


def test_chain_without_type_goes_to_every_target_with_the_parameter() -> None:
    (node,) = parse("Observation", [("subject.name", "smith")]).criteria
    assert isinstance(node, Chain)
    # Observation.subject targets Patient, Group, Device, Location; in R4 only Patient
    # and Location define a `name` search parameter.
    assert sorted(t for t, _ in node.targets) == ["Location", "Patient"]


def test_chain_two_levels() -> None:
    (node,) = parse("Observation", [("subject:Patient.organization.name", "acme")]).criteria
    assert isinstance(node, Chain)
    inner = node.targets[0][1]
    assert isinstance(inner, Chain) and inner.param.code == "organization"


def test_has_nested() -> None:
    (node,) = parse(
        "Organization", [("_has:Patient:organization:_has:Observation:patient:code", "1234")]
    ).criteria
    assert isinstance(node, Has) and node.rtype == "Patient"
    assert isinstance(node.inner, Has) and node.inner.rtype == "Observation"
    assert isinstance(node.inner.inner, Criterion)


# --- result parameters --------------------------------------------------------------


def test_result_parameters_are_kept_apart() -> None:
    query = parse(
        "Observation",
        [
            ("code", "x"),
            ("_count", "10"),
            ("_sort", "-date,_id"),
            ("_include", "Observation:subject"),
            ("_include:iterate", "Patient:organization"),
            ("_revinclude", "Provenance:target"),
            ("_total", "accurate"),
            ("_summary", "true"),
            ("_elements", "code,subject"),
            ("_format", "json"),
        ],
    )
    assert len(query.criteria) == 1
    assert query.count == 10
    assert [(k.code, k.descending) for k in query.sort] == [("date", True), ("_id", False)]
    assert [(i.source, i.param.code if i.param else None, i.iterate) for i in query.include] == [
        ("Observation", "subject", False),
        ("Patient", "organization", True),
    ]
    assert [(i.source, i.param.code if i.param else None) for i in query.revinclude] == [
        ("Provenance", "target")
    ]
    assert (query.total, query.summary, query.elements) == ("accurate", "true", ("code", "subject"))
    assert query.warnings == []


def test_empty_values_are_ignored() -> None:
    assert parse("Patient", [("name", "")]).criteria == ()


def test_system_search_with_type() -> None:
    query = parse(None, [("_type", "Patient,Observation"), ("_lastUpdated", "gt2020")])
    assert query.types == ("Patient", "Observation")
    assert only(query).param.code == "_lastUpdated"


# --- unknown parameters: warnings, or 400 when strict -------------------------------


def test_unknown_parameter_is_a_warning_when_lenient() -> None:
    query = parse("Patient", [("nonsense", "1"), ("name", "x")])
    assert len(query.criteria) == 1
    (issue,) = query.warnings
    assert issue.severity == "warning" and "nonsense" in issue.diagnostics


def test_unknown_parameter_is_400_when_strict() -> None:
    with pytest.raises(FhirError) as err:
        parse("Patient", [("nonsense", "1")], strict=True)
    assert err.value.status == 400


def test_unknown_sort_is_a_warning_or_400() -> None:
    assert parse("Patient", [("_sort", "nonsense")]).warnings
    with pytest.raises(FhirError):
        parse("Patient", [("_sort", "nonsense")], strict=True)


MALFORMED = [
    ("Patient", "birthdate", "2020-13"),
    ("Patient", "birthdate", "yesterday"),
    ("Patient", "birthdate", "2020-02-30"),
    ("RiskAssessment", "probability", "ten"),
    ("Observation", "value-quantity", "5|kg"),
    ("Patient", "identifier", "a|b|c"),
    ("Patient", "name:fuzzy", "x"),
    # :in needs the terminology service (tests/search/test_terminology_modifiers.py);
    # :above/:below without a system are malformed already when parsed.
    ("Patient", "gender:below", "male"),
    ("Patient", "_id:in", "http://hl7.org/fhir/ValueSet/administrative-gender"),
    ("Patient", "birthdate:missing", "maybe"),
    ("Patient", "_count", "-1"),
    ("Patient", "_total", "some"),
    ("Patient", "_summary", "short"),
    ("Patient", "_include", "Patient"),
    ("Patient", "_include", "Patient:nonsense"),
    ("Patient", "_include", "Observation:subject"),
    ("Observation", "component-code-value-quantity", "8480-6"),
    ("Observation", "code.name", "x"),
    ("Observation", "subject:Medication", "1"),
    ("Patient", "_has:Observation", "x"),
    ("Patient", "_has:Observation:code:status", "final"),
    ("Patient", "_type", "Patient"),
    ("Patient", "identifier:of-type", "urn:mrn|A1"),
]


@pytest.mark.parametrize(("rtype", "name", "raw"), MALFORMED)
def test_malformed_values_are_400_even_when_lenient(rtype: str, name: str, raw: str) -> None:
    with pytest.raises(FhirError) as err:
        parse(rtype, [(name, raw)])
    assert err.value.status == 400


def test_unknown_resource_type() -> None:
    with pytest.raises(FhirError):
        parse("Nonsense", [])
