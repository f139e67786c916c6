"""The compiled-statement cache (fhir_server.storage.search_shapes): one compiled page
statement per query shape, values always bound. Every answer is checked against the
same search with the cache off (the statement built for the query itself), on SQLite
and PostgreSQL: a shape's values never leak into another search, different shapes
never share a statement, a changed search parameter definition is a new shape, the
bound holds, and values that look like SQL or LIKE patterns are only ever values."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

import pytest
from search_db import NOW_US, drop_postgres, load, postgres_url
from sqlalchemy import Engine, create_engine, insert, inspect

from fhir_server.search import extract_index_rows, parse_search, registry
from fhir_server.search.custom import custom_params
from fhir_server.search.registry import Registry
from fhir_server.search.restriction import SearchAccess
from fhir_server.storage.database import open_database
from fhir_server.storage.schema import INDEX_TABLES, resource
from fhir_server.storage.search_shapes import StatementCache
from fhir_server.storage.search_sql import SearchResult, execute_search

SECRET = b"statement-cache-test"
BASE = "http://test.example/fhir"


def run(
    engine: Engine,
    rtype: str,
    query: str,
    cache: StatementCache,
    *,
    reg: Registry | None = None,
    access: SearchAccess | None = None,
    cursor: str | None = None,
) -> SearchResult:
    parsed = parse_search(rtype, parse_qsl(query), strict=True, now_us=NOW_US, reg=reg)
    if access is not None:
        parsed = access.apply(parsed, reg=reg or registry(), now_us=NOW_US, base_url=BASE)
    with engine.connect() as conn:
        return execute_search(
            conn, parsed, base_url=BASE, page_cursor=cursor, secret=SECRET, statements=cache
        )


def ids(result: SearchResult) -> list[str]:
    return [f.id for f in result.matches]


def uncached(engine: Engine, rtype: str, query: str, **kw: Any) -> list[str]:
    return ids(run(engine, rtype, query, StatementCache(0), **kw))


# (rule, type, the queries of one shape with the ids each must find)
SAME_SHAPE = [
    ("token", "Patient", [("gender=male", ["p1"]), ("gender=female", ["p2"])]),
    (
        "token system|code",
        "Patient",
        [("identifier=urn:mrn|A1", ["p1"]), ("identifier=urn:mrn|B2", ["p2"])],
    ),
    ("string prefix", "Patient", [("family=smith", ["p1", "p2"]), ("family=jon", ["p3"])]),
    ("string :exact", "Patient", [("family:exact=Smith", ["p1"]), ("family:exact=Jones", ["p3"])]),
    (
        "string :contains",
        "Patient",
        [("family:contains=son", ["p2"]), ("family:contains=one", ["p3"])],
    ),
    (
        "date ge",
        "Patient",
        [("birthdate=ge1979", ["p1", "p3"]), ("birthdate=ge1970", ["p1", "p2", "p3"])],
    ),
    ("_id", "Patient", [("_id=p1", ["p1"]), ("_id=p3", ["p3"])]),
    (
        "two OR values",
        "Patient",
        [("gender=male,female", ["p1", "p2"]), ("gender=other,male", ["p1", "p3"])],
    ),
    (
        "reference, sorted",
        "Observation",
        [("subject=Patient/p1&_sort=-date", None), ("subject=Patient/p2&_sort=-date", None)],
    ),
    (
        "chain",
        "Observation",
        [("subject:Patient.gender=male", None), ("subject:Patient.gender=other", None)],
    ),
    (
        "_has",
        "Patient",
        [
            ("_has:Observation:subject:code=8867-4", None),
            ("_has:Observation:subject:code=nope", []),
        ],
    ),
]


@pytest.mark.parametrize(("rtype", "cases"), [pytest.param(t, c, id=r) for r, t, c in SAME_SHAPE])
def test_same_shape_different_values_each_get_their_own_answer(
    search_engine: Engine, rtype: str, cases: list[tuple[str, list[str] | None]]
) -> None:
    cache = StatementCache(16)
    for _ in range(2):  # the second round is all hits
        for query, expected in cases:
            found = ids(run(search_engine, rtype, query, cache))
            assert found == uncached(search_engine, rtype, query), query
            if expected is not None:
                assert sorted(found) == expected, query
    assert cache.misses == 1 and len(cache) == 1
    assert cache.hits == 2 * len(cases) - 1


DIFFERENT_SHAPES = [
    "gender=male",
    "gender:not=male",
    "gender:missing=true",
    "gender=male,female",
    "gender=male&family=smith",
    "family=smith",
    "family:exact=Smith",
    "family:contains=smith",
    "birthdate=ge1980",
    "birthdate=le1980",
    "birthdate=eq1980",
    "_sort=family",
    "_sort=-family",
    "gender=male&_sort=birthdate",
]


def test_different_shapes_never_share_a_statement(search_engine: Engine) -> None:
    cache = StatementCache(64)
    for query in DIFFERENT_SHAPES:
        assert ids(run(search_engine, "Patient", query, cache)) == uncached(
            search_engine, "Patient", query
        ), query
    assert cache.misses == len(DIFFERENT_SHAPES) and cache.hits == 0
    assert len(cache) == len(DIFFERENT_SHAPES)


def test_pages_through_cursors_like_the_uncached_search(search_engine: Engine) -> None:
    for query in ("_sort=-_id&_count=2", "_count=2", "_sort=family&_count=1&_total=accurate"):
        cache = StatementCache(16)
        pages: dict[str, list[list[str]]] = {}
        for name, used in (("cached", cache), ("uncached", StatementCache(0))):
            cursor: str | None = None
            pages[name] = []
            for _ in range(5):
                result = run(search_engine, "Patient", query, used, cursor=cursor)
                pages[name].append(ids(result))
                cursor = result.next_cursor
                if cursor is None:
                    break
        assert pages["cached"] == pages["uncached"], query
        assert sum(len(p) for p in pages["cached"]) == 3
        # the first page and the following ones (after a cursor) are two shapes; the
        # total, when asked for, one more
        assert len(cache) == (3 if "_total" in query else 2)


def test_access_restriction_values_are_bound(search_engine: Engine) -> None:
    """An access filter becomes a node of the query (search.restriction): patient p1's
    token and patient p3's share a shape, and each sees only its own Observations."""
    cache = StatementCache(16)
    for patient, expected in (("p1", ["o1", "o3"]), ("p3", ["o6"]), ("p1", ["o1", "o3"])):
        access = SearchAccess(matches={"Observation": ((("subject", f"Patient/{patient}"),),)})
        found = ids(run(search_engine, "Observation", "", cache, access=access))
        assert sorted(found) == expected
        assert found == uncached(search_engine, "Observation", "", access=access)
    assert cache.misses == 1


def test_the_cache_is_bounded_least_recently_used_out(search_engine: Engine) -> None:
    cache = StatementCache(2)
    for query in ("gender=male", "family=smith", "birthdate=ge1980"):
        run(search_engine, "Patient", query, cache)
    assert len(cache) == 2 and cache.misses == 3
    run(search_engine, "Patient", "birthdate=ge1970", cache)  # most recent: kept
    assert cache.hits == 1
    run(search_engine, "Patient", "gender=female", cache)  # the oldest went out
    assert cache.misses == 4 and len(cache) == 2


def test_size_zero_turns_it_off(search_engine: Engine) -> None:
    cache = StatementCache(0)
    assert ids(run(search_engine, "Patient", "gender=male", cache)) == ["p1"]
    assert len(cache) == 0 and cache.misses == 0


# --- values that look like SQL or LIKE patterns ------------------------------------------

PATIENTS = ["Under_score", "Darts", "Per%cent", "Percent", "O'Brien", "Slash/ed", "Slashed"]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def odd_names(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    """Patients whose family names hold LIKE wildcards, a quote and the escape character."""
    url: str | None
    if request.param == "sqlite":
        url = None
        engine = create_engine(f"sqlite:///{tmp_path_factory.mktemp('odd') / 'odd.sqlite'}")
    else:
        url = postgres_url()
        if url is None:
            pytest.skip("PostgreSQL is not reachable")
        engine = open_database(url).writer
    load(engine)  # the schema, and the fixed resources beside ours
    with engine.begin() as conn:
        for n, family in enumerate(PATIENTS):
            body = {"resourceType": "Patient", "id": f"odd{n}", "name": [{"family": family}]}
            _insert(conn, body)
    yield engine
    engine.dispose()
    if url is not None:
        drop_postgres(url)


def _insert(conn: Any, body: dict[str, Any], reg: Registry | None = None) -> None:
    pk = conn.execute(
        insert(resource)
        .values(
            rtype=body["resourceType"],
            id=body["id"],
            version=1,
            last_updated=NOW_US,
            deleted=False,
            body=json.dumps(body).encode(),
        )
        .returning(resource.c.pk)
    ).scalar_one()
    for table, rows in extract_index_rows(body, reg).items():
        if rows:
            conn.execute(
                insert(INDEX_TABLES[table]),
                [{**row, "res_pk": pk, "rtype": body["resourceType"]} for row in rows],
            )


def families(engine: Engine, query: str, cache: StatementCache) -> list[str]:
    found = run(engine, "Patient", query, cache)
    return sorted(
        PATIENTS[int(f.id[3:])] if f.id.startswith("odd") else f.id for f in found.matches
    )


LIKE_CASES = [
    # (rule, query, families found) -- search.html#string: :contains matches the text
    ("_ is a character, not any one", "family:contains=r_s", ["Under_score"]),
    ("% is a character, not any run", "family:contains=r%c", ["Per%cent"]),
    ("the escape character is a character", "family:contains=h/e", ["Slash/ed"]),
    ("a quote is a character", "family:contains='b", ["O'Brien"]),
    ("a prefix with a quote", "family=o'", ["O'Brien"]),
    ("a prefix with _", "family=under_", ["Under_score"]),
    ("a prefix with %", "family=per%", ["Per%cent"]),
    ("SQL in a value is a value", "family=x'); DROP TABLE resource; --", []),
    ("SQL in :exact", "family:exact=' OR '1'='1", []),
    ("SQL in a token", "identifier=urn:mrn|A1' OR '1'='1", []),
    ("SQL in a uri", "_profile=http://x.example/' OR 1=1;--", []),
]


@pytest.mark.parametrize(
    ("query", "expected"), [pytest.param(q, e, id=r) for r, q, e in LIKE_CASES]
)
def test_values_are_only_ever_values(odd_names: Engine, query: str, expected: list[str]) -> None:
    cache = StatementCache(8)
    for _ in range(2):  # built, then from the cache
        assert families(odd_names, query, cache) == expected
    assert families(odd_names, query, StatementCache(0)) == expected
    (compiled,) = cache._entries.values()
    value = parse_qsl(query)[0][1]
    assert value.lower() not in compiled.sql.lower()  # bound, not in the SQL text
    assert inspect(odd_names).has_table("resource")


def test_a_shape_with_a_wildcard_value_then_a_plain_one(odd_names: Engine) -> None:
    """The escaped form is made from each search's own value, never kept from the first."""
    cache = StatementCache(8)
    assert families(odd_names, "family:contains=r_s", cache) == ["Under_score"]
    assert families(odd_names, "family:contains=rts", cache) == ["Darts"]
    assert families(odd_names, "family:contains=r%c", cache) == ["Per%cent"]
    assert cache.misses == 1


# --- a changed search parameter definition is another shape ------------------------------


def _alias(type_: str, expression: str) -> dict[str, Any]:
    return {
        "resourceType": "SearchParameter",
        "url": f"http://example.org/fhir/SearchParameter/alias-{type_}",
        "status": "active",
        "code": "alias",
        "base": ["Patient"],
        "type": type_,
        "expression": expression,
    }


def test_a_changed_definition_is_a_new_shape(odd_names: Engine) -> None:
    core = registry()
    as_token = core.with_params(custom_params([_alias("token", "Patient.gender")], core).params)
    as_string = core.with_params(
        custom_params([_alias("string", "Patient.name.family")], core).params
    )
    with odd_names.begin() as conn:
        for n, reg in enumerate((as_token, as_string)):
            body = {
                "resourceType": "Patient",
                "id": f"alias{n}",
                "gender": "unknown",
                "name": [{"family": "Unknown"}],
            }
            _insert(conn, body, reg)
    cache = StatementCache(8)
    # alias0's rows were made under the token definition, alias1's under the string one
    assert ids(run(odd_names, "Patient", "alias=unknown", cache, reg=as_token)) == ["alias0"]
    assert ids(run(odd_names, "Patient", "alias=unknown", cache, reg=as_string)) == ["alias1"]
    assert cache.misses == 2
    # The same definition stored again is a new SearchParam: a new entry, the same answer.
    again = core.with_params(custom_params([_alias("token", "Patient.gender")], core).params)
    assert ids(run(odd_names, "Patient", "alias=unknown", cache, reg=again)) == ["alias0"]
    assert cache.misses == 3
    assert ids(run(odd_names, "Patient", "alias=unknown", cache, reg=as_token)) == ["alias0"]
    assert cache.hits == 1


# --- includes (search.html#include): their statements are cached per shape too -----------

INCLUDE_CASES = [
    ("Observation", "_include=Observation:subject"),
    ("Observation", "code=8867-4&_include=Observation:subject:Patient"),
    ("Patient", "_revinclude=Observation:subject"),
    ("Observation", "_include=Observation:subject&_include:iterate=Patient:organization"),
    ("Observation", "_count=2&_include=Observation:subject"),
]


@pytest.mark.parametrize(("rtype", "query"), INCLUDE_CASES)
def test_includes_like_the_uncached_search(search_engine: Engine, rtype: str, query: str) -> None:
    cache = StatementCache(32)
    off = run(search_engine, rtype, query, StatementCache(0))
    for _ in range(2):
        found = run(search_engine, rtype, query, cache)
        assert ids(found) == ids(off)
        assert [f.id for f in found.includes] == [f.id for f in off.includes]
    assert off.includes  # every case includes something
    assert cache.hits >= cache.misses


def test_includes_only_what_the_token_may_read(search_engine: Engine) -> None:
    """The access restriction on includes (query.readable) is a node with bound values."""
    cache = StatementCache(32)
    for patient in ("p1", "p3", "p1"):
        access = SearchAccess(readable={"Patient": ((("_id", patient),),), "Observation": ((),)})
        query = "_include=Observation:subject"
        found = run(search_engine, "Observation", query, cache, access=access)
        assert [f.id for f in found.includes] == [patient]
        off = run(search_engine, "Observation", query, StatementCache(0), access=access)
        assert [f.id for f in found.includes] == [f.id for f in off.includes]
