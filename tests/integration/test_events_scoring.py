"""A QuestionnaireResponse posted through the API is scored by the outbox worker: score
Observations derived from it and a Provenance appear; the event survives a server that is
not running its worker and is handled once a worker runs (ARCHITECTURE.md, the outbox)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import drop_database, fresh_database_url, start_server, stop_server
from tests.mappings.qr_builder import build_response

PHQ = {**{f"phq-{i}": 2 for i in range(1, 9)}, **{f"pss-{i}": 2 for i in range(1, 11)}}


def submit(fhir: httpx.Client, patient_id: str) -> dict[str, object]:
    response = build_response("selfback-mental-health", PHQ, rid="ignored")
    response.pop("id", None)
    response["subject"] = {"reference": f"Patient/{patient_id}"}
    answer = fhir.post("/QuestionnaireResponse", json=response)
    assert answer.status_code == 201, answer.text
    return answer.json()


def derived_from(fhir: httpx.Client, qr_id: str, wait: float = 30) -> list[dict[str, object]]:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        bundle = fhir.get(
            "/Observation", params={"derived-from": f"QuestionnaireResponse/{qr_id}", "_count": 100}
        ).json()
        found = [e["resource"] for e in bundle.get("entry", [])]
        if found:
            return found
        time.sleep(0.2)
    return []


def test_submitted_response_is_scored_with_provenance(fhir: httpx.Client) -> None:
    patient = fhir.post("/Patient", json={"resourceType": "Patient", "gender": "female"}).json()
    qr = submit(fhir, patient["id"])
    observations = derived_from(fhir, qr["id"])
    assert observations, "no score Observations appeared"
    codes = {c["code"] for o in observations for c in o["code"]["coding"]}
    assert len(codes) >= 2  # PHQ-8 and PSS-10 at least
    for observation in observations:
        assert observation["subject"] == {"reference": f"Patient/{patient['id']}"}
        assert observation["derivedFrom"] == [{"reference": f"QuestionnaireResponse/{qr['id']}"}]
    provenance = fhir.get(
        "/Provenance", params={"entity": f"QuestionnaireResponse/{qr['id']}"}
    ).json()
    targets = {t["reference"] for e in provenance.get("entry", []) for t in e["resource"]["target"]}
    assert {f"Observation/{o['id']}" for o in observations} <= targets


@pytest.fixture
def own_database(tmp_path: Path) -> Iterator[str]:
    url = fresh_database_url(tmp_path, "events")
    yield url
    drop_database(url)


def test_events_wait_for_a_worker_and_are_handled_once(own_database: str, tmp_path: Path) -> None:
    """Submitted while no worker runs anywhere, the response waits unscored; the next
    server that runs a worker scores it, once."""
    quiet = start_server(
        own_database, tmp_path / "a", SELFBACK_EVENTS_WORKER="0", SELFBACK_LOAD_CONTENT="0"
    )
    try:
        with httpx.Client(base_url=quiet.fhir, timeout=60) as client:
            patient = client.post("/Patient", json={"resourceType": "Patient"}).json()
            qr = submit(client, patient["id"])
            assert derived_from(client, qr["id"], wait=2) == []
    finally:
        stop_server(quiet)
    worker = start_server(own_database, tmp_path / "b", SELFBACK_LOAD_CONTENT="0")
    try:
        with httpx.Client(base_url=worker.fhir, timeout=60) as client:
            observations = derived_from(client, qr["id"])
            assert observations
            time.sleep(1)
            again = derived_from(client, qr["id"])
            assert sorted(o["id"] for o in again) == sorted(o["id"] for o in observations)
            assert all(o["meta"]["versionId"] == "1" for o in again)
    finally:
        stop_server(worker)
