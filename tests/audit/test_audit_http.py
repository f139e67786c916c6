"""The audit trail over HTTP, against the real server: what the authorization server and
the FHIR API do ends up as AuditEvents that an auditor finds with ordinary searches.

AuditEvents are written off the request path (at most ~200 ms later), so every check
polls the search until the event is there.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_server.audit.balp import AUTH_EVENT_SYSTEM, CLIENT_ID_SYSTEM, IHE_EVENT_TYPE
from tests.auth.conftest import CLINICIAN_PASSWORD, SmartEnv
from tests.auth.smart_app import BackendKey, Browser, backend_token, bearer, new_phone
from tests.conftest import drop_database, fresh_database_url, start_server, stop_server

pytestmark = pytest.mark.db

Event = dict[str, Any]


class Auditor:
    """Searches AuditEvents with a system/*.rs token (the EHR's backend client)."""

    def __init__(self, smart: SmartEnv) -> None:
        self.smart = smart
        self.token = smart.backend_access_token("ehr", "system/*.rs")

    def search(self, **params: str) -> list[Event]:
        response = httpx.get(
            f"{self.smart.fhir}/AuditEvent",
            params={**params, "_count": "500"},
            headers=bearer(self.token),
            timeout=60,
        )
        assert response.status_code == 200, response.text
        return [entry["resource"] for entry in response.json().get("entry", [])]

    def wait(
        self, where: Callable[[Event], bool] = lambda e: True, timeout: float = 15, **params: str
    ) -> list[Event]:
        """The events matching ``params`` and ``where``, once there is at least one."""
        deadline = time.monotonic() + timeout
        while True:
            found = [e for e in self.search(**params) if where(e)]
            if found or time.monotonic() > deadline:
                assert found, f"no AuditEvent for {params}"
                return found
            time.sleep(0.1)


@pytest.fixture(scope="module")
def auditor(smart: SmartEnv) -> Auditor:
    return Auditor(smart)


def client_agent(client_id: str) -> str:
    return f"{CLIENT_ID_SYSTEM}|{client_id}"


def auth_event(kind: str) -> str:
    return f"{AUTH_EVENT_SYSTEM}|{kind}"


def whos(event: Event) -> list[str]:
    return [a["who"]["reference"] for a in event["agent"] if "reference" in a.get("who", {})]


# -- the authorization server -------------------------------------------------------------------


def test_a_backend_token_issue_is_an_iti71_event_naming_the_client(
    smart: SmartEnv, auditor: Auditor
) -> None:
    client_id, key = smart.backends["es384"]
    response = backend_token(smart.token_url, client_id, key, "system/Observation.rs")
    assert response.status_code == 200, response.text
    (event, *_) = auditor.wait(
        lambda e: "scope=system/Observation.rs" in e["outcomeDesc"],
        subtype=f"{IHE_EVENT_TYPE}|ITI-71",
        **{"agent:identifier": client_agent(client_id)},
    )
    assert event["type"]["code"] == "110114"
    assert event["outcome"] == "0"
    assert "grant_type=client_credentials" in event["outcomeDesc"]
    (app,) = event["agent"]
    assert app["requestor"] is True
    assert app["network"]["address"] == "127.0.0.1"


def test_a_refused_token_request_is_recorded_with_its_reason(
    smart: SmartEnv, auditor: Auditor
) -> None:
    client_id, _ = smart.backends["es384"]
    impostor = BackendKey.es384()  # not the registered key
    response = backend_token(smart.token_url, client_id, impostor, "system/*.rs")
    assert response.status_code in (400, 401)
    (event, *_) = auditor.wait(
        subtype=auth_event("token"),
        outcome="4",
        **{"agent:identifier": client_agent(client_id)},
    )
    assert event["outcomeDesc"].startswith(f"HTTP {response.status_code}: ")
    assert response.json()["error"] in event["outcomeDesc"]


def test_a_password_sign_in_is_recorded_failed_then_succeeded(
    smart: SmartEnv, auditor: Auditor
) -> None:
    browser = Browser()
    try:
        smart.start(browser, "clinician", "openid fhirUser user/*.rs")
        wrong = browser.press("password", username="dr-jensen", password="not the password")
        assert wrong.status_code == 400
        right = browser.press("password", username="dr-jensen", password=CLINICIAN_PASSWORD)
        assert right.status_code == 200
    finally:
        browser.close()
    clinician = client_agent(smart.apps["clinician"].client_id)
    failed = auditor.wait(
        lambda e: "password refused for 'dr-jensen'" in e["outcomeDesc"],
        subtype=auth_event("login"),
        outcome="4",
        **{"agent:identifier": clinician},
    )
    assert "not the password" not in str(failed)  # a secret never enters the trail
    (signed_in, *_) = auditor.wait(
        subtype=auth_event("login"),
        outcome="0",
        agent=f"Practitioner/{smart.practitioner}",
    )
    assert signed_in["outcomeDesc"] == "HTTP 200: signed in (password)"
    assert {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110122",
            "display": "Login"} in signed_in["subtype"]  # fmt: skip


def test_a_patient_onboarding_leaves_the_activation_code_sign_in_and_token_events(
    smart: SmartEnv, auditor: Auditor
) -> None:
    body, patient = smart.patient_tokens()
    auditor.wait(subtype=auth_event("token"), patient=f"Patient/{patient}")
    kinds = {
        c["code"]
        for e in auditor.search(patient=f"Patient/{patient}")
        for c in e["subtype"]
        if c["system"] == AUTH_EVENT_SYSTEM
    }
    assert {"activation-code", "login", "token"} <= kinds
    (login,) = auditor.search(patient=f"Patient/{patient}", subtype=auth_event("login"))
    assert f"Patient/{patient}" in whos(login)
    assert login["outcomeDesc"] == "HTTP 200: signed in (activation)"
    (token,) = auditor.search(patient=f"Patient/{patient}", subtype=auth_event("token"))
    assert f"Patient/{patient}" in whos(token)
    assert "grant_type=authorization_code" in token["outcomeDesc"]
    assert body["access_token"] not in str(token)


def test_a_wrong_sms_code_is_a_failed_sign_in(smart: SmartEnv, auditor: Auditor) -> None:
    patient = smart.new_patient()
    code = smart.activation_code(patient)
    browser = Browser()
    try:
        smart.start(browser, "patient", "openid fhirUser patient/*.rs")
        browser.press("activate", activation_code=code)
        browser.press("phone", phone=new_phone())
        assert browser.press("otp", otp="000000").status_code == 400
    finally:
        browser.close()
    auditor.wait(
        lambda e: "SMS code refused" in e["outcomeDesc"],
        subtype=auth_event("login"),
        outcome="4",
        **{"agent:identifier": client_agent(smart.apps["patient"].client_id)},
    )


def test_an_ehr_launch_and_an_activation_code_name_the_patient(
    smart: SmartEnv, auditor: Auditor
) -> None:
    smart.launch()
    ehr = client_agent(smart.backends["ehr"][0])
    (launch, *_) = auditor.wait(
        subtype=auth_event("launch"),
        patient=f"Patient/{smart.patients['a']}",
        **{"agent:identifier": ehr},
    )
    assert launch["outcome"] == "0"
    assert f"Practitioner/{smart.practitioner}" in launch["outcomeDesc"]
    patient = smart.patients["b"]
    smart.activation_code(patient)
    (issued, *_) = auditor.wait(
        subtype=auth_event("activation-code"),
        entity=f"Patient/{patient}",
        **{"agent:identifier": ehr},
    )
    assert issued["outcomeDesc"].startswith("HTTP 200: activation code issued")


def test_refused_launch_and_activation_code_requests_are_recorded(
    smart: SmartEnv, auditor: Auditor
) -> None:
    es384 = smart.backend_access_token("es384", "system/Observation.rs")  # no custom scopes
    refused = httpx.post(
        f"{smart.fhir}/Patient/{smart.patients['a']}/$activation-code", headers=bearer(es384)
    )
    assert refused.status_code == 403
    (event, *_) = auditor.wait(
        lambda e: "__activation-code" in e["outcomeDesc"],
        subtype=auth_event("activation-code"),
        outcome="4",
        **{"agent:identifier": client_agent(smart.backends["es384"][0])},
    )
    assert event["outcomeDesc"].startswith("HTTP 403: ")
    assert httpx.post(smart.url + "/auth/launch", json={}).status_code == 401
    auditor.wait(
        lambda e: "no valid bearer token" in e["outcomeDesc"],
        subtype=auth_event("launch"),
        outcome="4",
    )


def test_introspection_and_revocation_are_recorded(smart: SmartEnv, auditor: Auditor) -> None:
    body, patient = smart.patient_tokens()
    app = smart.apps["patient"]
    answer = httpx.post(
        smart.url + "/auth/introspect",
        data={"token": body["access_token"]},
        headers=bearer(body["access_token"]),
    )
    assert answer.json()["active"] is True
    revoked = httpx.post(
        smart.url + "/auth/revoke",
        data={"token": body["refresh_token"], "client_id": app.client_id},
    )
    assert revoked.status_code == 200
    (introspected,) = auditor.wait(
        subtype=f"{IHE_EVENT_TYPE}|ITI-102", patient=f"Patient/{patient}"
    )
    assert introspected["outcomeDesc"] == "HTTP 200: token active"
    (revocation,) = auditor.wait(subtype=auth_event("revoke"), patient=f"Patient/{patient}")
    assert revocation["outcomeDesc"] == "HTTP 200: grant revoked"
    assert f"Patient/{patient}" in whos(revocation)


# -- the FHIR API -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def observation_calls(smart: SmartEnv) -> dict[str, Any]:
    """A backend client creates, reads and searches one Observation of patient a."""
    client_id, key = smart.backends["es384"]
    token = backend_token(smart.token_url, client_id, key, "system/Observation.cruds")
    headers = bearer(token.json()["access_token"])
    patient = smart.patients["a"]
    # Events of this fixture only: other tests of the session act on patient a too.
    since = (datetime.now(UTC) - timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "55423-8"}]},
        "subject": {"reference": f"Patient/{patient}"},
        "valueQuantity": {"value": 4000, "unit": "steps"},
    }
    created = httpx.post(f"{smart.fhir}/Observation", json=observation, headers=headers)
    assert created.status_code == 201, created.text
    oid = created.json()["id"]
    assert httpx.get(f"{smart.fhir}/Observation/{oid}", headers=headers).status_code == 200
    query = {"subject": f"Patient/{patient}", "code": "http://loinc.org|55423-8"}
    search = httpx.get(f"{smart.fhir}/Observation", params=query, headers=headers)
    assert search.status_code == 200
    return {
        "id": oid,
        "patient": patient,
        "agent": {"agent:identifier": client_agent(client_id), "date": f"ge{since}"},
    }


def test_a_create_is_recorded_with_the_new_resource_and_its_patient(
    auditor: Auditor, observation_calls: dict[str, Any]
) -> None:
    oid, patient = observation_calls["id"], observation_calls["patient"]
    (create,) = auditor.wait(action="C", patient=f"Patient/{patient}", **observation_calls["agent"])
    assert create["outcome"] == "0"
    assert create["subtype"] == [
        {"system": "http://hl7.org/fhir/restful-interaction", "code": "create"}
    ]
    # BALP Create: the created resource is an entity beside the patient.
    assert any(
        e.get("what", {}).get("reference", "").startswith(f"Observation/{oid}")
        for e in create["entity"]
    ), create["entity"]


def test_a_read_is_recorded_with_the_version_read_and_its_patient(
    auditor: Auditor, observation_calls: dict[str, Any]
) -> None:
    oid, patient = observation_calls["id"], observation_calls["patient"]
    (read,) = auditor.wait(
        entity=f"Observation/{oid}/_history/1", action="R", **observation_calls["agent"]
    )
    assert read["outcome"] == "0"
    assert {"reference": f"Patient/{patient}"} in [e.get("what") for e in read["entity"]]


def test_a_transaction_is_one_event_naming_every_resource_it_wrote(
    smart: SmartEnv, auditor: Auditor
) -> None:
    """One AuditEvent for the Bundle (subtype transaction), an entity per write with its
    lifecycle, and no event per entry; a failed transaction wrote nothing, so its event
    names nothing written."""
    client_id, key = smart.backends["es384"]
    token = backend_token(smart.token_url, client_id, key, "system/Observation.cruds")
    headers = bearer(token.json()["access_token"])
    patient = smart.patients["a"]
    marker = f"tx-{time.monotonic_ns()}"

    def observation(n: int) -> dict[str, Any]:
        return {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "55423-8"}]},
            "subject": {"reference": f"Patient/{patient}"},
            "identifier": [{"system": "urn:test", "value": f"{marker}-{n}"}],
            "valueQuantity": {"value": 1000 + n, "unit": "steps"},
        }

    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": observation(n), "request": {"method": "POST", "url": "Observation"}}
            for n in range(3)
        ],
    }
    r = httpx.post(f"{smart.fhir}/", json=bundle, headers=headers, timeout=60)
    assert r.status_code == 200, r.text
    ids = [e["response"]["location"].split("/")[1] for e in r.json()["entry"]]
    (event,) = auditor.wait(subtype="transaction", entity=f"Observation/{ids[0]}/_history/1")
    assert event["outcome"] == "0"
    written = {e["what"]["reference"]: e["lifecycle"]["code"] for e in event["entity"]
               if "lifecycle" in e}
    assert written == {f"Observation/{id}/_history/1": "1" for id in ids}
    assert {"reference": f"Patient/{patient}"} in [e.get("what") for e in event["entity"]]
    # no per-entry create events for these resources
    for id in ids:
        assert auditor.search(subtype="create", entity=f"Observation/{id}/_history/1") == []

    bad = {**bundle, "entry": [*bundle["entry"], {"resource": {"resourceType": "Observation"},
                                                   "request": {"method": "POST",
                                                               "url": "Observation"}}]}
    since = (datetime.now(UTC) - timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    r = httpx.post(f"{smart.fhir}/", json=bad, headers=headers, timeout=60)
    assert 400 <= r.status_code < 500, r.text
    failed = auditor.wait(
        lambda e: e["outcome"] == "4",
        subtype="transaction",
        date=f"ge{since}",
        **{"agent:identifier": client_agent(client_id)},
    )
    assert all("lifecycle" not in e for ev in failed for e in ev.get("entity", []))


def test_a_search_is_recorded_with_its_query(
    auditor: Auditor, observation_calls: dict[str, Any]
) -> None:
    patient = observation_calls["patient"]
    # BALP "Query with Patient": the patient the query names is found by ?patient=
    events = auditor.wait(
        subtype="search-type", patient=f"Patient/{patient}", **observation_calls["agent"]
    )
    queries = [
        base64.b64decode(entity["query"]).decode()
        for event in events
        for entity in event.get("entity", [])
        if "query" in entity
    ]
    assert any(f"Patient/{patient}" in q and "55423-8" in q for q in queries), queries
    assert all(event["action"] == "E" for event in events)


def test_the_trail_is_append_only_and_not_for_patients(smart: SmartEnv, auditor: Auditor) -> None:
    (event, *_) = auditor.wait(subtype=auth_event("token"))
    writer = smart.cli(
        "client",
        "register",
        "--name",
        "audit tamperer",
        "--type",
        "confidential-asymmetric",
        "--jwks-file",
        str(smart.data_dir / "ehr-jwks.json"),
        "--scope",
        "system/*.cruds",
    )
    _, ehr_key = smart.backends["ehr"]
    token = backend_token(smart.token_url, writer["client_id"], ehr_key, "system/*.cruds")
    headers = bearer(token.json()["access_token"])
    url = f"{smart.fhir}/AuditEvent/{event['id']}"
    assert httpx.put(url, json=event, headers=headers).status_code == 403
    assert httpx.delete(url, headers=headers).status_code == 403
    body, _ = smart.patient_tokens()
    assert httpx.get(url, headers=bearer(body["access_token"])).status_code == 403
    unchanged = httpx.get(url, headers=bearer(auditor.token)).json()
    assert unchanged["meta"]["versionId"] == event["meta"]["versionId"]


# -- shutdown ---------------------------------------------------------------------------------


@pytest.fixture
def own_database(tmp_path: Path) -> Iterator[str]:
    url = fresh_database_url(tmp_path, "auditstop")
    yield url
    drop_database(url)


def test_stopping_the_server_writes_what_was_still_buffered(
    own_database: str, tmp_path: Path
) -> None:
    """The lifespan stop drains the queue: a request answered just before SIGTERM is in
    the trail after a restart, although the 200 ms batch interval had not passed."""
    first = start_server(own_database, tmp_path / "a", SELFBACK_LOAD_CONTENT="0")
    try:
        created = httpx.put(
            f"{first.fhir}/Patient/stop-test",
            json={"resourceType": "Patient", "id": "stop-test"},
            timeout=60,
        )
        assert created.status_code in (200, 201), created.text
        assert httpx.get(f"{first.fhir}/Patient/stop-test", timeout=60).status_code == 200
    finally:
        stop_server(first)  # at once: well within the batch interval
    second = start_server(own_database, tmp_path / "b", SELFBACK_LOAD_CONTENT="0")
    try:
        found = httpx.get(
            f"{second.fhir}/AuditEvent",
            params={"entity": "Patient/stop-test", "subtype": "read"},
            timeout=60,
        ).json()
    finally:
        stop_server(second)
    assert found.get("total", len(found.get("entry", []))) >= 1, found
