"""Custom SearchParameters and $reindex through two server processes on one database
(SQLite, or PostgreSQL in the ``-m db`` pass), and ``_explain`` where the server allows it.

A SearchParameter written through one process is in force there from the next request,
and in the other process's searches within the registry cache's bound
(search_sql.SEARCH_REGISTRY_TTL_S: searches check a digest of the stored SearchParameters
at most that often; test_search_registry_cache.py checks the bound itself with a
controlled clock); resources written before it exist are found once ``$reindex`` has run.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
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


def eventually(ask: Callable[[], httpx.Response], status: int) -> httpx.Response:
    """The answer once another process's searches have seen a SearchParameter change: at
    once, or after its registry cache's bound (0.5 s); the 10 s allow for a busy machine."""
    deadline = time.monotonic() + 10
    while True:
        r = ask()
        if r.status_code == status or time.monotonic() > deadline:
            return r
        time.sleep(0.05)


def nickname(client: httpx.Client) -> httpx.Response:
    return client.get("/Patient", params={"nickname": "hans"}, headers=STRICT)


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
    # the writing process knows it at once, the other within its bound; the older patient
    # is not indexed yet
    assert ids(a.get("/Patient", params={"nickname": "hans"}, headers=STRICT)) == set()
    assert ids(eventually(lambda: nickname(b), 200)) == set()
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
    assert nickname(b).status_code == 400
    assert eventually(lambda: nickname(a), 400).status_code == 400
    # and active again
    assert a.put("/SearchParameter/patient-nickname", json=NICKNAME).status_code == 200
    assert ids(nickname(a)) == {"before", "after"}
    assert ids(eventually(lambda: nickname(b), 200)) == {"before", "after"}


def test_system_reindex_and_refused_definitions(
    two_servers: tuple[httpx.Client, httpx.Client],
) -> None:
    a, b = two_servers
    # its own patients: under xdist this test may run in a process where the lifecycle
    # test never did
    for n in ("reindex-1", "reindex-2", "reindex-3"):
        assert a.put(f"/Patient/{n}", json=patient(n, "Hans")).status_code in (200, 201)
    composite = {
        **NICKNAME,
        "id": "bad",
        "url": "http://example.org/bad",
        "code": "bad",
        "type": "composite",
    }
    assert a.put("/SearchParameter/bad", json=composite).status_code == 201
    r = b.post("/$reindex", params={"batchSize": "2"})
    assert reindexed(r) >= 4  # the three patients and the SearchParameter itself
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


MAIDEN = {
    **NICKNAME,
    "id": "patient-maiden",
    "url": "http://example.org/fhir/SearchParameter/patient-maiden",
    "name": "maiden",
    "description": "A patient's maiden name",
    "code": "maiden",
    "expression": "Patient.name.where(use='maiden').family",
}


def maiden(id: str | None, family: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Patient",
        "name": [{"family": "Hansen"}, {"use": "maiden", "family": family}],
    }
    return {**body, "id": id} if id else body


def entry(resource: dict[str, Any], **request: str) -> dict[str, Any]:
    return {"resource": resource, "request": {"method": "POST", "url": "Patient", **request}}


def test_conditional_interactions_use_custom_parameters(
    two_servers: tuple[httpx.Client, httpx.Client],
) -> None:
    """http.html#ccreate, #cond-update, #cdelete and transaction conditional references
    (http.html#trules) select with the same parameters a search would: custom ones once
    active, through either process; criteria stay strict, so an unknown parameter is 400."""
    a, b = two_servers
    assert a.put("/Patient/skov", json=maiden("skov", "Skov")).status_code == 201
    # before the SearchParameter exists the criteria name an unknown parameter
    unknown = b.post(
        "/Patient", json=maiden(None, "Skov"), headers={"If-None-Exist": "maiden=skov"}
    )
    assert unknown.status_code == 400, unknown.text
    assert unknown.json()["resourceType"] == "OperationOutcome"

    assert a.put("/SearchParameter/patient-maiden", json=MAIDEN).status_code == 201
    assert reindexed(a.post("/Patient/$reindex")) >= 1

    # conditional create through the other process: the existing resource, nothing written
    existing = b.post(
        "/Patient", json=maiden(None, "Skov"), headers={"If-None-Exist": "maiden=skov"}
    )
    assert existing.status_code == 200, existing.text
    assert existing.json()["id"] == "skov"

    # conditional update (one match: that resource is updated)
    changed = {**maiden(None, "Skov"), "gender": "female"}
    updated = a.put("/Patient", params={"maiden": "skov"}, json=changed)
    assert updated.status_code == 200, updated.text
    assert updated.json()["id"] == "skov" and updated.json()["gender"] == "female"

    # a transaction: ifNoneExist and a conditional reference with the custom parameter
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            entry(maiden(None, "Skov"), ifNoneExist="maiden=skov"),
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "note"},
                    "subject": {"reference": "Patient?maiden=skov"},
                },
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    r = b.post("", json=bundle)
    assert r.status_code == 200, r.text
    first, second = r.json()["entry"]
    assert first["response"]["status"] == "200 OK" and first["resource"]["id"] == "skov"
    assert second["resource"]["subject"]["reference"] == "Patient/skov"

    # conditional delete of a patient indexed on write (written after the parameter)
    assert b.put("/Patient/lund", json=maiden("lund", "Lund")).status_code == 201
    assert a.delete("/Patient", params={"maiden": "lund"}).status_code in (200, 204)
    assert a.get("/Patient/lund").status_code == 410

    # still strict: an unknown parameter next to the custom one is refused, in every form
    both = "maiden=skov&nosuchparameter=x"
    r = a.post("/Patient", json=maiden(None, "Skov"), headers={"If-None-Exist": both})
    assert r.status_code == 400, r.text
    assert a.put(f"/Patient?{both}", json=changed).status_code == 400
    assert a.delete(f"/Patient?{both}").status_code == 400
    r = b.post("", json={**bundle, "entry": [entry(maiden(None, "Skov"), ifNoneExist=both)]})
    assert r.status_code == 400, r.text
    assert a.delete("/SearchParameter/patient-maiden").status_code in (200, 204)
