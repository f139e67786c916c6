"""The rewrite step (fhir_server.search.plan): which criterion drives a query, and the SQL
shapes that follow -- the driver as ``IN``, the rest as correlated ``EXISTS``, pages and
counts read from the index tables alone when they can be. The answers must not change
with the shape: every case is checked against the plain ``pk IN`` form on the fixed
resources, SQLite and PostgreSQL."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest
from search_db import NOW_US, matching_ids
from sqlalchemy import Engine, func, select

from fhir_server.search import parse_search
from fhir_server.search.plan import CANNOT_DRIVE, drives, driving_order, rank
from fhir_server.storage import search_sql
from fhir_server.storage.search_sql import (
    count_statement,
    execute_search,
    index_driven,
    match_pks,
)

SECRET = b"plan-test"


def parsed(rtype: str | None, query: str):  # type: ignore[no-untyped-def]
    return parse_search(rtype, parse_qsl(query), strict=True, now_us=NOW_US)


def codes(nodes) -> list[str]:  # type: ignore[no-untyped-def]
    return [getattr(getattr(n, "param", None), "code", type(n).__name__) for n in nodes]


DRIVER_CASES = [
    # (rule, type, query, the criterion that drives)
    (
        "a reference beats a shared code",
        "Observation",
        "code=http://loinc.org|8867-4&subject=Patient/p1",
        "subject",
    ),
    ("an identifier beats a token", "Patient", "gender=male&identifier=urn:mrn|A1", "identifier"),
    ("a token beats a date", "Observation", "date=ge2021&status=final", "status"),
    ("a quantity beats a date", "Observation", "date=ge2021&value-quantity=gt5", "value-quantity"),
    ("_id first of all", "Patient", "name=smith&_id=p1", "_id"),
    ("ties keep request order", "Patient", "gender=male&family=smith", "gender"),
    (
        "a chain on an identifier is selective",
        "Observation",
        "code=8867-4&subject:Patient.identifier=A1",
        "subject",
    ),
    (
        "a chain on a common token is not",
        "Observation",
        "code=8867-4&subject:Patient.gender=male",
        "code",
    ),
    (":not never drives", "Patient", "gender:not=male&birthdate=ge1900", "birthdate"),
    (":missing=true never drives", "Patient", "gender:missing=true&birthdate=ge1900", "birthdate"),
]


@pytest.mark.parametrize(
    ("rtype", "query", "driver"), [pytest.param(t, q, d, id=r) for r, t, q, d in DRIVER_CASES]
)
def test_driving_criterion(rtype: str, query: str, driver: str) -> None:
    assert codes(driving_order(parsed(rtype, query).criteria))[0] == driver


def test_negations_cannot_drive() -> None:
    (node,) = parsed("Patient", "gender:not=male").criteria
    assert not drives(node) and rank(node) == CANNOT_DRIVE


def test_driver_is_in_the_rest_are_exists() -> None:
    sql = str(
        match_pks(parsed("Observation", "code=8867-4&subject=Patient/p1&date=ge2021")).compile()
    )
    assert sql.count(" IN (SELECT") == 1 and sql.count("EXISTS (SELECT") == 2


SHAPE_CASES = [
    # (type, query) whose answers must be the same in every SQL shape
    ("Observation", "code=8867-4"),
    ("Observation", "code=8867-4&subject=Patient/p1"),
    ("Observation", "code=8867-4,29463-7&status=final"),
    ("Observation", "code:not=8867-4&status=final,amended"),
    ("Observation", "subject:Patient.name=smith&code=http://loinc.org|"),
    ("Observation", "code-value-quantity=http://loinc.org|8867-4$gt60&status=final"),
    ("Observation", "value-quantity:missing=true&code=8867-4"),
    ("Observation", "date=ge2021-03&_lastUpdated=ge2020"),
    ("Patient", "_has:Observation:subject:code=8867-4&gender=male,other"),
    ("Patient", "name=smith,jones&birthdate:missing=false"),
    ("RiskAssessment", "probability=gt0.2&subject=Patient/p1,Patient/p2"),
]


def _all_in(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shape before the rewrite step: every criterion as ``pk IN (SELECT ...)``."""
    plain = search_sql.node_condition

    def every_node_drives(node, scope, res, drive=False):  # type: ignore[no-untyped-def]
        return plain(node, scope, res, drive=drives(node))

    monkeypatch.setattr(search_sql, "node_condition", every_node_drives)


@pytest.mark.parametrize(("rtype", "query"), SHAPE_CASES)
def test_shapes_agree(
    search_engine: Engine, monkeypatch: pytest.MonkeyPatch, rtype: str, query: str
) -> None:
    q = parsed(rtype, query)
    planned = matching_ids(search_engine, q)
    with search_engine.connect() as conn:
        counted = conn.execute(count_statement(q)).scalar_one()
        by_pk = conn.execute(select(func.count()).select_from(match_pks(q).subquery())).scalar_one()
        page = execute_search(conn, q, base_url="x", page_cursor=None, secret=SECRET)
    with monkeypatch.context() as m:
        _all_in(m)
        assert matching_ids(search_engine, q) == planned
    assert counted == by_pk == len(planned)
    assert {f.id for f in page.matches} == planned


def test_index_driven_needs_index_only_criteria() -> None:
    assert index_driven(parsed("Observation", "code=8867-4&status=final")) is not None
    assert index_driven(parsed("Observation", "code=8867-4&_lastUpdated=ge2020")) is None
    assert index_driven(parsed("Patient", "_has:Observation:subject:code=8867-4")) is None
    assert index_driven(parsed("Patient", "gender:not=male")) is None
    assert index_driven(parsed("Patient", "")) is None


@pytest.mark.parametrize(
    "query", ["code=8867-4,29463-7,55284-4,local-code&_count=2", "status=final&_count=1"]
)
def test_index_driven_pages_forward_and_back(search_engine: Engine, query: str) -> None:
    q = parsed("Observation", query)
    assert index_driven(q) is not None
    everything = matching_ids(search_engine, parsed("Observation", query.split("&_count")[0]))
    seen: list[str] = []
    pages: list[list[str]] = []
    cursor = None
    with search_engine.connect() as conn:
        while True:
            q = parsed("Observation", query)
            result = execute_search(conn, q, base_url="x", page_cursor=cursor, secret=SECRET)
            pages.append([f.id for f in result.matches])
            seen += pages[-1]
            if not result.next_cursor:
                break
            cursor = result.next_cursor
        assert sorted(seen) == sorted(everything) and len(seen) == len(set(seen))
        # and back from the last page, through `previous`
        back: list[list[str]] = [pages[-1]]
        result = execute_search(conn, q, base_url="x", page_cursor=cursor, secret=SECRET)
        while result.previous_cursor:
            result = execute_search(
                conn, q, base_url="x", page_cursor=result.previous_cursor, secret=SECRET
            )
            back.append([f.id for f in result.matches])
        assert back[::-1] == pages


def test_searches_plan_for_their_values(search_engine: Engine) -> None:
    """PostgreSQL: statements are never prepared, so never planned generically
    (prepare_threshold None in fhir_server.storage.database); the seventh run answers like
    the first."""
    q = parsed("Observation", "code=8867-4&subject=Patient/p1")
    with search_engine.connect() as conn:
        answers = [
            [
                f.id
                for f in execute_search(
                    conn, q, base_url="x", page_cursor=None, secret=SECRET
                ).matches
            ]
            for _ in range(7)
        ]
        if conn.dialect.name == "postgresql":
            assert conn.connection.dbapi_connection.prepare_threshold is None  # type: ignore[union-attr]
    assert answers == [["o1"]] * 7


def test_explain_shows_sql_and_plan(search_engine: Engine) -> None:
    q = parse_search(
        "Observation",
        parse_qsl("code=8867-4&_explain=true&_total=accurate"),
        strict=True,
        now_us=NOW_US,
        explain=True,
    )
    with search_engine.connect() as conn:
        result = execute_search(conn, q, base_url="x", page_cursor=None, secret=SECRET)
    assert [what for what, _, _ in result.explained] == ["page", "total"]
    for _, sql, plan in result.explained:
        assert "sp_token" in sql and "'8867-4'" in sql and plan.strip()
    assert {f.id for f in result.matches} == {"o1", "o6", "o7"}
