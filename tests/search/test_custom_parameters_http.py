"""Custom SearchParameters and $reindex through two server processes on one database
(SQLite, or PostgreSQL in the ``-m db`` pass), and ``_explain`` where the server allows it.

A SearchParameter written through one process is in force in the other from its next
request (the registry checks a digest of the stored SearchParameters); resources written
before it exist are found once ``$reindex`` has run.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import drop_database, fresh_database_url, start_server, stop_server

pytestmark = pytest.mark.db

STRICT = {"Prefer": "handling=strict"}

NICKNAME = {
    "resourceType": "SearchParameter",
    "id": "patient-nickname",
    "url": "http://example.org/fhir/SearchParameter/patient-nickname",
    "name": "nickname",
    "status": "active",
    "description": "A patient's nickname",
    "code": "nickname",
    "base": ["Patient"],
    "type": "string",
    "expression": "Patient.name.where(use='nickname').given",
}


def patient(id: str, nickname: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": id,
        "name": [
            {"family": "Hansen", "given": ["Johannes"]},
            {"use": "nickname", "given": [nickname]},
        ],
    }


@pytest.fixture(scope="module")
def two_servers(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    folder = tmp_path_factory.mktemp("custom")
    url = fresh_database_url(folder, "custom")
    env = {"SELFBACK_LOAD_CONTENT": "0", "SELFBACK_SEARCH_EXPLAIN": "1"}
    (folder / "a").mkdir()
    (folder / "b").mkdir()
    # one after the other: each migrates the database on start-up
    a = start_server(url, folder / "a", **env)
    b = start_server(url, folder / "b", **env)
    try:
        with (
            httpx.Client(base_url=a.fhir, timeout=120) as ca,
            httpx.Client(base_url=b.fhir, timeout=120) as cb,
        ):
            yield ca, cb
    finally:
        stop_server(a)
        stop_server(b)
        drop_database(url)


def ids(r: httpx.Response) -> set[str]:
    assert r.status_code == 200, r.text
    return {
        e["resource"]["id"] for e in r.json().get("entry", []) if e["search"]["mode"] == "match"
    }


def reindexed(r: httpx.Response) -> int:
    assert r.status_code == 200, r.text
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome"
    found = re.search(r"Reindexed (\d+) ", outcome["issue"][0]["diagnostics"])
    assert found, outcome
    return int(found.group(1))


def test_custom_parameter_lifecycle(two_servers: tuple[httpx.Client, httpx.Client]) -> None:
    a, b = two_servers
    assert a.put("/Patient/before", json=patient("before", "Hans")).status_code == 201
    # unknown before the SearchParameter exists: refused when strict
    assert a.get("/Patient", params={"nickname": "hans"}, headers=STRICT).status_code == 400

    assert a.put("/SearchParameter/patient-nickname", json=NICKNAME).status_code == 201
    # the other process knows it at once; the older patient is not indexed yet
    assert ids(b.get("/Patient", params={"nickname": "hans"}, headers=STRICT)) == set()
    # a patient written now (through the other process) is indexed on write
    assert b.put("/Patient/after", json=patient("after", "Hansi")).status_code == 201
    assert ids(a.get("/Patient", params={"nickname": "hans"}, headers=STRICT)) == {"after"}

    # $reindex backfills the older one
    assert reindexed(a.post("/Patient/$reindex")) == 2
    assert ids(b.get("/Patient", params={"nickname": "hans"}, headers=STRICT)) == {
        "before",
        "after",
    }
    assert ids(b.get("/Patient", params={"nickname:exact": "Hansi"})) == {"after"}

    # retired: out of force everywhere
    retired = {**NICKNAME, "status": "retired"}
    assert b.put("/SearchParameter/patient-nickname", json=retired).status_code == 200
    assert a.get("/Patient", params={"nickname": "hans"}, headers=STRICT).status_code == 400
    # and active again
    assert a.put("/SearchParameter/patient-nickname", json=NICKNAME).status_code == 200
    assert ids(b.get("/Patient", params={"nickname": "hans"}, headers=STRICT)) == {
        "before",
        "after",
    }


def test_system_reindex_and_refused_definitions(
    two_servers: tuple[httpx.Client, httpx.Client],
) -> None:
    a, b = two_servers
    composite = {
        **NICKNAME,
        "id": "bad",
        "url": "http://example.org/bad",
        "code": "bad",
        "type": "composite",
    }
    assert a.put("/SearchParameter/bad", json=composite).status_code == 201
    r = b.post("/$reindex", params={"batchSize": "2"})
    assert reindexed(r) >= 3  # the patients and the SearchParameters themselves
    warnings = [i["diagnostics"] for i in r.json()["issue"] if i["severity"] == "warning"]
    assert any("bad" in w and "composite" in w for w in warnings), warnings
    assert b.post("/$reindex", params={"batchSize": "0"}).status_code == 400
    assert b.post("/NoSuchType/$reindex").status_code == 404
    assert a.delete("/SearchParameter/bad").status_code in (200, 204)


def test_explain_returns_sql_and_plan(two_servers: tuple[httpx.Client, httpx.Client]) -> None:
    a, _ = two_servers
    r = a.get("/Patient", params={"family": "hansen", "_explain": "true", "_total": "accurate"})
    assert r.status_code == 200, r.text
    (outcome,) = [e["resource"] for e in r.json()["entry"] if e["search"]["mode"] == "outcome"]
    texts = [i["diagnostics"] for i in outcome["issue"] if i["severity"] == "information"]
    assert len(texts) == 2  # the page and the total
    assert all("SELECT" in t and "plan:" in t for t in texts)
    assert "sp_string" in texts[0]
    assert a.get("/Patient", params={"_explain": "sometimes"}).status_code == 400
