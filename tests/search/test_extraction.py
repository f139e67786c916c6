"""Index extraction: what rows a resource yields, per parameter type (search.html)."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_server.search import extract_index_rows, registry
from fhir_server.search.dates import MAX_US, MIN_US, InvalidDate, date_range, instant_us
from fhir_server.search.references import Target, parse_canonical, parse_reference
from fhir_server.search.text import normalise
from fhir_server.storage.schema import INDEX_TABLES

US = 1_000_000
DAY = 86_400 * US


def rows(resource: dict[str, Any], table: str, param: str) -> list[dict[str, Any]]:
    return [r for r in extract_index_rows(resource)[table] if r["param"] == param]


# --- dates --------------------------------------------------------------------------

DATE_CASES = [
    ("1970", 0, 365 * DAY - 1),
    ("1970-02", 31 * DAY, 59 * DAY - 1),
    ("2020-02", instant_us("2020-02-01"), instant_us("2020-02-01") + 29 * DAY - 1),  # leap
    ("1970-01-02", DAY, 2 * DAY - 1),
    ("1970-01-01T00:01", 60 * US, 120 * US - 1),
    ("1970-01-01T00:00:10Z", 10 * US, 11 * US - 1),
    ("1970-01-01T00:00:10.5Z", 10_500_000, 10_600_000 - 1),
    ("1970-01-01T00:00:10.123456789Z", 10_123_456, 10_123_456),
    ("1970-01-01T02:00:00+02:00", 0, US - 1),
    ("1969-12-31T19:00:00-05:00", 0, US - 1),
    ("1970-01-01T00:00:00", 0, US - 1),  # no zone: UTC
]


@pytest.mark.parametrize(("text", "lo", "hi"), DATE_CASES)
def test_date_range_follows_precision(text: str, lo: int, hi: int) -> None:
    assert date_range(text) == (lo, hi)


@pytest.mark.parametrize(
    "text", ["", "20", "2020-13", "2020-02-30", "2020-01-01T25:00", "2020/01/01", "2020-1-1", "x"]
)
def test_invalid_dates(text: str) -> None:
    with pytest.raises(InvalidDate):
        date_range(text)


def test_period_open_ends_are_unbounded() -> None:
    enc = {"resourceType": "Encounter", "status": "finished", "period": {"start": "2020-01-01"}}
    assert rows(enc, "sp_date", "date") == [
        {"param": "date", "lo": instant_us("2020-01-01"), "hi": MAX_US, "grp": None}
    ]
    enc["period"] = {"end": "2020-01-01"}
    assert rows(enc, "sp_date", "date")[0]["lo"] == MIN_US


def test_timing_outer_limits() -> None:
    # search.html#date: for a Timing "only the outer limits matter".
    req = {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/1"},
        "dosageInstruction": [
            {
                "timing": {
                    "event": ["2020-01-05", "2020-01-02"],
                    "repeat": {"boundsPeriod": {"end": "2020-02-01"}},
                }
            }
        ],
    }
    found = rows(req, "sp_date", "authoredon")
    assert found == []  # not authored
    procedure = {
        "resourceType": "CarePlan",
        "status": "active",
        "intent": "plan",
        "subject": {"reference": "Patient/1"},
        "activity": [
            {
                "detail": {
                    "status": "scheduled",
                    "scheduledTiming": {"event": ["2020-01-05", "2020-01-02"]},
                }
            }
        ],
    }
    (row,) = rows(procedure, "sp_date", "activity-date")
    assert (row["lo"], row["hi"]) == (instant_us("2020-01-02"), instant_us("2020-01-06") - 1)


# --- strings ------------------------------------------------------------------------


def test_normalise_folds_case_and_accents() -> None:
    assert normalise("Müller-Ødegård") == "muller-ødegard"
    assert normalise("ÉLODIE") == "elodie"
    assert len(normalise("x" * 400)) == 255


def test_human_name_every_part() -> None:
    patient = {
        "resourceType": "Patient",
        "name": [
            {"family": "Núñez", "given": ["Ana", "María"], "prefix": ["Dr"], "text": "Dr Ana Núñez"}
        ],
    }
    assert sorted(r["value_norm"] for r in rows(patient, "sp_string", "name")) == [
        "ana",
        "dr",
        "dr ana nunez",
        "maria",
        "nunez",
    ]
    assert [r["value_exact"] for r in rows(patient, "sp_string", "family")] == ["Núñez"]


def test_address_every_part() -> None:
    patient = {
        "resourceType": "Patient",
        "address": [
            {"line": ["1 Main St"], "city": "Odense", "postalCode": "5000", "country": "DK"}
        ],
    }
    assert sorted(r["value_norm"] for r in rows(patient, "sp_string", "address")) == [
        "1 main st",
        "5000",
        "dk",
        "odense",
    ]


# --- tokens -------------------------------------------------------------------------


def test_codeable_concept_codings_and_distinct_text() -> None:
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {
            "coding": [
                {"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"},
                {"system": "http://snomed.info/sct", "code": "364075005"},
            ],
            "text": "Pulse",
        },
    }
    assert [(r["system"], r["code"], r["text_norm"]) for r in rows(obs, "sp_token", "code")] == [
        ("http://loinc.org", "8867-4", "heart rate"),
        ("http://snomed.info/sct", "364075005", None),
        (None, None, "pulse"),
    ]
    obs["code"]["text"] = "Heart rate"
    assert len(rows(obs, "sp_token", "code")) == 2  # the text says what a display says


def test_identifier_contactpoint_boolean_code() -> None:
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:mrn", "value": "7", "type": {"text": "MRN"}}],
        "telecom": [{"system": "phone", "value": "123"}, {"system": "email", "value": "a@b"}],
        "active": False,
        "gender": "female",
    }
    assert rows(patient, "sp_token", "identifier") == [
        {"param": "identifier", "system": "urn:mrn", "code": "7", "text_norm": "mrn", "grp": None}
    ]
    assert [r["code"] for r in rows(patient, "sp_token", "phone")] == ["123"]
    assert [r["code"] for r in rows(patient, "sp_token", "email")] == ["a@b"]
    assert [r["code"] for r in rows(patient, "sp_token", "active")] == ["false"]
    assert [(r["system"], r["code"]) for r in rows(patient, "sp_token", "gender")] == [
        (None, "female")
    ]


# --- numbers and quantities ---------------------------------------------------------


def test_quantity_point_with_ucum_canonical() -> None:
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "glucose"},
        "valueQuantity": {
            "value": 5.4,
            "unit": "mmol/L",
            "system": "http://unitsofmeasure.org",
            "code": "mmol/L",
        },
    }
    (row,) = rows(obs, "sp_quantity", "value-quantity")
    assert (row["value"], row["lo"], row["hi"]) == (5.4, 5.4, 5.4)
    assert (row["canon_code"], row["canon_lo"]) == ("mol/L", 0.0054)
    assert row["unit"] == "mmol/L"


def test_quantity_range_has_bounds_and_no_value() -> None:
    cond = {
        "resourceType": "Condition",
        "subject": {"reference": "Patient/1"},
        "onsetRange": {"low": {"value": 2, "system": "http://unitsofmeasure.org", "code": "a"}},
    }
    (row,) = rows(cond, "sp_quantity", "onset-age")
    assert row["value"] is None and row["lo"] == 2 and row["hi"] >= 1e300
    assert row["canon_code"] == "s" and row["canon_lo"] == 2 * 31557600


def test_number_decimal_and_range() -> None:
    ra = {
        "resourceType": "RiskAssessment",
        "status": "final",
        "subject": {"reference": "Patient/1"},
        "prediction": [{"probabilityDecimal": 0.2}, {"probabilityRange": {"high": {"value": 0.5}}}],
    }
    found = rows(ra, "sp_number", "probability")
    assert [(r["value"], r["lo"], r["hi"]) for r in found] == [(0.2, 0.2, 0.2), (None, -1e300, 0.5)]


# --- references ---------------------------------------------------------------------

REFERENCE_CASES = [
    ("Patient/1", Target("Patient", "1", None, None)),
    ("Patient/1/_history/3", Target("Patient", "1", "3", None)),
    (
        "http://x.org/fhir/Patient/1",
        Target("Patient", "1", None, "http://x.org/fhir/Patient/1"),
    ),
    (
        "http://x.org/fhir/Patient/1/_history/2",
        Target("Patient", "1", "2", "http://x.org/fhir/Patient/1"),
    ),
    ("urn:uuid:1234", Target(None, None, None, "urn:uuid:1234")),
    ("#contained", None),
    ("", None),
    ("not a reference", None),
]


@pytest.mark.parametrize(("text", "expected"), REFERENCE_CASES)
def test_parse_reference(text: str, expected: Target | None) -> None:
    assert parse_reference(text) == expected


def test_parse_canonical() -> None:
    assert parse_canonical("http://x.org/Questionnaire/q|1.2") == Target(
        "Questionnaire", None, "1.2", "http://x.org/Questionnaire/q"
    )


def test_reference_rows_and_identifier_rows() -> None:
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "subject": {"reference": "Patient/1"},
        "performer": [
            {"reference": "#p"},
            {"identifier": {"system": "urn:npi", "value": "9"}},
            {"reference": "Practitioner/2", "identifier": {"value": "8"}},
        ],
    }
    assert [(r["target_type"], r["target_id"]) for r in rows(obs, "sp_reference", "patient")] == [
        ("Patient", "1")
    ]
    assert [(r["target_type"], r["target_id"]) for r in rows(obs, "sp_reference", "performer")] == [
        ("Practitioner", "2")
    ]
    assert [(r["system"], r["code"]) for r in rows(obs, "sp_token", "performer:identifier")] == [
        ("urn:npi", "9"),
        (None, "8"),
    ]


def test_where_resolve_is_uses_the_reference_type() -> None:
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "subject": {"reference": "Group/1"},
    }
    assert rows(obs, "sp_reference", "patient") == []
    assert len(rows(obs, "sp_reference", "subject")) == 1
    obs["subject"] = {"type": "Patient", "identifier": {"value": "1"}}
    assert rows(obs, "sp_token", "patient:identifier")[0]["code"] == "1"


def test_canonical_reference_rows() -> None:
    qr = {
        "resourceType": "QuestionnaireResponse",
        "status": "completed",
        "questionnaire": "http://x.org/Questionnaire/q|3",
    }
    assert rows(qr, "sp_reference", "questionnaire") == [
        {
            "param": "questionnaire",
            "target_type": "Questionnaire",
            "target_id": None,
            "target_version": "3",
            "url": "http://x.org/Questionnaire/q",
            "grp": None,
        }
    ]


# --- composites ---------------------------------------------------------------------


def test_composite_components_share_a_group_per_element() -> None:
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
        "component": [
            {"code": {"coding": [{"code": "sys"}]}, "valueQuantity": {"value": 120}},
            {"code": {"coding": [{"code": "dia"}]}, "valueQuantity": {"value": 80}},
            {"code": {"coding": [{"code": "note"}]}, "valueString": "no quantity here"},
        ],
    }
    codes = rows(obs, "sp_token", "component-code-value-quantity#0")
    values = rows(obs, "sp_quantity", "component-code-value-quantity#1")
    assert [(r["code"], r["grp"]) for r in codes] == [("sys", 0), ("dia", 1)]
    assert [(r["value"], r["grp"]) for r in values] == [(120.0, 0), (80.0, 1)]


# --- every row fits its table -------------------------------------------------------


def test_rows_hold_exactly_the_value_columns() -> None:
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "s", "code": "c"}]},
        "subject": {"reference": "Patient/1"},
        "effectiveDateTime": "2020",
        "valueQuantity": {"value": 1},
        "meta": {"profile": ["http://p"], "tag": [{"code": "t"}]},
    }
    extracted = extract_index_rows(obs)
    assert set(extracted) == set(INDEX_TABLES)
    assert {t for t, found in extracted.items() if found} == {
        "sp_token",
        "sp_reference",
        "sp_date",
        "sp_quantity",
        "sp_uri",
    }
    for table, found in extracted.items():
        columns = {c.name for c in INDEX_TABLES[table].columns} - {"res_pk", "rtype"}
        for row in found:
            assert set(row) == columns


def test_unknown_resource_type_yields_only_common_rows() -> None:
    found = extract_index_rows({"resourceType": "Nonsense", "meta": {"tag": [{"code": "t"}]}})
    assert [r["param"] for r in found["sp_token"]] == ["_tag"]


# --- the registry -------------------------------------------------------------------


def test_registry_lookups() -> None:
    reg = registry()
    code = reg.get("Observation", "code")
    assert code is not None and code.type == "token" and code.expression == "Observation.code"
    assert reg.get("Observation", "_lastUpdated") is not None  # common (Resource) parameter
    assert reg.get("Binary", "_id") is not None  # a type with no parameters of its own
    assert reg.get(None, "_tag") is not None and reg.get(None, "code") is None
    assert reg.get("Nonsense", "_id") is None
    codes = {p.code for p in reg.for_type("Patient")}
    assert {
        "name",
        "birthdate",
        "_id",
        "_lastUpdated",
        "_tag",
        "_profile",
        "_security",
        "_source",
        "_text",
    } <= codes
    assert reg.provenance["fhir_version"] == "4.0.1"


def test_shared_expression_is_narrowed_to_the_type() -> None:
    patient = registry().get("Observation", "patient")
    assert patient is not None
    assert patient.expression == "Observation.subject.where(resolve() is Patient)"
    assert patient.targets == ("Group", "Patient")
