"""Token enforcement on /fhir: INF-G5 (access-token half), INF-G6, INF-G10, INF-G11,
SAL-80/81; patient A never sees patient B through any interaction; clinician consent and
its withdrawal; what patients may not change; the ``--auth none`` mode."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.auth.access_world import CATEGORY, World, body_for, care_team, consent
from tests.auth.conftest import SmartEnv
from tests.auth.smart_app import Browser, bearer, check_token_response, new_phone

pytestmark = pytest.mark.db


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=60) as client:
        yield client


def ids_of(bundle: dict[str, Any], mode: str = "match") -> set[str]:
    return {
        e["resource"]["id"]
        for e in bundle.get("entry", [])
        if "resource" in e
        and e.get("search", {}).get("mode") == mode
        and e["resource"]["resourceType"] != "OperationOutcome"
    }


# -- 401 and 403 (RFC 6750, SAL-80/81, INF-G6, INF-G5) --------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "Patient/x"),
        ("GET", "Patient"),
        ("GET", ""),
        ("GET", "_history"),
        ("POST", "Patient"),
        ("POST", ""),
        ("DELETE", "Patient/x"),
        ("POST", "Observation/$validate"),
        ("GET", "Patient/x/Observation"),
    ],
)
def test_INF_G6_no_token_is_401_with_a_challenge(
    smart: SmartEnv, http: httpx.Client, method: str, path: str
) -> None:
    response = http.request(method, f"{smart.fhir}/{path}", json={"resourceType": "Patient"})
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    # RFC 6750 3.1: no error code when the request carried no credentials at all
    assert challenge.startswith('Bearer realm="') and "error=" not in challenge
    assert response.json()["resourceType"] == "OperationOutcome"


def test_metadata_and_discovery_need_no_token(smart: SmartEnv, http: httpx.Client) -> None:
    assert http.get(f"{smart.fhir}/metadata").status_code == 200
    assert http.get(f"{smart.fhir}/.well-known/smart-configuration").status_code == 200


@pytest.mark.parametrize("token", ["not-a-token", "x" * 600, "Zm9v.YmFy.YmF6"])
def test_SAL_81_a_bad_token_is_401_invalid_token(
    smart: SmartEnv, http: httpx.Client, token: str
) -> None:
    response = http.get(f"{smart.fhir}/Patient", headers=bearer(token))
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert response.json()["issue"][0]["code"] == "login"


def test_SAL_80_an_expired_token_is_401(world: World, http: httpx.Client) -> None:
    # Long enough for the first request on a loaded machine, short enough to wait out.
    token = world.mint("system/*.rs", role=None, expires_in=5)
    assert http.get(f"{world.fhir}/Patient/{world.a}", headers=bearer(token)).status_code == 200
    time.sleep(5.2)  # the token lapses; the server's short claims cache must not outlive it
    response = http.get(f"{world.fhir}/Patient/{world.a}", headers=bearer(token))
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_SAL_81_insufficient_scope_is_403(world: World, http: httpx.Client) -> None:
    token = world.mint("patient/Observation.rs", role="patient", patient=world.a)
    response = http.get(f"{world.fhir}/Goal", headers=bearer(token))
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]
    assert response.json()["issue"][0]["code"] == "forbidden"
    # a type the token has no scope for is a 403 whether or not the id exists
    assert http.get(f"{world.fhir}/Goal/absent", headers=bearer(token)).status_code == 403
    goal = world.ids[("Goal", "a")]
    assert http.get(f"{world.fhir}/Goal/{goal}", headers=bearer(token)).status_code == 403


def test_INF_G5_a_revoked_access_token_gets_401_at_once(
    smart: SmartEnv, http: httpx.Client
) -> None:
    body, patient = smart.patient_tokens()
    headers = bearer(body["access_token"])
    assert http.get(f"{smart.fhir}/Patient/{patient}", headers=headers).status_code == 200
    revoked = http.post(
        smart.url + "/auth/revoke",
        data={
            "token": body["access_token"],
            "token_type_hint": "access_token",
            "client_id": smart.apps["patient"].client_id,
        },
    )
    assert revoked.status_code == 200
    # the same process answers the next request: its claims cache was cleared
    response = http.get(f"{smart.fhir}/Patient/{patient}", headers=headers)
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_INF_G10_deselected_types_are_refused(smart: SmartEnv, http: httpx.Client) -> None:
    scope = "launch/patient openid fhirUser patient/Observation.rs patient/Condition.rs"
    browser = Browser()
    try:
        verifier, state = smart.onboard(browser, smart.new_patient(), new_phone(), scope)
        code = smart.approve(browser, state, untick=("patient/Condition.rs",))
    finally:
        browser.close()
    body = check_token_response(smart.apps["patient"].exchange(smart.token_url, code, verifier))
    assert "patient/Condition.rs" not in body["scope"].split()
    headers = bearer(body["access_token"])
    assert http.get(f"{smart.fhir}/Observation", headers=headers).status_code == 200
    for path in ("Condition", "Condition/absent", "Condition/_history"):
        assert http.get(f"{smart.fhir}/{path}", headers=headers).status_code in (401, 403)


def test_INF_G11_granular_category_scopes(smart: SmartEnv, http: httpx.Client) -> None:
    """us-core GranularScopeSearchTest: with ?category= scopes, no resource outside the
    granted categories, every matching one seen with the resource-level scope, no new ids."""
    survey = f"{CATEGORY}|survey"
    scope = f"launch/patient openid fhirUser patient/Observation.rs?category={survey}"
    body, patient = smart.patient_tokens(scope)  # the granular token, from the real flow
    assert f"patient/Observation.rs?category={survey}" in body["scope"].split()
    for category in ("survey", "survey", "vital-signs", "laboratory"):
        smart.create(body_for("Observation", patient, tag=category))
    narrow = body["access_token"]
    # the resource-level scope of the same patient, minted as the token endpoint stores it
    broad = _mint(_store(smart), smart, "patient/Observation.rs", patient)
    for query in ({}, {"category": survey}, {"code": "http://loinc.org|72514-3"}):
        seen_broad = http.get(f"{smart.fhir}/Observation", params=query, headers=bearer(broad))
        seen_narrow = http.get(f"{smart.fhir}/Observation", params=query, headers=bearer(narrow))
        narrow_ids = ids_of(seen_narrow.json()) if seen_narrow.status_code == 200 else set()
        broad_resources = {
            e["resource"]["id"]: e["resource"] for e in seen_broad.json().get("entry", [])
        }
        matching = {
            rid
            for rid, r in broad_resources.items()
            if any(c["code"] == "survey" for cat in r["category"] for c in cat["coding"])
        }
        assert narrow_ids == matching  # every matching one, nothing outside the category
        assert narrow_ids <= set(broad_resources)  # no new ids
    laboratory = next(
        r for r in broad_resources.values() if r["category"][0]["coding"][0]["code"] != "survey"
    )
    assert (
        http.get(f"{smart.fhir}/Observation/{laboratory['id']}", headers=bearer(narrow)).status_code
        == 404
    )


def _store(smart: SmartEnv) -> Any:
    from fhir_server.auth.tokens import TokenStore
    from fhir_server.config import normalise_database_url
    from fhir_server.storage.database import open_database

    return TokenStore(open_database(normalise_database_url(smart.database_url)))


def _mint(store: Any, smart: SmartEnv, scope: str, patient: str) -> str:
    import secrets

    client_id = smart.apps["patient"].client_id
    grant = store.create_grant(
        client_id=client_id, scope=scope, role="patient", subject="s", context={"patient": patient}
    )
    token = secrets.token_urlsafe(32)
    store.save(grant_id=grant, client_id=client_id, access_token=token, scope=scope, expires_in=600)
    return token


# -- patient A never sees patient B ------------------------------------------------------------


@pytest.fixture(scope="module")
def leak(world: World) -> dict[str, str]:
    """A's Observation pointing at B by ``focus`` (not a compartment parameter), and B's
    pointing at A, with a code only B's data has."""
    a_focus_b = body_for("Observation", world.a) | {"focus": [{"reference": f"Patient/{world.b}"}]}
    b_focus_a = body_for("Observation", world.b) | {
        "focus": [{"reference": f"Patient/{world.a}"}],
        "code": {"coding": [{"system": "urn:test", "code": "secret-b"}]},
    }
    return {"a_focus_b": world.create(a_focus_b), "b_focus_a": world.create(b_focus_a)}


def test_A_never_sees_B_through_include_chain_has_or_revinclude(
    world: World, http: httpx.Client, leak: dict[str, str]
) -> None:
    a = world.as_("patient-v2-cruds")
    system = world.as_("system-v2-cruds")
    included = http.get(
        f"{world.fhir}/Observation",
        params={"_id": leak["a_focus_b"], "_include": "Observation:focus"},
        headers=a,
    ).json()
    assert ids_of(included) == {leak["a_focus_b"]}
    assert world.b not in ids_of(included, "include")
    # the system client does see the included Patient B: the include itself works
    assert world.b in ids_of(
        http.get(
            f"{world.fhir}/Observation",
            params={"_id": leak["a_focus_b"], "_include": "Observation:focus"},
            headers=system,
        ).json(),
        "include",
    )
    # chain: B's name through A's own Observation's focus
    chain = {"focus:Patient.name": "Berg-matrix"}
    assert ids_of(http.get(f"{world.fhir}/Observation", params=chain, headers=system).json())
    assert ids_of(http.get(f"{world.fhir}/Observation", params=chain, headers=a).json()) == set()
    # _has: whether some Observation of B's with code secret-b points at A
    has = {"_has:Observation:focus:code": "urn:test|secret-b"}
    assert world.a in ids_of(http.get(f"{world.fhir}/Patient", params=has, headers=system).json())
    assert ids_of(http.get(f"{world.fhir}/Patient", params=has, headers=a).json()) == set()
    # _revinclude: B's Observation refers to A, but is B's
    rev = http.get(
        f"{world.fhir}/Patient",
        params={"_id": world.a, "_revinclude": "Observation:focus"},
        headers=a,
    ).json()
    assert ids_of(rev) == {world.a} and leak["b_focus_a"] not in ids_of(rev, "include")
    # _revinclude:iterate never walks on through what A cannot see
    walk = http.get(
        f"{world.fhir}/Observation",
        params={
            "_id": leak["a_focus_b"],
            "_include": "Observation:focus",
            "_revinclude:iterate": "Observation:subject",
        },
        headers=a,
    ).json()
    assert world.ids[("Observation", "b")] not in ids_of(walk, "include")


def test_A_never_sees_B_through_search_history_or_compartments(
    world: World, http: httpx.Client, leak: dict[str, str]
) -> None:
    a = world.as_("patient-v2-cruds")
    theirs = world.ids[("Observation", "b")]
    for params in ({"code": "urn:test|secret-b"}, {"subject": f"Patient/{world.b}"}, {}):
        found = ids_of(http.get(f"{world.fhir}/Observation", params=params, headers=a).json())
        assert theirs not in found and leak["b_focus_a"] not in found
    total = http.get(
        f"{world.fhir}/Observation",
        params={"code": "urn:test|secret-b", "_summary": "count"},
        headers=a,
    ).json()
    assert total["total"] == 0  # counts are filtered too
    assert ids_of(http.get(world.fhir, params={"_id": theirs}, headers=a).json()) == set()
    history = http.get(f"{world.fhir}/Observation/_history", headers=a).json()
    assert theirs not in {e.get("resource", {}).get("id") for e in history.get("entry", [])}
    assert http.get(f"{world.fhir}/Observation/{theirs}/_history", headers=a).status_code == 404
    assert http.get(f"{world.fhir}/Patient/{world.b}/*", headers=a).json().get("entry") is None


def test_A_cannot_probe_B_with_conditional_interactions(
    world: World, http: httpx.Client, leak: dict[str, str]
) -> None:
    a = world.as_("patient-v2-cruds")
    probe = "code=urn:test|secret-b"
    mine = body_for("Observation", world.a)  # activity: what a patient may record
    # conditional create: B's match is invisible, so A's resource is created (201, not 200)
    created = http.post(
        f"{world.fhir}/Observation", json=mine, headers={**a, "If-None-Exist": probe}
    )
    assert created.status_code == 201 and created.json()["id"] != leak["b_focus_a"]
    # conditional update: creates A's own, B's stays untouched
    updated = http.put(f"{world.fhir}/Observation?{probe}", json=mine, headers=a)
    assert updated.status_code == 201 and updated.json()["id"] != leak["b_focus_a"]
    # conditional delete: nothing of B's is deleted
    assert http.delete(f"{world.fhir}/Observation?{probe}", headers=a).status_code == 204
    assert (
        http.get(f"{world.fhir}/Observation/{leak['b_focus_a']}", headers=world.admin()).status_code
        == 200
    )
    # conditional reference in a transaction: resolves among A's data only
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": body_for("Observation", world.a)
                | {"hasMember": [{"reference": f"Observation?{probe}"}]},
                "request": {"method": "POST", "url": "Observation"},
            }
        ],
    }
    assert http.post(world.fhir, json=bundle, headers=a).status_code == 412


def test_A_never_sees_B_through_batches_or_operations(world: World, http: httpx.Client) -> None:
    a = world.as_("patient-v2-cruds")
    theirs = world.ids[("Observation", "b")]
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"request": {"method": "GET", "url": f"Observation/{theirs}"}},
            {"request": {"method": "GET", "url": f"Observation/{theirs}/_history/1"}},
            {"request": {"method": "GET", "url": f"Observation?_id={theirs}"}},
        ],
    }
    entries = http.post(world.fhir, json=batch, headers=a).json()["entry"]
    assert [e["response"]["status"][:3] for e in entries] == ["404", "404", "200"]
    assert ids_of(entries[2]["resource"]) == set()
    qr = world.ids[("QuestionnaireResponse", "b")]
    assert (
        http.post(f"{world.fhir}/QuestionnaireResponse/{qr}/$extract", headers=a).status_code == 404
    )


# -- clinicians and consent ---------------------------------------------------------------------


def test_clinician_sees_a_patient_only_while_consent_holds(
    world: World, http: httpx.Client
) -> None:
    doctor = world.create({"resourceType": "Practitioner", "name": [{"family": "Withdrawn"}]})

    def mint() -> dict[str, str]:
        return bearer(
            world.mint("user/*.rs", role="practitioner", fhir_user=f"Practitioner/{doctor}")
        )

    token = mint()
    obs = world.ids[("Observation", "a")]

    def sees() -> tuple[int, bool, bool]:
        read = http.get(f"{world.fhir}/Observation/{obs}", headers=token).status_code
        search = ids_of(
            http.get(f"{world.fhir}/Observation", params={"_id": obs}, headers=token).json()
        )
        patient = ids_of(
            http.get(f"{world.fhir}/Patient", params={"_id": world.a}, headers=token).json()
        )
        return read, obs in search, world.a in patient

    assert sees() == (404, False, False)  # no consent: nothing of the patient
    world.create(care_team(world.a, f"Practitioner/{doctor}"))
    assert sees() == (404, False, False)  # a CareTeam link without a Consent: nothing
    granted = consent(world.a, f"Practitioner/{doctor}")
    cid = world.create(granted)
    assert sees() == (200, True, True)
    # withdrawal: the token is revoked, and a new one sees nothing from the next request on
    assert world.put(granted | {"id": cid, "status": "inactive"}).status_code == 200
    assert http.get(f"{world.fhir}/Observation/{obs}", headers=token).status_code == 401
    token = mint()
    assert sees() == (404, False, False)
    assert world.put(granted | {"id": cid, "status": "active"}).status_code == 200
    assert sees() == (200, True, True)
    assert http.delete(f"{world.fhir}/Consent/{cid}", headers=world.admin()).status_code == 204
    assert http.get(f"{world.fhir}/Observation/{obs}", headers=token).status_code == 401
    token = mint()
    assert sees() == (404, False, False)
    # B never consented: B's data stays hidden throughout
    theirs = world.ids[("Observation", "b")]
    assert http.get(f"{world.fhir}/Observation/{theirs}", headers=token).status_code == 404


def test_consent_through_an_organization_a_period_and_a_later_refusal(
    world: World, http: httpx.Client
) -> None:
    doctor = world.create({"resourceType": "Practitioner", "name": [{"family": "Org"}]})
    clinic = world.create({"resourceType": "Organization", "name": "Back clinic"})
    world.create(
        {
            "resourceType": "PractitionerRole",
            "active": True,
            "practitioner": {"reference": f"Practitioner/{doctor}"},
            "organization": {"reference": f"Organization/{clinic}"},
        }
    )
    token = bearer(world.mint("user/*.rs", role="practitioner", fhir_user=f"Practitioner/{doctor}"))
    goal = world.ids[("Goal", "a")]
    url = f"{world.fhir}/Goal/{goal}"
    # the CareTeam link through the organization the doctor belongs to
    world.create(care_team(world.a, f"Organization/{clinic}"))
    assert http.get(url, headers=token).status_code == 404
    expired = consent(
        world.a, f"Organization/{clinic}", period={"start": "2020-01-01", "end": "2021-01-01"}
    )
    world.create(expired)
    assert http.get(url, headers=token).status_code == 404  # outside the period
    world.create(consent(world.a, f"Organization/{clinic}", when="2026-02-01T00:00:00Z"))
    assert http.get(url, headers=token).status_code == 200  # the organization's consent
    refusal = consent(world.a, f"Organization/{clinic}", kind="deny", when="2026-03-01T00:00:00Z")
    world.create(refusal)
    # a later deny supersedes it: the doctor's token is revoked, a new one sees nothing
    assert http.get(url, headers=token).status_code == 401
    token = bearer(world.mint("user/*.rs", role="practitioner", fhir_user=f"Practitioner/{doctor}"))
    assert http.get(url, headers=token).status_code == 404


def test_a_clinician_cannot_read_audit_events_or_write_without_consent(
    world: World, http: httpx.Client
) -> None:
    stranger = world.as_("user-v1-read-stranger")
    assert http.get(f"{world.fhir}/AuditEvent", headers=stranger).status_code == 403
    writer = bearer(
        world.mint("user/*.cruds", role="practitioner", fhir_user=f"Practitioner/{world.stranger}")
    )
    created = http.post(
        f"{world.fhir}/Observation", json=body_for("Observation", world.a), headers=writer
    )
    assert created.status_code == 403


# -- what a patient may not change ------------------------------------------------------------------


def test_patients_cannot_change_identifiers_or_security_labels(
    world: World, http: httpx.Client
) -> None:
    a = world.as_("patient-v2-cruds")
    me = http.get(f"{world.fhir}/Patient/{world.a}", headers=a).json()
    changed_id = me | {"identifier": [{"system": "urn:cpr", "value": "0101010101"}]}
    response = http.put(f"{world.fhir}/Patient/{world.a}", json=changed_id, headers=a)
    assert response.status_code == 403, response.text
    labelled = me | {"meta": {"security": [{"system": "urn:x", "code": "R"}]}}
    assert http.put(f"{world.fhir}/Patient/{world.a}", json=labelled, headers=a).status_code == 403
    own_obs = body_for("Observation", world.a) | {
        "meta": {"security": [{"system": "urn:x", "code": "N"}]}
    }
    assert http.post(f"{world.fhir}/Observation", json=own_obs, headers=a).status_code == 403
    patch = [{"op": "add", "path": "/identifier", "value": [{"value": "x"}]}]
    response = http.patch(
        f"{world.fhir}/Patient/{world.a}",
        json=patch,
        headers={**a, "Content-Type": "application/json-patch+json"},
    )
    assert response.status_code == 403
    # nothing was written
    assert (
        http.get(f"{world.fhir}/Patient/{world.a}", headers=world.admin()).json().get("identifier")
        is None
    )


# -- --auth none ---------------------------------------------------------------------------------


def test_auth_none_refuses_to_bind_beyond_loopback(tmp_path: Any) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "fhir_server.cli",
            "serve",
            "--auth",
            "none",
            "--host",
            "0.0.0.0",
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "loopback" in result.stderr


def test_auth_none_serves_loopback_as_admin(smart: SmartEnv) -> None:
    from tests.conftest import drop_database, fresh_database_url, start_server, stop_server

    data = smart.data_dir / "auth-none"
    url = fresh_database_url(smart.data_dir, "authnone")
    server = start_server(url, data, SELFBACK_AUTH="none", SELFBACK_LOAD_CONTENT="0")
    try:
        created = httpx.post(f"{server.fhir}/Patient", json={"resourceType": "Patient"})
        assert created.status_code == 201
        assert httpx.get(f"{server.fhir}/AuditEvent").status_code == 200  # an admin
        assert "AUTHORIZATION IS OFF" in server.log.read_text()
    finally:
        stop_server(server)
        drop_database(url)


# -- audit ---------------------------------------------------------------------------------------


def test_decisions_reach_the_audit_trail(world: World, http: httpx.Client) -> None:
    """Refused and allowed decisions become AuditEvents (fhir_server.audit writes them in
    batches, a fraction of a second later)."""
    theirs = world.ids[("Observation", "b")]
    mine = world.ids[("Observation", "a")]
    a = world.as_("patient-v2-cruds")
    assert http.get(f"{world.fhir}/Observation/{theirs}", headers=a).status_code == 404
    assert http.get(f"{world.fhir}/Observation/{mine}", headers=a).status_code == 200
    system = world.as_("system-v2-cruds")
    deadline = time.monotonic() + 15
    found: dict[str, set[str]] = {}
    while time.monotonic() < deadline:
        for rid in (theirs, mine):
            bundle = http.get(
                f"{world.fhir}/AuditEvent",
                params={"entity": f"Observation/{rid}", "_count": "100"},
                headers=system,
            ).json()
            found[rid] = {e["resource"]["outcome"] for e in bundle.get("entry", [])}
        if "4" in found[theirs] and "0" in found[mine]:
            break
        time.sleep(0.3)
    assert "4" in found[theirs]  # the refusal (404) is a minor failure
    assert "0" in found[mine]  # the allowed read


# -- restricted searches of every shape answer, never 500 ----------------------------------------

TRICKY = [
    ("Observation", {"_include": "*"}),
    ("Observation", {"_revinclude": "*"}),
    (
        "Observation",
        {"_include:iterate": "Observation:subject", "_revinclude": "Provenance:target"},
    ),
    (
        "Patient",
        {"_has:Observation:subject:code": "x", "_revinclude:iterate": "Observation:subject"},
    ),
    ("Observation", {"subject.name": "x", "subject:Patient.birthdate": "ge2000"}),
    ("Observation", {"_sort": "-date", "_total": "accurate", "_count": "3"}),
    ("Observation", {"_summary": "count"}),
    ("Observation", {"_elements": "id,subject", "category:not": "survey"}),
    ("Observation", {"subject:missing": "true"}),
    ("", {"_type": "Observation,Patient,Questionnaire", "_id": "x,y"}),
    ("", {"_type": "Group,AuditEvent"}),
    ("Patient/x/*", {"_include": "*"}),
    ("Questionnaire", {"_revinclude": "QuestionnaireResponse:questionnaire"}),
    ("Group", {"member.name": "x"}),
]


@pytest.mark.parametrize("kind", ["patient-v2-cruds", "user-v2-consented", "user-v1-read-stranger"])
@pytest.mark.parametrize(("path", "params"), TRICKY)
def test_restricted_searches_never_fail(
    world: World, http: httpx.Client, kind: str, path: str, params: dict[str, str]
) -> None:
    response = http.get(f"{world.fhir}/{path}", params=params, headers=world.as_(kind))
    assert response.status_code in (200, 400, 403), response.text
    if response.status_code == 200:
        bundle = response.json()
        theirs = {world.ids[(t, "b")] for t in ("Observation", "Goal", "Patient")}
        assert not theirs & {e.get("resource", {}).get("id") for e in bundle.get("entry", [])}
