"""Bad input to the authorization server gets an OAuth error (RFC 6749 5.2) or an error
page, never a 500: Hypothesis sends arbitrary parameters to every /auth endpoint."""

from __future__ import annotations

from urllib.parse import urlencode

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.auth.conftest import SmartEnv
from tests.auth.smart_app import Browser, forms_of

pytestmark = pytest.mark.db

NAMES = st.sampled_from(
    [
        "grant_type",
        "code",
        "redirect_uri",
        "client_id",
        "client_secret",
        "code_verifier",
        "refresh_token",
        "scope",
        "client_assertion_type",
        "client_assertion",
        "token",
        "token_type_hint",
        "response_type",
        "state",
        "aud",
        "launch",
        "code_challenge",
        "code_challenge_method",
        "nonce",
        "prompt",
        "ui_locales",
        "flow",
        "action",
        "activation_code",
        "phone",
        "otp",
        "username",
        "password",
        "patient",
        "locale",
    ]
)
VALUES = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "authorization_code",
            "refresh_token",
            "client_credentials",
            "code",
            "S256",
            "plain",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "a.b.c",
            "eyJhbGciOiJub25lIn0.e30.",
            "patient/*.rs",
            "launch",
            "openid",
            "approve",
            "deny",
            "otp",
            "phone",
            "activate",
            "none",
            "login",
            "\x00",
            "%",
            "+4512345678",
        ]
    ),
)
PAIRS = st.lists(st.tuples(NAMES, VALUES), max_size=12)
SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def assert_clean(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text[:2000]
    if response.status_code >= 400 and response.headers.get("content-type", "").startswith(
        "application/json"
    ):
        assert "error" in response.json()


@SETTINGS
@given(pairs=PAIRS, path=st.sampled_from(["/auth/token", "/auth/introspect", "/auth/revoke"]))
def test_token_endpoints_never_500(
    smart: SmartEnv, pairs: list[tuple[str, str]], path: str
) -> None:
    body = urlencode(pairs).encode()
    response = httpx.post(
        smart.url + path,
        content=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_clean(response)
    assert response.status_code != 200 or path != "/auth/token"


@SETTINGS
@given(pairs=PAIRS, method=st.sampled_from(["GET", "POST"]))
def test_authorize_never_500(smart: SmartEnv, pairs: list[tuple[str, str]], method: str) -> None:
    app = smart.apps["patient"]
    pairs = [("client_id", app.client_id), ("redirect_uri", app.redirect_uri), *pairs]
    if method == "GET":
        response = httpx.get(smart.authorize_url + "?" + urlencode(pairs))
    else:
        response = httpx.post(
            smart.authorize_url,
            content=urlencode(pairs),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    assert response.status_code < 500, response.text[:2000]


@SETTINGS
@given(pairs=PAIRS)
def test_signin_steps_never_500(smart: SmartEnv, pairs: list[tuple[str, str]]) -> None:
    browser = Browser()
    smart.start(browser, "patient", "launch/patient openid patient/*.rs")
    handle = dict(forms_of(browser.page.text).forms[-1].fields)["flow"]
    response = browser.post(smart.authorize_url, [("flow", handle), *pairs])
    assert response.status_code < 500, response.text[:2000]
    browser.close()


@SETTINGS
@given(
    body=st.dictionaries(
        NAMES
        | st.sampled_from(
            ["fhirUser", "encounter", "fhirContext", "need_patient_banner", "intent"]
        ),
        VALUES | st.lists(VALUES, max_size=2) | st.booleans(),
        max_size=6,
    )
)
def test_launch_contexts_never_500(smart: SmartEnv, body: dict) -> None:
    token = smart.backend_access_token("ehr", "__ehr-launch")
    response = httpx.post(
        smart.url + "/auth/launch", json=body, headers={"Authorization": f"Bearer {token}"}
    )
    assert_clean(response)
