"""Standalone launch, end to end over HTTP: a patient onboards (activation code -> phone ->
SMS code read from the outbox), consents, and the app exchanges the code with PKCE; the
returning login; OpenID Connect; and the authorize and token negatives Inferno and the
ONC g10 kit send (INF-S*, INF-O*, INF-G1..G3, INF-G10, SAL-10..15)."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from sqlalchemy import create_engine, update

from fhir_server.auth.tables import auth_code
from fhir_server.config import normalise_database_url
from tests.auth.conftest import CLINICIAN_PASSWORD, STANDALONE_SCOPE, SmartEnv
from tests.auth.smart_app import (
    Browser,
    bearer,
    check_token_response,
    form_url,
    new_phone,
    pkce,
    redirect_params,
)

pytestmark = pytest.mark.db


def test_INF_S2_S4_S5_standalone_launch_with_onboarding(smart: SmartEnv) -> None:
    patient = smart.new_patient()
    browser = Browser()
    verifier, state = smart.onboard(browser, patient, new_phone())
    assert "Allow access?" in browser.page.text
    params = redirect_params(browser.press("approve"))
    assert params["state"] == state and params["code"] and "error" not in params  # INF-S2
    response = smart.apps["patient"].exchange(smart.token_url, params["code"], verifier)
    body = check_token_response(response)
    assert set(body["scope"].split()) == set(STANDALONE_SCOPE.split())
    assert body["patient"] == patient  # SAL-16: patient/ scopes come with a patient
    assert body["need_patient_banner"] is True
    assert body["smart_style_url"].startswith(smart.url)
    assert body["refresh_token"]  # offline_access
    assert body["id_token"]
    # The token reads the patient's own record (INF-G7 for the standalone context).
    assert (
        httpx.get(
            f"{smart.fhir}/Patient/{patient}", headers=bearer(body["access_token"])
        ).status_code
        == 200
    )


def test_returning_patient_signs_in_with_phone_and_sms_code(smart: SmartEnv) -> None:
    patient, phone = smart.new_patient(), new_phone()
    first = Browser()
    verifier, state = smart.onboard(first, patient, phone)
    smart.approve(first, state)
    again = Browser()
    verifier, state = smart.sign_in(again, phone)
    code = smart.approve(again, state)
    body = check_token_response(smart.apps["patient"].exchange(smart.token_url, code, verifier))
    assert body["patient"] == patient


def test_returning_login_with_an_unknown_phone_sends_nothing_and_reveals_nothing(
    smart: SmartEnv,
) -> None:
    from tests.auth.smart_app import outbox_lines

    browser = Browser()
    smart.start(browser, "patient", STANDALONE_SCOPE)
    before = outbox_lines(smart.data_dir)
    page = browser.press("phone", phone=new_phone())
    assert page.status_code == 200 and "Enter the code" in page.text  # same page as a real phone
    assert outbox_lines(smart.data_dir) == before
    assert browser.press("otp", otp="123456").status_code == 400


def test_INF_S3_public_client_gets_cors_on_the_token_endpoint(smart: SmartEnv) -> None:
    patient = smart.new_patient()
    browser = Browser()
    verifier, state = smart.onboard(browser, patient, new_phone())
    code = smart.approve(browser, state)
    app = smart.apps["patient"]
    response = httpx.post(
        smart.token_url,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": app.redirect_uri,
            "client_id": app.client_id,
            "code_verifier": verifier,
        },
        headers={"Origin": "https://patient-app.example"},
    )
    check_token_response(response)
    assert response.headers["access-control-allow-origin"] == "https://patient-app.example"
    stranger = httpx.post(
        smart.token_url, data={"grant_type": "x"}, headers={"Origin": "https://evil.example"}
    )
    assert "access-control-allow-origin" not in stranger.headers
    preflight = httpx.options(
        smart.token_url,
        headers={"Origin": "https://patient-app.example", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "https://patient-app.example"


def test_SAL_10_authorize_accepts_post(smart: SmartEnv) -> None:
    patient, phone = smart.new_patient(), new_phone()
    first = Browser()
    smart.onboard(first, patient, phone)
    browser = Browser()
    verifier, challenge = pkce()
    params = smart.apps["patient"].authorize_params(
        smart.fhir, STANDALONE_SCOPE, challenge=challenge, state="s-post"
    )
    page = browser.post(smart.authorize_url, params)
    assert page.status_code == 200 and "flow" in page.text
    from tests.auth.smart_app import outbox_lines, sms_code

    before = outbox_lines(smart.data_dir)
    browser.press("phone", phone=phone)
    browser.press("otp", otp=sms_code(smart.data_dir, phone, before))
    code = smart.approve(browser, "s-post")
    check_token_response(smart.apps["patient"].exchange(smart.token_url, code, verifier))


# -- OpenID Connect ---------------------------------------------------------------------------------


def test_INF_O1_to_O5_id_token_verifies_against_the_jwks(smart: SmartEnv) -> None:
    patient = smart.new_patient()
    browser = Browser()
    code_ = smart.activation_code(patient)
    phone = new_phone()
    verifier, challenge = pkce()
    params = smart.apps["patient"].authorize_params(
        smart.fhir, STANDALONE_SCOPE, challenge=challenge, state="s-oidc", nonce="n-0S6_WzA2Mj"
    )
    browser.get(form_url(smart.authorize_url, params))
    browser.press("activate", activation_code=code_)
    browser.press("phone", phone=phone)
    from tests.auth.smart_app import sms_code

    browser.press("otp", otp=sms_code(smart.data_dir, phone))
    code = smart.approve(browser, "s-oidc")
    body = check_token_response(smart.apps["patient"].exchange(smart.token_url, code, verifier))

    config = httpx.get(smart.fhir + "/.well-known/openid-configuration").json()
    jwks = httpx.get(config["jwks_uri"]).json()
    rsa = [k for k in jwks["keys"] if k["kty"] == "RSA"]
    assert rsa  # INF-O3
    token = jwt.decode(
        body["id_token"], KeySet.import_key_set(jwks), algorithms=["RS256"]
    )  # INF-O1, O5
    header = token.header
    assert header["alg"] == "RS256"  # INF-O4
    assert header["kid"] in {k["kid"] for k in rsa}
    claims = token.claims
    assert claims["iss"] == config["issuer"] == smart.fhir
    assert claims["aud"] == smart.apps["patient"].client_id
    assert claims["exp"] > time.time() - 60 and isinstance(claims["iat"], int)
    assert 0 < len(claims["sub"]) <= 255
    assert claims["nonce"] == "n-0S6_WzA2Mj"
    assert claims["fhirUser"] == f"{smart.fhir}/Patient/{patient}"


def test_INF_O6_fhirUser_is_readable(smart: SmartEnv) -> None:
    body, patient = smart.patient_tokens()
    claims = jwt.decode(
        body["id_token"],
        KeySet.import_key_set(httpx.get(smart.url + "/auth/jwks").json()),
        algorithms=["RS256"],
    ).claims
    fhir_user = claims["fhirUser"]
    resource_type = urlsplit(fhir_user).path.split("/")[-2]
    assert resource_type in ("Patient", "Practitioner", "RelatedPerson", "Person")
    response = httpx.get(fhir_user, headers=bearer(body["access_token"]))
    assert response.status_code == 200 and response.json()["resourceType"] == resource_type


# -- the authorize negatives ------------------------------------------------------------------------


def authorize(smart: SmartEnv, **overrides: str) -> httpx.Response:
    _, challenge = pkce()
    params = smart.apps["patient"].authorize_params(
        smart.fhir, STANDALONE_SCOPE, challenge=challenge, state="st"
    )
    params.update(overrides)
    params = {k: v for k, v in params.items() if v != "<absent>"}
    return httpx.get(form_url(smart.authorize_url, params))


def test_INF_G1_wrong_aud_gets_no_code(smart: SmartEnv) -> None:
    response = authorize(smart, aud="https://inferno.healthit.gov/invalid_aud")
    params = redirect_params(response)
    assert "code" not in params and params["error"] == "invalid_request" and params["state"] == "st"
    assert "code" not in redirect_params(authorize(smart, aud="<absent>"))


@pytest.mark.parametrize(
    "overrides",
    [
        {"code_challenge": "<absent>"},
        {"code_challenge_method": "<absent>"},  # would mean plain
        {"code_challenge_method": "plain"},
        {"code_challenge": "short"},
    ],
)
def test_SAL_13_pkce_S256_is_required_at_authorize(
    smart: SmartEnv, overrides: dict[str, str]
) -> None:
    params = redirect_params(authorize(smart, **overrides))
    assert params["error"] == "invalid_request" and "code" not in params and params["state"] == "st"


@pytest.mark.parametrize(
    "overrides",
    [
        {"client_id": "no-such-client"},
        {"client_id": "<absent>"},
        {"redirect_uri": "https://evil.example/callback"},
        {"redirect_uri": "https://patient-app.example/callback/extra"},
    ],
)
def test_SAL_15_bad_client_or_redirect_uri_shows_a_page_and_never_redirects(
    smart: SmartEnv, overrides: dict[str, str]
) -> None:
    response = authorize(smart, **overrides)
    assert response.status_code == 400
    assert "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html")


def test_SAL_15_other_errors_redirect_with_state(smart: SmartEnv) -> None:
    params = redirect_params(authorize(smart, response_type="token"))
    assert params["error"] == "unsupported_response_type" and params["state"] == "st"
    params = redirect_params(authorize(smart, scope="system/*.rs"))
    assert params["error"] == "invalid_scope" and params["state"] == "st"
    params = redirect_params(authorize(smart, launch="not-a-launch"))
    assert params["error"] == "invalid_request"


def test_SAL_15_deny_redirects_access_denied(smart: SmartEnv) -> None:
    browser = Browser()
    _, state = smart.onboard(browser, smart.new_patient(), new_phone())
    params = redirect_params(browser.press("deny"))
    assert params == {"error": "access_denied", "state": state} | {
        k: v for k, v in params.items() if k == "error_description"
    }


@pytest.fixture
def fresh_code(smart: SmartEnv) -> tuple[str, str, str]:
    """(code, verifier, challenge) of a consented standalone launch, not yet exchanged."""
    patient = smart.new_patient()
    browser = Browser()
    code_ = smart.activation_code(patient)
    verifier, challenge = pkce()
    browser.get(
        form_url(
            smart.authorize_url,
            smart.apps["patient"].authorize_params(
                smart.fhir, STANDALONE_SCOPE, challenge=challenge, state="s"
            ),
        )
    )
    phone = new_phone()
    browser.press("activate", activation_code=code_)
    browser.press("phone", phone=phone)
    from tests.auth.smart_app import sms_code

    browser.press("otp", otp=sms_code(smart.data_dir, phone))
    return smart.approve(browser, "s"), verifier, challenge


def test_INF_G2_code_verifier_absent_empty_wrong_or_the_challenge_is_refused(
    smart: SmartEnv, fresh_code: tuple[str, str, str]
) -> None:
    code, verifier, challenge = fresh_code
    app = smart.apps["patient"]
    for wrong in (None, "", pkce()[0], challenge):
        response = app.exchange(smart.token_url, code, wrong)
        assert response.status_code in (400, 401), (wrong, response.text)
        assert response.json()["error"] in ("invalid_request", "invalid_grant")
    # Failed verifiers do not burn the code: the right one still works once.
    check_token_response(app.exchange(smart.token_url, code, verifier))


def test_INF_G3_bad_code_and_wrong_client_are_refused(
    smart: SmartEnv, fresh_code: tuple[str, str, str]
) -> None:
    code, verifier, _ = fresh_code
    app = smart.apps["patient"]
    bad = app.exchange(smart.token_url, "BAD_CODE", verifier)
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_grant"
    wrong_client = app.exchange(smart.token_url, code, verifier, client_id="BAD_CLIENT_ID")
    assert (
        wrong_client.status_code in (400, 401) and wrong_client.json()["error"] == "invalid_client"
    )
    other_app = smart.apps["clinician"].exchange(smart.token_url, code, verifier)
    assert other_app.status_code == 400  # the code is bound to the client it was issued to
    wrong_redirect = httpx.post(
        smart.token_url,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "client_id": app.client_id,
            "code_verifier": verifier,
            "redirect_uri": "https://patient-app.example/other",
        },
    )
    assert wrong_redirect.status_code == 400  # SAL-20
    check_token_response(app.exchange(smart.token_url, code, verifier))


def test_SAL_14_a_reused_code_is_refused_and_revokes_its_tokens(
    smart: SmartEnv, fresh_code: tuple[str, str, str]
) -> None:
    code, verifier, _ = fresh_code
    app = smart.apps["patient"]
    first = check_token_response(app.exchange(smart.token_url, code, verifier))
    second = app.exchange(smart.token_url, code, verifier)
    assert second.status_code == 400 and second.json()["error"] == "invalid_grant"
    introspected = httpx.post(
        smart.url + "/auth/introspect",
        data={"token": first["access_token"]},
        headers=bearer(smart.backend_access_token("ehr", "system/*.rs")),
    )
    assert introspected.json() == {"active": False}
    assert app.refresh(smart.token_url, first["refresh_token"]).status_code == 400


def test_SAL_14_codes_expire_after_a_minute(
    smart: SmartEnv, fresh_code: tuple[str, str, str]
) -> None:
    code, verifier, _ = fresh_code
    # Age the code by a minute in the database instead of sleeping through it.
    engine = create_engine(normalise_database_url(smart.database_url))
    with engine.begin() as conn:
        conn.execute(
            update(auth_code)
            .values(expires_at=int(time.time()) - 1)
            .where(auth_code.c.used_at.is_(None))
        )
    engine.dispose()
    response = smart.apps["patient"].exchange(smart.token_url, code, verifier)
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


def test_INF_G10_unticked_scopes_are_not_granted(smart: SmartEnv) -> None:
    scope = (
        "launch/patient openid fhirUser patient/Observation.rs patient/Condition.rs patient/Goal.rs"
    )
    browser = Browser()
    verifier, state = smart.onboard(browser, smart.new_patient(), new_phone(), scope)
    assert "patient/Condition.rs" in browser.checkboxes()
    code = smart.approve(browser, state, untick=("patient/Condition.rs",))
    body = check_token_response(smart.apps["patient"].exchange(smart.token_url, code, verifier))
    granted = body["scope"].split()
    assert "patient/Condition.rs" not in granted
    assert {"patient/Observation.rs", "patient/Goal.rs"} <= set(granted)


def test_SAL_43_scope_never_exceeds_the_client_or_the_role(smart: SmartEnv) -> None:
    scope = "launch/patient openid patient/*.rs user/*.rs system/*.rs __ehr-launch"
    body, _ = smart.patient_tokens(scope)
    assert set(body["scope"].split()) == {"launch/patient", "openid", "patient/*.rs"}
    assert "refresh_token" not in body  # SAL-44: no offline_access, no refresh token


def test_pages_speak_danish(smart: SmartEnv) -> None:
    browser = Browser()
    smart.start(browser, "patient", STANDALONE_SCOPE, ui_locales="da")
    assert '<html lang="da">' in browser.page.text and "Aktiveringskode" in browser.page.text
    english = browser.press("locale", locale="en")
    assert '<html lang="en">' in english.text and "Activation code" in english.text
    by_header = Browser(**{"Accept-Language": "da-DK,da;q=0.9,en;q=0.5"})
    smart.start(by_header, "patient", STANDALONE_SCOPE)
    assert "Log ind" in by_header.page.text
    wrong = by_header.press("activate", activation_code="XXXX-XXXX-XXXX")
    assert wrong.status_code == 400 and "Aktiveringskoden er ikke gyldig" in wrong.text


def test_pages_work_without_javascript_and_cannot_be_framed(smart: SmartEnv) -> None:
    browser = Browser()
    smart.start(browser, "patient", STANDALONE_SCOPE)
    page = browser.page
    assert "<script" not in page.text.lower()
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"


def test_a_signin_handle_without_its_browser_cookie_is_refused(smart: SmartEnv) -> None:
    browser = Browser()
    smart.start(browser, "patient", STANDALONE_SCOPE)
    from tests.auth.smart_app import forms_of

    handle = dict(forms_of(browser.page.text).forms[-1].fields)["flow"]
    stolen = httpx.post(
        smart.authorize_url, data={"flow": handle, "action": "phone", "phone": new_phone()}
    )
    assert stolen.status_code == 400 and "expired" in stolen.text


# -- clinicians sign in with a password ---------------------------------------------------------------


def test_clinician_standalone_launch_with_password_and_patient_picker(smart: SmartEnv) -> None:
    scope = "launch/patient openid fhirUser patient/*.rs user/*.rs"
    browser = Browser()
    verifier, state = smart.start(browser, "clinician", scope)
    wrong = browser.press("password", username="dr-jensen", password="not the password")
    assert wrong.status_code == 400 and browser.errors
    browser.press("password", username="dr-jensen", password=CLINICIAN_PASSWORD)
    assert "Patient (id)" in browser.page.text
    unknown = browser.press("approve", patient="no-such-patient")
    assert unknown.status_code == 400
    code = smart.approve(browser, state, patient=smart.patients["b"])
    body = check_token_response(smart.apps["clinician"].exchange(smart.token_url, code, verifier))
    assert body["patient"] == smart.patients["b"]
    assert set(body["scope"].split()) == set(scope.split())
    claims = jwt.decode(
        body["id_token"],
        KeySet.import_key_set(httpx.get(smart.url + "/auth/jwks").json()),
        algorithms=["RS256"],
    ).claims
    assert claims["fhirUser"] == f"{smart.fhir}/Practitioner/{smart.practitioner}"


def test_client_confidential_asymmetric_exchanges_its_code_with_a_signed_assertion(
    smart: SmartEnv,
) -> None:
    from tests.auth.smart_app import ASSERTION_TYPE, sms_code

    patient, phone = smart.new_patient(), new_phone()
    browser = Browser()
    code_ = smart.activation_code(patient)
    verifier, state = smart.start(browser, "asymmetric", STANDALONE_SCOPE)
    browser.press("activate", activation_code=code_)
    browser.press("phone", phone=phone)
    browser.press("otp", otp=sms_code(smart.data_dir, phone))
    code = smart.approve(browser, state)
    client_id, key = smart.backends["asymmetric-app"]
    app = smart.apps["asymmetric"]
    response = httpx.post(
        smart.token_url,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": app.redirect_uri,
            "code_verifier": verifier,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": key.assertion(client_id, smart.token_url),
        },
    )
    assert check_token_response(response)["patient"] == patient
