"""Refresh tokens: only with offline_access/online_access, rotated on every use, bound to
their client, narrowing allowed, replay revokes (SAL-60..62, INF-R1, INF-R2, INF-G4)."""

from __future__ import annotations

import httpx
import pytest

from tests.auth.conftest import SmartEnv
from tests.auth.smart_app import check_token_response

pytestmark = pytest.mark.db


def is_inactive(smart: SmartEnv, token: str) -> bool:
    answer = httpx.post(
        smart.url + "/auth/introspect",
        data={"token": token},
        headers={"Authorization": "Bearer " + smart.backend_access_token("ehr", "system/*.rs")},
    )
    return answer.json() == {"active": False}


@pytest.mark.parametrize("ask", ["no scope", "the full granted scope"])
def test_INF_R1_R2_refresh(smart: SmartEnv, ask: str) -> None:
    body, patient = smart.patient_tokens()
    app = smart.apps["patient"]
    scope = None if ask == "no scope" else body["scope"]
    response = app.refresh(smart.token_url, body["refresh_token"], scope)
    refreshed = check_token_response(response)  # INF-R2: fields, types, no-store headers
    assert set(refreshed["scope"].split()) <= set(body["scope"].split())
    assert set(refreshed["scope"].split()) == set(body["scope"].split())
    assert refreshed["patient"] == patient
    # Rotation: a new refresh token, and the old one is spent.
    assert refreshed["refresh_token"] and refreshed["refresh_token"] != body["refresh_token"]
    assert refreshed["access_token"] != body["access_token"]


def test_SAL_61_refresh_may_narrow_but_not_widen(smart: SmartEnv) -> None:
    body, _ = smart.patient_tokens("launch/patient openid offline_access patient/*.rs")
    app = smart.apps["patient"]
    wider = app.refresh(smart.token_url, body["refresh_token"], "offline_access patient/*.cruds")
    assert wider.status_code == 400 and wider.json()["error"] == "invalid_scope"
    narrower = check_token_response(
        app.refresh(smart.token_url, body["refresh_token"], "offline_access patient/Observation.rs")
    )
    assert narrower["scope"] == "offline_access patient/Observation.rs"


def test_RFC9700_a_replayed_refresh_token_revokes_the_grant(smart: SmartEnv) -> None:
    body, _ = smart.patient_tokens()
    app = smart.apps["patient"]
    rotated = check_token_response(app.refresh(smart.token_url, body["refresh_token"]))
    replay = app.refresh(smart.token_url, body["refresh_token"])
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    # The thief's replay ends the legitimate chain too.
    assert app.refresh(smart.token_url, rotated["refresh_token"]).status_code == 400
    assert is_inactive(smart, rotated["access_token"])


def test_SAL_60_refresh_tokens_are_bound_to_their_client(smart: SmartEnv) -> None:
    body, _ = smart.patient_tokens()
    other = smart.apps["clinician"].refresh(smart.token_url, body["refresh_token"])
    assert other.status_code == 400 and other.json()["error"] == "invalid_grant"
    # ... and the legitimate client can still use it (a wrong client proves no theft).
    check_token_response(smart.apps["patient"].refresh(smart.token_url, body["refresh_token"]))


def test_pitfall_10_public_client_may_refresh_without_client_id(smart: SmartEnv) -> None:
    body, _ = smart.patient_tokens()
    response = httpx.post(
        smart.token_url,
        data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"]},
    )
    check_token_response(response)


def test_SAL_44_no_refresh_token_without_offline_or_online_access(smart: SmartEnv) -> None:
    body, _ = smart.patient_tokens("launch/patient openid patient/*.rs")
    assert "refresh_token" not in body
    online, _ = smart.patient_tokens("launch/patient online_access patient/*.rs")
    assert online["refresh_token"]


@pytest.mark.parametrize("token", ["a-random-refresh-token", "", "x" * 600])
def test_INF_G4_a_random_refresh_token_is_refused(smart: SmartEnv, token: str) -> None:
    response = smart.apps["patient"].refresh(smart.token_url, token)
    assert response.status_code in (400, 401)
    assert response.json()["error"] in ("invalid_grant", "invalid_request", "invalid_client")


def test_confidential_clients_must_authenticate_to_refresh(smart: SmartEnv) -> None:
    from tests.auth.test_auth_ehr_launch import ehr_launch

    _, body = ehr_launch(smart)
    app = smart.apps["clinician"]
    unauthenticated = httpx.post(
        smart.token_url,
        data={
            "grant_type": "refresh_token",
            "refresh_token": body["refresh_token"],
            "client_id": app.client_id,
        },
    )
    assert unauthenticated.status_code in (400, 401)
    assert unauthenticated.json()["error"] == "invalid_client"
    wrong_secret = httpx.post(
        smart.token_url,
        data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"]},
        auth=(app.client_id, "wrong"),
    )
    assert wrong_secret.status_code == 401
    check_token_response(app.refresh(smart.token_url, body["refresh_token"]))
