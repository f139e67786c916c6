"""Races across server processes: `selfback serve --workers 2` against one database.

FHIR R4 http.html#concurrency and #ccreate: concurrent conditional creates with the same
criteria must make one resource; concurrent updates guarded by the same If-Match must let
exactly one through; nothing half-written is ever visible.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.conftest import ROOT, free_port

WORKERS = 2
CLIENTS = 12


@pytest.fixture(scope="module")
def multi_worker(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data_dir = tmp_path_factory.mktemp("workers")
    port = free_port()
    log = (data_dir / "serve.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fhir_server.cli",
            "serve",
            "--port",
            str(port),
            "--workers",
            str(WORKERS),
            "--json",
            "--no-content",
        ],
        env={
            **os.environ,
            "SELFBACK_AUTH": "none",  # loopback, every request an admin (docs/AUTH.md)
            "SELFBACK_DATABASE_URL": database_url,
            "SELFBACK_DATA_DIR": str(data_dir),
        },
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}/fhir"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert process.poll() is None, (data_dir / "serve.log").read_text()
        try:
            if httpx.get(url + "/metadata", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    yield url
    process.terminate()
    process.wait(15)


def race(url: str, send: object) -> list[httpx.Response]:
    def one(_: int) -> httpx.Response:
        with httpx.Client(base_url=url, timeout=60) as client:
            return send(client)  # type: ignore[operator]

    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        return list(pool.map(one, range(CLIENTS)))


def test_conditional_creates_across_processes_make_one(multi_worker: str) -> None:
    value = uuid.uuid4().hex
    resource = {"resourceType": "Patient", "identifier": [{"system": "urn:race", "value": value}]}
    criteria = f"identifier=urn:race|{value}"
    answers = race(
        multi_worker,
        lambda c: c.post("/Patient", json=resource, headers={"If-None-Exist": criteria}),
    )
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [200] * (CLIENTS - 1) + [201]
    assert len({r.json()["id"] for r in answers}) == 1
    found = httpx.get(f"{multi_worker}/Patient", params={"identifier": f"urn:race|{value}"}).json()
    assert len(found["entry"]) == 1


def test_if_match_lets_exactly_one_update_through(multi_worker: str) -> None:
    made = httpx.post(
        f"{multi_worker}/Patient", json={"resourceType": "Patient", "gender": "female"}
    ).json()
    url = f"/Patient/{made['id']}"

    def update(client: httpx.Client) -> httpx.Response:
        body = {**made, "name": [{"family": uuid.uuid4().hex}]}
        return client.put(url, json=body, headers={"If-Match": 'W/"1"'})

    statuses = sorted(r.status_code for r in race(multi_worker, update))
    assert statuses == [200] + [412] * (CLIENTS - 1)
    history = httpx.get(f"{multi_worker}{url}/_history").json()
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["2", "1"]


def test_concurrent_transactions_are_all_or_nothing(multi_worker: str) -> None:
    """Half the transactions carry a failing entry; only the others leave anything behind."""
    tag = uuid.uuid4().hex

    def transaction(client: httpx.Client) -> httpx.Response:
        n = uuid.uuid4().hex
        bad = n[0] in "01234567"
        entries = [
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [{"system": f"urn:tx:{tag}", "value": n}],
                },
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": tag},
                    "valueInteger": "bad" if bad else 3,
                },
                "request": {"method": "POST", "url": "Observation"},
            },
        ]
        return client.post(
            "", json={"resourceType": "Bundle", "type": "transaction", "entry": entries}
        )

    answers = race(multi_worker, transaction)
    succeeded = sum(1 for r in answers if r.status_code == 200)
    assert all(r.status_code in (200, 400) for r in answers)
    patients = httpx.get(
        f"{multi_worker}/Patient", params={"identifier": f"urn:tx:{tag}|", "_count": 100}
    ).json()
    assert len(patients.get("entry", [])) == succeeded
