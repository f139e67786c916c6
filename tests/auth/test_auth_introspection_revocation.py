"""Introspection (RFC 7662 + SMART fields) and revocation (RFC 7009): INF-I1..I4, SAL-70..73,
INF-G5."""

from __future__ import annotations

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.auth.conftest import SmartEnv
from tests.auth.smart_app import bearer

pytestmark = pytest.mark.db


def introspect(smart: SmartEnv, token: str, **kwargs: object) -> httpx.Response:
    return httpx.post(smart.url + "/auth/introspect", data={"token": token}, **kwargs)  # type: ignore[arg-type]


def test_INF_I1_I3_active_token_with_smart_fields(smart: SmartEnv) -> None:
    body, patient = smart.patient_tokens()
    response = introspect(smart, body["access_token"], headers=bearer(body["access_token"]))
    assert response.status_code == 200  # INF-I1
    answer = response.json()
    assert answer["active"] is True
    assert answer["client_id"] == smart.apps["patient"].client_id
    assert set(answer["scope"].split()) == set(body["scope"].split())
    assert answer["exp"] >= __import__("time").time() - 600
    assert answer["patient"] == patient == body["patient"]
    id_token = jwt.decode(
        body["id_token"],
        KeySet.import_key_set(httpx.get(smart.url + "/auth/jwks").json()),
        algorithms=["RS256"],
    ).claims
    assert answer["iss"] == id_token["iss"] and answer["sub"] == id_token["sub"]
    assert answer["fhirUser"] == id_token["fhirUser"]
    assert response.headers["cache-control"] == "no-store"


def test_INF_I2_I4_invalid_token_is_inactive(smart: SmartEnv) -> None:
    body, _ = smart.patient_tokens()
    response = introspect(smart, "invalid_token_value", headers=bearer(body["access_token"]))
    assert response.status_code == 200
    assert response.json() == {"active": False}


def test_SAL_71_introspection_needs_a_caller(smart: SmartEnv) -> None:
    body, _ = smart.patient_tokens()
    anonymous = introspect(smart, body["access_token"])
    assert anonymous.status_code in (400, 401) and anonymous.json()["error"] == "invalid_client"
    bad_bearer = introspect(smart, body["access_token"], headers=bearer("not-a-token"))
    assert bad_bearer.status_code == 401 and bad_bearer.json()["error"] == "invalid_token"
    assert "Bearer" in bad_bearer.headers["www-authenticate"]


def test_a_client_sees_only_its_own_tokens(smart: SmartEnv) -> None:
    body, _ = smart.patient_tokens()
    clinician = smart.apps["clinician"]
    response = introspect(smart, body["access_token"], auth=(clinician.client_id, clinician.secret))
    assert response.json() == {"active": False}


def test_refresh_tokens_introspect_too(smart: SmartEnv) -> None:
    body, _ = smart.patient_tokens()
    answer = httpx.post(
        smart.url + "/auth/introspect",
        data={"token": body["refresh_token"], "token_type_hint": "refresh_token"},
        headers=bearer(body["access_token"]),
    ).json()
    assert answer["active"] is True and answer["token_type"] == "refresh_token"


@pytest.mark.parametrize("which", ["access_token", "refresh_token"])
def test_INF_G5_SAL_73_after_revocation_both_tokens_fail(smart: SmartEnv, which: str) -> None:
    body, _ = smart.patient_tokens()
    app = smart.apps["patient"]
    watcher = smart.backend_access_token("ehr", "system/*.rs")
    revoked = httpx.post(
        smart.url + "/auth/revoke",
        data={"token": body[which], "token_type_hint": which, "client_id": app.client_id},
    )
    assert revoked.status_code == 200
    assert (
        introspect(smart, body["access_token"], headers=bearer(body["access_token"])).status_code
        == 401
    )
    assert introspect(smart, body["access_token"], headers=bearer(watcher)).json() == {
        "active": False
    }
    refresh = app.refresh(smart.token_url, body["refresh_token"])
    assert refresh.status_code in (400, 401)


def test_RFC7009_unknown_or_foreign_tokens_answer_200_and_stay(smart: SmartEnv) -> None:
    body, _ = smart.patient_tokens()
    clinician = smart.apps["clinician"]
    foreign = httpx.post(
        smart.url + "/auth/revoke",
        data={"token": body["access_token"]},
        auth=(clinician.client_id, clinician.secret),
    )
    assert foreign.status_code == 200
    assert (
        introspect(smart, body["access_token"], headers=bearer(body["access_token"])).json()[
            "active"
        ]
        is True
    )
    unknown = httpx.post(
        smart.url + "/auth/revoke",
        data={"token": "nothing", "client_id": smart.apps["patient"].client_id},
    )
    assert unknown.status_code == 200
    missing = httpx.post(
        smart.url + "/auth/revoke", data={"client_id": smart.apps["patient"].client_id}
    )
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"
