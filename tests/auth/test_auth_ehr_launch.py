"""EHR launch end to end: the EHR (a backend client) creates a launch context with one call,
opens the app's launch URL, the app authorizes with ``launch`` and gets the context
(INF-E1, INF-E2, INF-G7..G9, SAL-16)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.auth.conftest import EHR_SCOPE, SmartEnv
from tests.auth.smart_app import (
    Browser,
    bearer,
    check_token_response,
    form_url,
    pkce,
    redirect_params,
)

pytestmark = pytest.mark.db


def ehr_launch(smart: SmartEnv, scope: str = EHR_SCOPE, **context: object) -> tuple[dict, dict]:
    """Launch the clinician app from the EHR; returns (launch answer, token response)."""
    answer = smart.launch(**context)
    browser = Browser()
    verifier, state = smart.start(browser, "clinician", scope, launch=answer["launch"])
    assert "Allow access?" in browser.page.text  # the EHR signed the clinician in
    code = smart.approve(browser, state)
    response = smart.apps["clinician"].exchange(smart.token_url, code, verifier)
    return answer, check_token_response(response)


def test_INF_E1_the_launch_url_carries_iss_and_launch(smart: SmartEnv) -> None:
    answer = smart.launch()
    url = urlsplit(answer["launch_url"])
    assert f"{url.scheme}://{url.netloc}{url.path}" == "https://clinician-app.example/launch"
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert query["iss"] == smart.fhir == answer["iss"]
    assert query["launch"] == answer["launch"] and len(answer["launch"]) >= 32
    assert answer["expires_in"] <= 300


def test_INF_E2_ehr_launch_yields_the_context(smart: SmartEnv) -> None:
    answer, body = ehr_launch(smart, scope=EHR_SCOPE + " launch/encounter")
    assert body["patient"] == smart.patients["a"]
    assert body["encounter"] == smart.encounter
    assert "launch" in body["scope"].split()
    assert body["refresh_token"]
    claims = jwt.decode(
        body["id_token"],
        KeySet.import_key_set(httpx.get(smart.url + "/auth/jwks").json()),
        algorithms=["RS256"],
    ).claims
    assert claims["fhirUser"] == f"{smart.fhir}/Practitioner/{smart.practitioner}"
    assert claims["aud"] == smart.apps["clinician"].client_id


def test_INF_G8_need_patient_banner_and_a_smart_style_url_that_serves_json(smart: SmartEnv) -> None:
    _, body = ehr_launch(smart)
    assert body["need_patient_banner"] is True
    style = httpx.get(body["smart_style_url"])
    assert style.status_code == 200 and style.headers["content-type"].startswith("application/json")
    assert style.json()["color_background"]
    _, quiet = ehr_launch(smart, need_patient_banner=False)
    assert quiet["need_patient_banner"] is False


def test_INF_G7_context_patient_and_encounter_read_before_and_after_refresh(
    smart: SmartEnv,
) -> None:
    _, body = ehr_launch(smart, scope=EHR_SCOPE + " launch/encounter")
    for token in (body["access_token"],):
        assert (
            httpx.get(f"{smart.fhir}/Patient/{body['patient']}", headers=bearer(token)).status_code
            == 200
        )
        assert (
            httpx.get(
                f"{smart.fhir}/Encounter/{body['encounter']}", headers=bearer(token)
            ).status_code
            == 200
        )
    refreshed = smart.apps["clinician"].refresh(smart.token_url, body["refresh_token"])
    after = check_token_response(refreshed)
    assert after["patient"] == body["patient"] and after["encounter"] == body["encounter"]
    token = after["access_token"]
    assert (
        httpx.get(f"{smart.fhir}/Patient/{after['patient']}", headers=bearer(token)).status_code
        == 200
    )
    assert (
        httpx.get(f"{smart.fhir}/Encounter/{after['encounter']}", headers=bearer(token)).status_code
        == 200
    )


def test_INF_G9_clinician_launch_capabilities_are_advertised(smart: SmartEnv) -> None:
    capabilities = set(
        httpx.get(smart.fhir + "/.well-known/smart-configuration").json()["capabilities"]
    )
    assert {
        "launch-ehr",
        "client-confidential-symmetric",
        "client-confidential-asymmetric",
        "sso-openid-connect",
        "context-banner",
        "context-style",
        "context-ehr-patient",
        "context-ehr-encounter",
        "permission-offline",
        "permission-user",
    } <= capabilities


def test_SAL_16_a_launch_value_works_once(smart: SmartEnv) -> None:
    answer = smart.launch()
    first = Browser()
    verifier, state = smart.start(first, "clinician", EHR_SCOPE, launch=answer["launch"])
    smart.approve(first, state)
    _, challenge = pkce()
    params = smart.apps["clinician"].authorize_params(
        smart.fhir, EHR_SCOPE, challenge=challenge, state="again", launch=answer["launch"]
    )
    again = redirect_params(httpx.get(form_url(smart.authorize_url, params)))
    assert again["error"] == "invalid_request" and "code" not in again


def test_SAL_16_a_launch_value_is_bound_to_its_app(smart: SmartEnv) -> None:
    answer = smart.launch()  # made for the clinician app
    _, challenge = pkce()
    params = smart.apps["patient"].authorize_params(
        smart.fhir,
        "launch openid patient/*.rs",
        challenge=challenge,
        state="x",
        launch=answer["launch"],
    )
    refused = redirect_params(httpx.get(form_url(smart.authorize_url, params)))
    assert refused["error"] == "invalid_request"


def test_ehr_launch_with_fhir_context(smart: SmartEnv) -> None:
    questionnaire = smart.create({"resourceType": "Questionnaire", "status": "active"})
    _, body = ehr_launch(
        smart,
        fhirContext=[
            {
                "reference": f"Questionnaire/{questionnaire}",
                "role": "https://example.org/role/focus",
            }
        ],
    )
    assert body["fhirContext"] == [
        {"reference": f"Questionnaire/{questionnaire}", "role": "https://example.org/role/focus"}
    ]


@pytest.mark.parametrize(
    ("token_scope", "body", "status", "error"),
    [
        (None, {"patient": "x"}, 401, "invalid_token"),
        ("system/*.rs", {"patient": "x"}, 403, "insufficient_scope"),
        (
            "__ehr-launch",
            {"patient": "nope", "fhirUser": "Practitioner/{practitioner}"},
            400,
            "invalid_request",
        ),
        ("__ehr-launch", {"patient": "{patient}"}, 400, "invalid_request"),
        (
            "__ehr-launch",
            {"patient": "{patient}", "fhirUser": "Patient/{patient}"},
            400,
            "invalid_request",
        ),
        (
            "__ehr-launch",
            {
                "patient": "{patient}",
                "fhirUser": "Practitioner/{practitioner}",
                "fhirContext": [{"reference": "Patient/{patient}"}],
            },
            400,
            "invalid_request",
        ),
    ],
)
def test_creating_a_launch_context_is_guarded(
    smart: SmartEnv, token_scope: str | None, body: dict, status: int, error: str
) -> None:
    import orjson

    text = orjson.dumps(body).decode()
    text = text.replace("{patient}", smart.patients["a"]).replace(
        "{practitioner}", smart.practitioner
    )
    headers = {"Content-Type": "application/json"}
    if token_scope:
        headers |= bearer(smart.backend_access_token("ehr", token_scope))
    response = httpx.post(smart.url + "/auth/launch", content=text, headers=headers)
    assert response.status_code == status, response.text
    assert response.json()["error"] == error
