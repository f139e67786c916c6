"""_sort, keyset paging with signed cursors, _total, _include/_revinclude and the
searchset Bundle, on the fixed resources of conftest.py (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
import pytest
from search_db import NOW_US, RESOURCES
from sqlalchemy import Engine

from fhir_server.errors import FhirError
from fhir_server.interactions.search import search_bundle
from fhir_server.search import parse_search
from fhir_server.storage.search_sql import SearchResult, execute_search

SECRET = b"test-secret"
BASE = "http://test.example/fhir"


def run(
    search_engine: Engine, rtype: str | None, query: str, cursor: str | None = None
) -> SearchResult:
    parsed = parse_search(rtype, parse_qsl(query), now_us=NOW_US, strict=True)
    with search_engine.connect() as conn:
        return execute_search(conn, parsed, base_url=BASE, page_cursor=cursor, secret=SECRET)


def ids(result: SearchResult) -> list[str]:
    return [f.id for f in result.matches]


SORT_CASES = [
    ("default order is insertion order", "Patient", "", ["p1", "p2", "p3"]),
    ("_id", "Observation", "_sort=_id", ["o1", "o2", "o3", "o4", "o5", "o6", "o7"]),
    ("-_id", "Patient", "_sort=-_id", ["p3", "p2", "p1"]),
    ("_lastUpdated desc", "Patient", "_sort=-_lastUpdated", ["p3", "p2", "p1"]),
    ("string", "Patient", "_sort=family", ["p3", "p1", "p2"]),
    # ascending by each resource's earliest date; ties by insertion; no date last
    ("date ascending", "Observation", "_sort=date", ["o5", "o3", "o2", "o1", "o4", "o6", "o7"]),
    # descending by the latest end: the year 2021 ends after 2021-05-01
    ("date descending", "Observation", "_sort=-date", ["o3", "o6", "o2", "o1", "o4", "o5", "o7"]),
    (
        "token then -_id",
        "Observation",
        "_sort=status,-_id",
        ["o2", "o7", "o6", "o5", "o4", "o3", "o1"],
    ),
    ("quantity", "Observation", "_sort=value-quantity&_count=3", ["o6", "o1", "o5"]),
    ("with criteria", "Observation", "code=8867-4&_sort=-date", ["o6", "o1", "o7"]),
]


@pytest.mark.parametrize(
    ("rtype", "query", "expected"), [pytest.param(t, q, e, id=r) for r, t, q, e in SORT_CASES]
)
def test_sort(search_engine: Engine, rtype: str, query: str, expected: list[str]) -> None:
    assert ids(run(search_engine, rtype, query)) == expected


@pytest.mark.parametrize(
    "query",
    [
        "_count=2",
        "_sort=-date&_count=2",
        "_sort=status,date&_count=3",
        "_sort=value-quantity&_count=1",
    ],
)
def test_paging_forward_and_back_visits_every_match_once(search_engine: Engine, query: str) -> None:
    everything = ids(run(search_engine, "Observation", query.split("&_count")[0] + "&_count=100"))
    assert len(everything) == 7
    pages: list[list[str]] = []
    result = run(search_engine, "Observation", query)
    assert result.previous_cursor is None
    pages.append(ids(result))
    while result.next_cursor:
        result = run(search_engine, "Observation", query, result.next_cursor)
        pages.append(ids(result))
        assert result.previous_cursor is not None
    assert [i for page in pages for i in page] == everything
    # and back again, page by page, from the last one
    back: list[list[str]] = [ids(result)]
    while result.previous_cursor:
        result = run(search_engine, "Observation", query, result.previous_cursor)
        back.append(ids(result))
    assert back[::-1] == pages


def test_cursor_is_signed(search_engine: Engine) -> None:
    first = run(search_engine, "Observation", "_count=2")
    assert first.next_cursor
    tampered = first.next_cursor[:-2] + ("AA" if first.next_cursor[-2:] != "AA" else "BB")
    with pytest.raises(FhirError) as err:
        run(search_engine, "Observation", "_count=2", tampered)
    assert err.value.status == 400
    with pytest.raises(FhirError), search_engine.connect() as conn:
        execute_search(
            conn,
            parse_search("Observation", [("_count", "2")]),
            base_url=BASE,
            page_cursor=first.next_cursor,
            secret=b"another secret",
        )


def test_cursor_belongs_to_its_query(search_engine: Engine) -> None:
    first = run(search_engine, "Observation", "_count=2")
    with pytest.raises(FhirError):
        run(search_engine, "Observation", "code=8867-4&_count=2", first.next_cursor)
    # _count may change between pages
    assert run(search_engine, "Observation", "_count=5", first.next_cursor).matches


def test_total(search_engine: Engine) -> None:
    assert run(search_engine, "Observation", "_count=2&_total=accurate").total == 7
    assert run(search_engine, "Observation", "_count=2").total is None  # not asked, not free
    assert run(search_engine, "Observation", "code=8867-4").total == 3  # one page: free
    counted = run(search_engine, "Observation", "_summary=count")
    assert (counted.total, counted.matches) == (7, [])


INCLUDE_CASES = [
    ("_include", "Observation", "code=8867-4&_include=Observation:subject", ["p1", "p3"]),
    ("_include with target type", "Observation", "_include=Observation:subject:Group", []),
    (
        "_include skips absolute and deleted",
        "Observation",
        "_id=o5,o7&_include=Observation:subject",
        [],
    ),
    (
        "_include:iterate",
        "Observation",
        "_id=o6&_include=Observation:subject&_include:iterate=Patient:organization",
        ["p3", "org1"],
    ),
    ("_include wildcard", "Patient", "_id=p3&_include=*", ["org1"]),
    ("_revinclude", "Patient", "_id=p1&_revinclude=Observation:subject", ["o1", "o3"]),
    (
        "_revinclude several",
        "Patient",
        "_id=p1,p2&_revinclude=RiskAssessment:subject",
        ["ra1", "ra2"],
    ),
    (
        "_include canonical",
        "QuestionnaireResponse",
        "_id=qr1&_include=QuestionnaireResponse:questionnaire",
        ["q1"],
    ),
    (
        "_revinclude then :iterate _include",
        "Organization",
        "_revinclude=Patient:organization&_revinclude:iterate=Observation:subject",
        ["p3", "o6"],
    ),
    (
        "matches are not repeated as includes",
        "Patient",
        "_include=Patient:organization&_revinclude=Observation:subject&_id=p3",
        ["org1", "o6"],
    ),
]


@pytest.mark.parametrize(
    ("rtype", "query", "expected"), [pytest.param(t, q, e, id=r) for r, t, q, e in INCLUDE_CASES]
)
def test_includes(search_engine: Engine, rtype: str, query: str, expected: list[str]) -> None:
    assert sorted(f.id for f in run(search_engine, rtype, query).includes) == sorted(expected)


# --- the Bundle ---------------------------------------------------------------------


def bundle(
    search_engine: Engine, rtype: str | None, query: str, *, strict: bool = False
) -> dict[str, Any]:
    with search_engine.connect() as conn:
        raw = search_bundle(
            conn, rtype, parse_qsl(query), base_url=BASE, strict=strict, secret=SECRET, now=NOW_US
        )
    return orjson.loads(raw)


def test_bundle_entries_links_and_outcome(search_engine: Engine) -> None:
    b = bundle(
        search_engine, "Observation", "code=8867-4&_include=Observation:subject&_count=2&nonsense=1"
    )
    assert (b["resourceType"], b["type"]) == ("Bundle", "searchset")
    modes = [(e.get("fullUrl"), e["search"]["mode"]) for e in b["entry"]]
    assert modes == [
        (f"{BASE}/Observation/o1", "match"),
        (f"{BASE}/Observation/o6", "match"),
        (f"{BASE}/Patient/p1", "include"),
        (f"{BASE}/Patient/p3", "include"),
        (None, "outcome"),
    ]
    outcome = b["entry"][-1]["resource"]
    assert outcome["resourceType"] == "OperationOutcome"
    assert "nonsense" in outcome["issue"][0]["diagnostics"]
    links = {link["relation"]: link["url"] for link in b["link"]}
    assert set(links) == {"self", "next"}
    assert "nonsense" not in links["self"] and "code=8867-4" in links["self"]
    # following `next` gives the last match
    next_url = urlsplit(links["next"])
    assert next_url.path.endswith("/Observation")
    page2 = bundle(search_engine, "Observation", next_url.query)
    assert [e["resource"]["id"] for e in page2["entry"] if e["search"]["mode"] == "match"] == ["o7"]
    assert {link["relation"] for link in page2["link"]} == {"self", "previous", "first"}


def test_bundle_splices_stored_bytes(search_engine: Engine) -> None:
    body = next(r for r, _, _ in RESOURCES if r["id"] == "p1")
    with search_engine.connect() as conn:
        raw = search_bundle(
            conn, "Patient", [("_id", "p1")], base_url=BASE, strict=True, secret=SECRET, now=NOW_US
        )
    # conftest stored json.dumps() bytes (with spaces): they appear verbatim, not re-serialised
    assert b'"resource":' + json.dumps(body).encode() in raw
    (entry,) = orjson.loads(raw)["entry"]
    assert entry["resource"] == body
    assert orjson.loads(raw)["total"] == 1


def test_bundle_summary_and_elements(search_engine: Engine) -> None:
    b = bundle(search_engine, "Patient", "_id=p1&_elements=gender")
    resource = b["entry"][0]["resource"]
    assert resource["gender"] == "male" and "name" not in resource
    counted = bundle(search_engine, "Patient", "_summary=count")
    assert counted["total"] == 3 and "entry" not in counted


def test_bundle_strict_refuses_unknown(search_engine: Engine) -> None:
    with pytest.raises(FhirError) as err:
        bundle(search_engine, "Patient", "nonsense=1", strict=True)
    assert err.value.status == 400


def test_system_search(search_engine: Engine) -> None:
    b = bundle(search_engine, None, "_type=Patient,Organization&_sort=_id")
    assert [e["fullUrl"].rsplit("/", 2)[-2:] for e in b["entry"]] == [
        ["Organization", "org1"],
        ["Patient", "p1"],
        ["Patient", "p2"],
        ["Patient", "p3"],
    ]
