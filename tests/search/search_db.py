"""A small, fixed set of resources for search tests, and how to load and query them.

Resources are written with SQLAlchemy Core exactly as the write path stores them: one
``resource`` row and the rows ``extract_index_rows`` returns. Each test asks which ids a
search matches.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from sqlalchemy import Engine, insert, select

from fhir_server.search import SearchQuery, extract_index_rows, parse_search
from fhir_server.search.dates import instant_us
from fhir_server.storage.schema import INDEX_TABLES, metadata, resource
from fhir_server.storage.search_sql import match_pks

POSTGRES_ADMIN = os.environ.get(
    "SELFBACK_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
SHARED = (Path(__file__).resolve().parents[2] / ".." / "shared").resolve()

# "Now" for the ap prefix: searches are pure functions of their inputs.
NOW_US = instant_us("2021-04-01T00:00:00Z")

UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"


def _patient(pid: str, family: str, given: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "name": [{"family": family, "given": given}],
        **extra,
    }


def _observation(oid: str, code: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "status": "final", "code": code, **extra}


def _loinc(code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": LOINC, "code": code, "display": display}]}


# (resource, last_updated, deleted)
RESOURCES: list[tuple[dict[str, Any], str, bool]] = [
    (
        _patient(
            "p1",
            "Smith",
            ["José"],
            gender="male",
            birthDate="1980-05-14",
            active=True,
            deceasedBoolean=False,
            identifier=[{"system": "urn:mrn", "value": "A1"}],
            telecom=[
                {"system": "phone", "value": "555-1234"},
                {"system": "email", "value": "jose@example.org"},
            ],
            address=[{"city": "Århus", "country": "DK"}],
            meta={
                "tag": [{"system": "urn:tags", "code": "demo"}],
                "profile": ["http://example.org/StructureDefinition/pt"],
            },
        ),
        "2022-01-01T00:00:00Z",
        False,
    ),
    (
        _patient(
            "p2",
            "Smithson",
            ["Anna"],
            gender="female",
            birthDate="1975",
            deceasedDateTime="2020-01-01",
            identifier=[
                {
                    "system": "urn:mrn",
                    "value": "B2",
                    "type": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                "code": "MR",
                            }
                        ]
                    },
                }
            ],
        ),
        "2023-01-01T00:00:00Z",
        False,
    ),
    (
        _patient(
            "p3",
            "Jones",
            ["Mary", "Ann"],
            gender="other",
            birthDate="1980-05",
            managingOrganization={"reference": "Organization/org1"},
            generalPractitioner=[{"reference": "http://other.example/fhir/Practitioner/x"}],
        ),
        "2024-01-01T00:00:00Z",
        False,
    ),
    # Deleted: must never match, directly or through a chain.
    (_patient("p4", "Smith", ["Old"], gender="male"), "2022-06-01T00:00:00Z", True),
    (
        {
            "resourceType": "Organization",
            "id": "org1",
            "name": "Acme Hospital",
            "identifier": [{"system": "urn:org", "value": "ACME"}],
        },
        "2022-01-01T00:00:00Z",
        False,
    ),
    (
        _observation(
            "o1",
            _loinc("8867-4", "Heart rate"),
            subject={"reference": "Patient/p1"},
            category=[
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                            "code": "vital-signs",
                        }
                    ]
                }
            ],
            effectiveDateTime="2021-03-04T10:00:00Z",
            valueQuantity={"value": 72, "unit": "beats/min", "system": UCUM, "code": "/min"},
        ),
        "2022-01-01T00:00:00Z",
        False,
    ),
    (
        _observation(
            "o2",
            _loinc("29463-7", "Body weight"),
            status="amended",
            subject={"reference": "Patient/p2"},
            effectivePeriod={"start": "2021-03-01", "end": "2021-03-31"},
            valueQuantity={"value": 5400, "unit": "g", "system": UCUM, "code": "g"},
            performer=[{"identifier": {"system": "urn:npi", "value": "123"}}],
        ),
        "2022-01-01T00:00:00Z",
        False,
    ),
    (
        _observation(
            "o3",
            _loinc("55284-4", "Blood pressure"),
            subject={"reference": "Patient/p1"},
            effectiveDateTime="2021",
            component=[
                {
                    "code": _loinc("8480-6", "Systolic blood pressure"),
                    "valueQuantity": {"value": 120, "system": UCUM, "code": "mm[Hg]"},
                },
                {
                    "code": _loinc("8462-4", "Diastolic blood pressure"),
                    "valueQuantity": {"value": 80, "system": UCUM, "code": "mm[Hg]"},
                },
            ],
        ),
        "2022-01-01T00:00:00Z",
        False,
    ),
    (
        _observation(
            "o4",
            {"text": "Free text finding"},
            subject={"reference": "Group/g1"},
            effectiveDateTime="2021-03-04T12:00:00+02:00",
            valueString="Positive result",
        ),
        "2022-01-01T00:00:00Z",
        False,
    ),
    (
        _observation(
            "o5",
            {"coding": [{"code": "local-code"}]},
            subject={"reference": "http://other.example/fhir/Patient/p1"},
            effectiveDateTime="2020-12-31T23:59:59Z",
            valueQuantity={"value": 100, "unit": "mg"},
        ),
        "2022-01-01T00:00:00Z",
        False,
    ),
    (
        _observation(
            "o6",
            _loinc("8867-4", "Heart rate"),
            subject={"reference": "Patient/p3"},
            effectiveDateTime="2021-05-01",
            valueQuantity={"value": 0.09, "system": UCUM, "code": "/s"},
        ),
        "2022-01-01T00:00:00Z",
        False,
    ),
    (
        _observation("o7", _loinc("8867-4", "Heart rate"), subject={"reference": "Patient/p4"}),
        "2022-01-01T00:00:00Z",
        False,
    ),
    (
        {
            "resourceType": "QuestionnaireResponse",
            "id": "qr1",
            "status": "completed",
            "questionnaire": "http://example.org/Questionnaire/phq9|1.0",
            "subject": {"reference": "Patient/p1"},
        },
        "2022-01-01T00:00:00Z",
        False,
    ),
    (
        {
            "resourceType": "QuestionnaireResponse",
            "id": "qr2",
            "status": "completed",
            "questionnaire": "http://example.org/Questionnaire/phq9|2.0",
            "subject": {"reference": "Patient/p2"},
        },
        "2022-01-01T00:00:00Z",
        False,
    ),
    (
        {
            "resourceType": "Questionnaire",
            "id": "q1",
            "status": "active",
            "url": "http://example.org/Questionnaire/phq9",
            "version": "1.0",
        },
        "2022-01-01T00:00:00Z",
        False,
    ),
    (
        {
            "resourceType": "ValueSet",
            "id": "vs1",
            "status": "active",
            "url": "http://example.org/fhir/ValueSet/a",
        },
        "2022-01-01T00:00:00Z",
        False,
    ),
    (
        {
            "resourceType": "ValueSet",
            "id": "vs2",
            "status": "active",
            "url": "http://example.org/fhir/ValueSet/b/c",
        },
        "2022-01-01T00:00:00Z",
        False,
    ),
    (
        {"resourceType": "ValueSet", "id": "vs3", "status": "draft", "url": "http://other.org/vs"},
        "2022-01-01T00:00:00Z",
        False,
    ),
    (
        {
            "resourceType": "RiskAssessment",
            "id": "ra1",
            "status": "final",
            "subject": {"reference": "Patient/p1"},
            "prediction": [{"probabilityDecimal": 0.25}],
        },
        "2022-01-01T00:00:00Z",
        False,
    ),
    (
        {
            "resourceType": "RiskAssessment",
            "id": "ra2",
            "status": "final",
            "subject": {"reference": "Patient/p2"},
            "prediction": [{"probabilityRange": {"low": {"value": 0.1}, "high": {"value": 0.3}}}],
        },
        "2022-01-01T00:00:00Z",
        False,
    ),
]


def load(engine: Engine) -> None:
    metadata.create_all(engine)
    with engine.begin() as conn:
        for body, updated, deleted in RESOURCES:
            pk = conn.execute(
                insert(resource)
                .values(
                    rtype=body["resourceType"],
                    id=body["id"],
                    version=1,
                    last_updated=instant_us(updated),
                    deleted=deleted,
                    body=json.dumps(body).encode(),
                )
                .returning(resource.c.pk)
            ).scalar_one()
            if deleted:
                continue  # storage removes the index rows of a deleted resource
            for table, rows in extract_index_rows(body).items():
                if rows:
                    conn.execute(
                        insert(INDEX_TABLES[table]),
                        [{**row, "res_pk": pk, "rtype": body["resourceType"]} for row in rows],
                    )


def postgres_url() -> str | None:
    try:
        import psycopg
    except ImportError:
        return None
    name = f"search_test_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True, connect_timeout=2) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError:
        return None
    base = POSTGRES_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    return f"{base}/{name}"


def drop_postgres(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def matching_ids(engine: Engine, query: SearchQuery) -> set[str]:
    stmt = select(resource.c.id).where(resource.c.pk.in_(match_pks(query)))
    with engine.connect() as conn:
        return set(conn.execute(stmt).scalars())


def search_ids(engine: Engine, rtype: str | None, query_string: str) -> set[str]:
    params = parse_qsl(query_string, keep_blank_values=True)
    return matching_ids(engine, parse_search(rtype, params, strict=True, now_us=NOW_US))
