"""Token ``:in``, ``:not-in``, ``:above`` and ``:below`` (FHIR R4 search.html#token) over a
fixed dataset, on SQLite and PostgreSQL.

The ValueSets and hierarchies come from the terminology service the server uses
(fhir_server.storage.terminology): a CodeSystem and ValueSets stored in the database (found
by their url like any stored resource) and the shipped R4 core content (observation-status:
amended > corrected; condition-clinical: active > recurrence, relapse; inactive >
remission, resolved). The expected ids are worked out by hand from the resources below.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

import pytest
from search_db import NOW_US, drop_postgres, postgres_url
from sqlalchemy import Engine, create_engine, insert, select

from fhir_server.errors import FhirError
from fhir_server.search import extract_index_rows, parse_search
from fhir_server.search.dates import instant_us
from fhir_server.search.terminology import resolve_terminology
from fhir_server.storage.database import open_database
from fhir_server.storage.schema import INDEX_TABLES, metadata, resource
from fhir_server.storage.search_sql import match_pks
from fhir_server.storage.terminology import SearchCodes

EX = "http://example.org/fhir"
BODY = f"{EX}/CodeSystem/body-site"
LOINC = "http://loinc.org"
OBS_STATUS = "http://hl7.org/fhir/observation-status"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"

BODY_CS = {
    "resourceType": "CodeSystem",
    "id": "body-site",
    "url": BODY,
    "status": "active",
    "content": "complete",
    "hierarchyMeaning": "is-a",
    "concept": [
        {
            "code": "body",
            "concept": [
                {"code": "back", "concept": [{"code": "lower-back"}, {"code": "upper-back"}]},
                {"code": "neck"},
            ],
        }
    ],
}
SPINE_VS = {
    "resourceType": "ValueSet",
    "id": "spine",
    "url": f"{EX}/ValueSet/spine",
    "status": "active",
    "compose": {
        "include": [
            {"system": BODY, "filter": [{"property": "concept", "op": "is-a", "value": "back"}]}
        ]
    },
}
MIXED_VS = {
    "resourceType": "ValueSet",
    "id": "mixed",
    "url": f"{EX}/ValueSet/mixed",
    "status": "active",
    "compose": {
        "include": [
            {"system": LOINC, "concept": [{"code": "41950-7"}]},
            {"system": BODY, "concept": [{"code": "neck"}]},
        ]
    },
}
EMPTY_VS = {
    "resourceType": "ValueSet",
    "id": "empty",
    "url": f"{EX}/ValueSet/empty",
    "status": "active",
    "compose": {
        "include": [{"system": BODY, "concept": [{"code": "neck"}]}],
        "exclude": [{"system": BODY, "concept": [{"code": "neck"}]}],
    },
}


# The largest expansion a search may use (SELFBACK_TERMINOLOGY_MAX_EXPANSION's default):
# one IN list of 10,000 codes must run on both databases.
BIG = f"{EX}/CodeSystem/big"
BIG_CS = {
    "resourceType": "CodeSystem",
    "id": "big",
    "url": BIG,
    "status": "active",
    "content": "complete",
    "concept": [{"code": f"c{i:05d}"} for i in range(10_000)],
}
BIG_VS = {
    "resourceType": "ValueSet",
    "id": "big",
    "url": f"{EX}/ValueSet/big",
    "status": "active",
    "compose": {"include": [{"system": BIG}]},
}


def _procedure(pid: str, code: str) -> dict[str, Any]:
    return {
        "resourceType": "Procedure",
        "id": pid,
        "status": "completed",
        "code": {"coding": [{"system": BIG, "code": code}]},
        "subject": {"reference": "Patient/p1"},
    }


def _obs(oid: str, status: str, *codings: tuple[str, str], patient: str = "p1") -> dict[str, Any]:
    code: dict[str, Any] = {"coding": [{"system": s, "code": c} for s, c in codings]}
    if not codings:
        code = {"text": "free text only"}
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": status,
        "code": code,
        "subject": {"reference": f"Patient/{patient}"},
    }


def _condition(cid: str, status: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Condition",
        "id": cid,
        "subject": {"reference": "Patient/p1"},
    }
    if status:
        body["clinicalStatus"] = {"coding": [{"system": CLINICAL, "code": status}]}
    return body


RESOURCES: list[dict[str, Any]] = [
    BODY_CS,
    SPINE_VS,
    MIXED_VS,
    EMPTY_VS,
    {"resourceType": "Patient", "id": "p1"},
    {"resourceType": "Patient", "id": "p2"},
    _obs("o-lower", "final", (BODY, "lower-back"), patient="p2"),
    _obs("o-upper", "amended", (BODY, "upper-back")),
    _obs("o-back", "corrected", (BODY, "back")),
    _obs("o-neck", "preliminary", (BODY, "neck")),
    _obs("o-steps", "final", (LOINC, "41950-7")),
    _obs("o-both", "final", (BODY, "neck"), (LOINC, "41950-7")),
    _obs("o-text", "final"),
    _condition("c-active", "active"),
    _condition("c-relapse", "relapse"),
    _condition("c-remission", "remission"),
    _condition("c-resolved", "resolved"),
    _condition("c-none", None),
    BIG_CS,
    BIG_VS,
    _procedure("pr-last", "c09999"),
    _procedure("pr-outside", "d00001"),
]

ALL_OBS = {"o-lower", "o-upper", "o-back", "o-neck", "o-steps", "o-both", "o-text"}


def _load(engine: Engine) -> None:
    metadata.create_all(engine)
    with engine.begin() as conn:
        for body in RESOURCES:
            pk = conn.execute(
                insert(resource)
                .values(
                    rtype=body["resourceType"],
                    id=body["id"],
                    version=1,
                    last_updated=instant_us("2024-01-01T00:00:00Z"),
                    deleted=False,
                    body=json.dumps(body).encode(),
                )
                .returning(resource.c.pk)
            ).scalar_one()
            for table, rows in extract_index_rows(body).items():
                if rows:
                    conn.execute(
                        insert(INDEX_TABLES[table]),
                        [{**row, "res_pk": pk, "rtype": body["resourceType"]} for row in rows],
                    )


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    if request.param == "sqlite":
        eng = create_engine(f"sqlite:///{tmp_path_factory.mktemp('terms') / 'terms.sqlite'}")
        _load(eng)
        yield eng
        eng.dispose()
        return
    url = postgres_url()
    if url is None:
        pytest.skip("PostgreSQL is not reachable")
    eng = open_database(url).writer
    try:
        _load(eng)
        yield eng
    finally:
        eng.dispose()
        drop_postgres(url)


def ids(engine: Engine, rtype: str, query_string: str) -> set[str]:
    params = parse_qsl(query_string, keep_blank_values=True)
    with engine.connect() as conn:
        query = parse_search(rtype, params, strict=True, now_us=NOW_US)
        query = resolve_terminology(query, SearchCodes(conn))
        stmt = select(resource.c.id).where(resource.c.pk.in_(match_pks(query)))
        return set(conn.execute(stmt).scalars())


CASES: list[tuple[str, str, str, set[str]]] = [
    # (rule, type, query, expected ids)
    # --- :in: the ValueSet's expansion (a stored ValueSet, found by url) ---
    (
        "in: stored ValueSet with an is-a filter",
        "Observation",
        f"code:in={EX}/ValueSet/spine",
        {"o-lower", "o-upper", "o-back"},
    ),
    (
        "in: ValueSet/[id] reference",
        "Observation",
        "code:in=ValueSet/spine",
        {"o-lower", "o-upper", "o-back"},
    ),
    (
        "in: codes of two systems",
        "Observation",
        f"code:in={EX}/ValueSet/mixed",
        {"o-neck", "o-steps", "o-both"},
    ),
    (
        "in: OR of two ValueSets",
        "Observation",
        f"code:in={EX}/ValueSet/spine,{EX}/ValueSet/mixed",
        ALL_OBS - {"o-text"},
    ),
    ("in: an empty ValueSet matches nothing", "Observation", f"code:in={EX}/ValueSet/empty", set()),
    (
        "in: R4 core ValueSet",
        "Observation",
        "status:in=http://hl7.org/fhir/ValueSet/observation-status",
        ALL_OBS,
    ),
    (
        "in: AND with another parameter",
        "Observation",
        f"code:in={EX}/ValueSet/spine&status=final",
        {"o-lower"},
    ),
    # --- :not-in: no coding in the expansion (like :not, resources without a code too) ---
    (
        "not-in: the rest",
        "Observation",
        f"code:not-in={EX}/ValueSet/spine",
        {"o-neck", "o-steps", "o-both", "o-text"},
    ),
    (
        "not-in: a resource with one coding inside is out",
        "Observation",
        f"code:not-in={EX}/ValueSet/mixed",
        {"o-lower", "o-upper", "o-back", "o-text"},
    ),
    (
        "not-in: an empty ValueSet excludes nothing",
        "Observation",
        f"code:not-in={EX}/ValueSet/empty",
        ALL_OBS,
    ),
    (
        "not-in: R4 core, resources without the element",
        "Condition",
        "clinical-status:not-in=http://hl7.org/fhir/ValueSet/condition-clinical",
        {"c-none"},
    ),
    # --- :below: the code and what it subsumes ---
    (
        "below: stored is-a CodeSystem",
        "Observation",
        f"code:below={BODY}|back",
        {"o-lower", "o-upper", "o-back"},
    ),
    ("below: a leaf is itself", "Observation", f"code:below={BODY}|neck", {"o-neck", "o-both"}),
    (
        "below: the root",
        "Observation",
        f"code:below={BODY}|body",
        {"o-lower", "o-upper", "o-back", "o-neck", "o-both"},
    ),
    (
        "below: OR of two codes",
        "Observation",
        f"code:below={BODY}|lower-back,{BODY}|neck",
        {"o-lower", "o-neck", "o-both"},
    ),
    (
        "below: R4 core observation-status",
        "Observation",
        f"status:below={OBS_STATUS}|amended",
        {"o-upper", "o-back"},
    ),
    (
        "below: R4 core condition-clinical",
        "Condition",
        f"clinical-status:below={CLINICAL}|inactive",
        {"c-remission", "c-resolved"},
    ),
    # --- :above: the code and what subsumes it ---
    (
        "above: ancestors and itself",
        "Observation",
        f"code:above={BODY}|lower-back",
        {"o-lower", "o-back"},
    ),
    (
        "above: R4 core",
        "Observation",
        f"status:above={OBS_STATUS}|corrected",
        {"o-upper", "o-back"},
    ),
    (
        "above: R4 core condition-clinical",
        "Condition",
        f"clinical-status:above={CLINICAL}|relapse",
        {"c-active", "c-relapse"},
    ),
    # --- inside chains and _has ---
    (
        "_has with :below",
        "Patient",
        f"_has:Observation:subject:code:below={BODY}|back",
        {"p1", "p2"},
    ),
    ("_has with :in", "Patient", f"_has:Observation:subject:code:in={EX}/ValueSet/mixed", {"p1"}),
    (
        "chain with :in",
        "Observation",
        f"subject._has:Observation:subject:code:below={BODY}|lower-back",
        {"o-lower"},
    ),
]


@pytest.mark.parametrize("rtype,query,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_terminology_modifiers(engine, rtype, query, expected):
    assert ids(engine, rtype, query) == expected


def test_the_largest_allowed_expansion_runs(engine: Engine) -> None:
    assert ids(engine, "Procedure", f"code:in={EX}/ValueSet/big") == {"pr-last"}
    assert ids(engine, "Procedure", f"code:not-in={EX}/ValueSet/big") == {"pr-outside"}


ERRORS: list[tuple[str, str, str, str, str]] = [
    # (rule, type, query, issue code, words in the diagnostics)
    ("in: unknown ValueSet", "Observation", f"code:in={EX}/ValueSet/absent", "not-found", "absent"),
    ("in: unknown ValueSet/[id]", "Observation", "code:in=ValueSet/absent", "not-found", "absent"),
    (
        "in: a ValueSet over all of SNOMED CT",
        "Condition",
        "code:in=http://hl7.org/fhir/ValueSet/clinical-findings",
        "not-supported",
        "snomed",
    ),
    (
        "below: no hierarchy known for LOINC",
        "Observation",
        f"code:below={LOINC}|41950-7",
        "not-supported",
        "no hierarchy",
    ),
    (
        "below: a grouped-by hierarchy (ours)",
        "Observation",
        "code:below=http://selfback.example.org/fhir/CodeSystem/assessment|rmdq",
        "not-supported",
        "grouped-by",
    ),
    ("below: unknown code", "Observation", f"code:below={BODY}|knee", "code-invalid", "knee"),
    ("below: needs system|code", "Observation", "code:below=back", "invalid", "system|code"),
]


@pytest.mark.parametrize(
    "rtype,query,code,words", [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS]
)
def test_terminology_modifier_errors_are_400(engine, rtype, query, code, words):
    with pytest.raises(FhirError) as caught:
        ids(engine, rtype, query)
    assert caught.value.status == 400
    issue = caught.value.issues[0]
    assert issue.code == code
    assert words in issue.diagnostics.lower()


def test_an_expansion_over_the_limit_is_refused_with_the_limit(engine, monkeypatch):
    monkeypatch.setenv("SELFBACK_TERMINOLOGY_MAX_EXPANSION", "2")
    with pytest.raises(FhirError) as caught:
        ids(engine, "Observation", f"code:in={EX}/ValueSet/spine")
    assert caught.value.status == 400
    assert caught.value.issues[0].code == "too-costly"
    assert "more than 2 codes" in caught.value.issues[0].diagnostics


def test_the_limit_counts_every_terminology_criterion_of_a_search(engine, monkeypatch):
    monkeypatch.setenv("SELFBACK_TERMINOLOGY_MAX_EXPANSION", "4")
    assert ids(engine, "Observation", f"code:in={EX}/ValueSet/spine") == {
        "o-lower",
        "o-upper",
        "o-back",
    }
    with pytest.raises(FhirError) as caught:
        ids(engine, "Observation", f"code:in={EX}/ValueSet/spine&code:in={EX}/ValueSet/mixed")
    assert caught.value.issues[0].code == "too-costly"
    assert "more than 4 codes" in caught.value.issues[0].diagnostics
