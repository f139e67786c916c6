"""SMART Backend Services: client credentials with private_key_jwt, RS384 and ES384, keys
inline or by URL, and every way an assertion can be wrong (SAL-21/22, BDS-02/03,
INF-B1..B3, INF-K11)."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

from tests.auth.conftest import SmartEnv
from tests.auth.smart_app import ASSERTION_TYPE, BackendKey, backend_token, bearer

pytestmark = pytest.mark.db


def check_backend_token(response: httpx.Response, scope: str) -> dict:
    """INF-B3 / BDS-03."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"].lower() == "bearer" and body["access_token"]
    assert isinstance(body["expires_in"], int) and 0 < body["expires_in"] <= 300
    assert body["scope"] == scope
    assert "refresh_token" not in body
    assert response.headers["cache-control"] == "no-store"
    return body


@pytest.mark.parametrize("name", ["ehr", "es384", "by-url"])
def test_INF_B3_backend_token_with_rs384_es384_and_jwks_url(smart: SmartEnv, name: str) -> None:
    client_id, key = smart.backends[name]
    assert key.alg == ("ES384" if name == "es384" else "RS384")
    body = check_backend_token(
        backend_token(smart.token_url, client_id, key, "system/*.rs"), "system/*.rs"
    )
    # The token works for the FHIR API and introspects as the client's, with no user.
    answer = httpx.post(
        smart.url + "/auth/introspect",
        data={"token": body["access_token"]},
        headers=bearer(body["access_token"]),
    ).json()
    assert answer["active"] is True and answer["client_id"] == client_id and "sub" not in answer


def test_INF_K11_v1_system_read_is_accepted_and_answered_in_v1(smart: SmartEnv) -> None:
    client_id, key = smart.backends["ehr"]
    check_backend_token(
        backend_token(smart.token_url, client_id, key, "system/*.read"), "system/*.read"
    )


def test_BDS_02_granted_scope_is_within_the_registration(smart: SmartEnv) -> None:
    client_id, key = smart.backends["es384"]
    response = backend_token(smart.token_url, client_id, key, "system/*.cruds patient/*.rs openid")
    body = response.json()
    assert set(body["scope"].split()) == {"system/Observation.cruds", "system/*.rs"}
    nothing = backend_token(smart.token_url, client_id, key, "system/Patient.c")
    assert nothing.status_code == 400 and nothing.json()["error"] == "invalid_scope"


def test_INF_B1_bad_grant_type_and_bad_assertion_type(smart: SmartEnv) -> None:
    client_id, key = smart.backends["ehr"]
    assertion = key.assertion(client_id, smart.token_url)
    bad_grant = httpx.post(
        smart.token_url,
        data={
            "grant_type": "not_a_grant",
            "scope": "system/*.rs",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
        },
    )
    assert bad_grant.status_code == 400 and bad_grant.json()["error"] == "unsupported_grant_type"
    bad_type = httpx.post(
        smart.token_url,
        data={
            "grant_type": "client_credentials",
            "scope": "system/*.rs",
            "client_assertion_type": "not_an_assertion_type",
            "client_assertion": assertion,
        },
    )
    assert bad_type.status_code in (400, 401) and bad_type.json()["error"] == "invalid_client"


def _other_key() -> BackendKey:
    return BackendKey.rs384()


@pytest.mark.parametrize(
    "case",
    [
        "bad signature",
        "wrong aud",
        "expired",
        "exp more than 5 minutes ahead",
        "unknown kid",
        "no kid",
        "RS256",
        "no jti",
        "iss differs from sub",
        "unknown client",
        "foreign jku",
        "not a JWT",
    ],
)
def test_INF_B2_every_bad_assertion_is_invalid_client(smart: SmartEnv, case: str) -> None:
    client_id, key = smart.backends["ehr"]
    now = int(time.time())
    overrides: dict = {
        "wrong aud": {"aud": smart.url + "/auth/other"},
        "expired": {"exp": now - 120, "iat": now - 400},
        "exp more than 5 minutes ahead": {"exp": now + 3600},
        "unknown kid": {"header": {"kid": "no-such-kid"}},
        "no jti": {"jti": None},
        "iss differs from sub": {"iss": "someone-else"},
        "unknown client": {"iss": "nobody", "sub": "nobody"},
        "foreign jku": {"header": {"jku": "https://evil.example/jwks.json"}},
    }.get(case, {})
    if case == "bad signature":
        signer = BackendKey(key.kid, "RS384", _other_key().key)
        assertion = signer.assertion(client_id, smart.token_url)
    elif case == "no kid":
        assertion = key.assertion(client_id, smart.token_url, header={"kid": None})
    elif case == "RS256":
        from joserfc.jwk import RSAKey

        material = {k: v for k, v in key.key.as_dict(private=True).items() if k != "alg"}
        assertion = BackendKey(key.kid, "RS256", RSAKey.import_key(material)).assertion(
            client_id, smart.token_url
        )
    elif case == "not a JWT":
        assertion = "not.a.jwt"
    else:
        assertion = key.assertion(client_id, smart.token_url, **overrides)
    response = httpx.post(
        smart.token_url,
        data={
            "grant_type": "client_credentials",
            "scope": "system/*.rs",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
        },
    )
    assert response.status_code in (400, 401), (case, response.text)
    assert response.json()["error"] == "invalid_client", case


def test_INF_B2_a_replayed_jti_is_refused(smart: SmartEnv) -> None:
    client_id, key = smart.backends["ehr"]
    assertion = key.assertion(client_id, smart.token_url, jti=uuid.uuid4().hex)
    data = {
        "grant_type": "client_credentials",
        "scope": "system/*.rs",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
    }
    assert httpx.post(smart.token_url, data=data).status_code == 200
    replay = httpx.post(smart.token_url, data=data)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_client"


def test_exp_of_exactly_five_minutes_is_accepted(smart: SmartEnv) -> None:
    client_id, key = smart.backends["es384"]
    response = backend_token(
        smart.token_url, client_id, key, "system/*.rs", exp=int(time.time()) + 300
    )
    check_backend_token(response, "system/*.rs")


def test_SAL_22_key_sets_by_url_follow_the_clients_rotation(smart: SmartEnv) -> None:
    assert smart.jwks_server is not None
    client_id, old = smart.backends["by-url"]
    check_backend_token(
        backend_token(smart.token_url, client_id, old, "system/*.rs"), "system/*.rs"
    )
    new = BackendKey.rs384()
    smart.jwks_server.jwks = {"keys": [old.public(), new.public()]}
    # An unknown kid makes the server fetch the set again (at most every 10 s).
    deadline = time.monotonic() + 15
    while True:
        response = backend_token(smart.token_url, client_id, new, "system/*.rs")
        if response.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(1)
    check_backend_token(response, "system/*.rs")
    smart.backends["by-url"] = (client_id, new)


def test_client_credentials_needs_an_asymmetric_client(smart: SmartEnv) -> None:
    app = smart.apps["clinician"]
    response = httpx.post(
        smart.token_url,
        data={"grant_type": "client_credentials", "scope": "system/*.rs"},
        auth=(app.client_id, app.secret),
    )
    assert response.status_code in (400, 401) and response.json()["error"] in (
        "invalid_client",
        "unauthorized_client",
    )


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", b'{"grant_type": "client_credentials"}'),
        ("application/x-www-form-urlencoded", b"\xff\xfe"),
        ("application/x-www-form-urlencoded", b"a=" + b"x" * 70000),
    ],
)
def test_malformed_token_requests_are_oauth_errors_not_500(
    smart: SmartEnv, content_type: str, body: bytes
) -> None:
    response = httpx.post(smart.token_url, content=body, headers={"Content-Type": content_type})
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"
