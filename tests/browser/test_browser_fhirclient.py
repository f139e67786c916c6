"""The JS ``fhirclient`` (SMART on FHIR JavaScript library), unchanged, in headless
Chromium: a standalone launch by a patient and an EHR launch inside an iframe of a
cross-site EHR page, each reading the patient and their CarePlan (issue 10, item 6).

The browser enforces what curl does not: CORS on the token endpoint and on every FHIR
request (with the preflight an ``Authorization`` header causes), the exposed response
headers, ``frame-ancestors`` and the SameSite rules of the sign-in cookie in a frame.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.auth.access_world import body_for, care_team, consent
from tests.auth.smart_app import bearer, new_phone, sms_code
from tests.browser.conftest import CLIENT_ID, BrowserWorld

pytestmark = pytest.mark.browser


def _finished(root: Any) -> dict[str, Any]:
    """Wait until index.html has read the record (or failed), then its result."""
    root.locator("body[data-done], body[data-error]").wait_for(state="attached")
    text = root.locator("#result").text_content()
    assert text and not text.startswith("error"), text
    return dict(json.loads(text))


def _click(page: Any, selector: str) -> None:
    """Press a form button and wait for the next page (every sign-in step is a POST)."""
    with page.expect_navigation():
        page.click(selector)


def test_standalone_launch_patient_reads_own_record(browser_world: BrowserWorld, page: Any) -> None:
    smart = browser_world.smart
    patient = smart.new_patient("Standalone-browser")
    care_plan = smart.create(body_for("CarePlan", patient))
    code, phone = smart.activation_code(patient), new_phone()

    page.goto(f"{browser_world.app_origin}/app/launch.html?iss={quote(smart.fhir, safe='')}")
    page.wait_for_url(f"{smart.url}/auth/authorize?*")
    page.fill("#activation_code", code)
    _click(page, "button[value=activate]")
    page.fill("#phone", phone)
    _click(page, "button[value=phone]")
    page.fill("#otp", sms_code(smart.data_dir, phone))
    _click(page, "button[value=otp]")
    page.click("button[value=approve]")
    page.wait_for_url(f"{browser_world.app_origin}/app/index.html?*")

    result = _finished(page)
    assert result["patient"] == patient
    assert result["family"] == "Standalone-browser"
    assert care_plan in result["carePlans"]
    assert result["fhirUser"] == f"Patient/{patient}"
    # Access-Control-Expose-Headers: without it a browser hides these from the app.
    assert result["etag"] and result["etag"].startswith('W/"')
    assert result["lastModified"]
    assert "patient/*.rs" in result["scope"].split()


def _clinician_with_consent(smart: Any, patient: str) -> str:
    """A practitioner the patient's Consent and CareTeam let in (docs/AUTH.md "Consent")."""
    practitioner = smart.create(
        {"resourceType": "Practitioner", "name": [{"family": "Framed", "given": ["Ida"]}]}
    )
    smart.create(consent(patient, f"Practitioner/{practitioner}"))
    smart.create(care_team(patient, f"Practitioner/{practitioner}"))
    return practitioner


def _launch(browser_world: BrowserWorld, patient: str, practitioner: str) -> dict[str, Any]:
    """What the EHR's server does: create the launch context with its backend token."""
    smart = browser_world.smart
    token = smart.backend_access_token("ehr", "__ehr-launch")
    response = httpx.post(
        smart.url + "/auth/launch",
        json={
            "client_id": CLIENT_ID,
            "patient": patient,
            "fhirUser": f"Practitioner/{practitioner}",
        },
        headers=bearer(token),
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_ehr_launch_inside_an_iframe_of_the_ehr(browser_world: BrowserWorld, page: Any) -> None:
    smart = browser_world.smart
    patient = smart.new_patient("Iframe-browser")
    care_plan = smart.create(body_for("CarePlan", patient))
    practitioner = _clinician_with_consent(smart, patient)
    launch = _launch(browser_world, patient, practitioner)
    assert launch["launch_url"].startswith(f"{browser_world.app_origin}/app/launch.html?iss=")

    page.goto(f"{browser_world.ehr_origin}/app/ehr.html?app={quote(launch['launch_url'], safe='')}")
    frame = page.frame_locator("#app")
    # The consent page, inside the EHR's frame: framing allowed for the EHR's origin, and
    # the sign-in cookie (partitioned) survives the cross-site frame.
    frame.locator("button[value=approve]").click()

    result = _finished(frame)
    assert result["patient"] == patient
    assert result["family"] == "Iframe-browser"
    assert care_plan in result["carePlans"]
    assert result["fhirUser"] == f"Practitioner/{practitioner}"
    assert page.url.startswith(browser_world.ehr_origin)  # the EHR page stayed on top


def test_sign_in_page_cannot_be_framed_by_an_origin_that_is_no_ehr(
    browser_world: BrowserWorld, page: Any
) -> None:
    """The app's origin may call the API (CORS) but is no EHR: it may not frame sign-in."""
    smart = browser_world.smart
    launch_url = f"{browser_world.app_origin}/app/launch.html?iss={quote(smart.fhir, safe='')}"
    with page.expect_console_message(lambda m: "frame-ancestors" in m.text) as refused:
        page.goto(f"{browser_world.app_origin}/app/ehr.html?app={quote(launch_url, safe='')}")
    # Chromium: "Refused to frame ... because an ancestor violates ... frame-ancestors <EHR>"
    assert browser_world.ehr_origin in refused.value.text
    assert page.frame_locator("#app").locator("#activation_code").count() == 0


def test_sign_in_page_headers_name_the_ehr_as_the_only_frame_ancestor(
    browser_world: BrowserWorld,
) -> None:
    smart = browser_world.smart
    page = httpx.get(
        smart.url + "/auth/authorize",
        params={
            "response_type": "code",
            "client_id": CLIENT_ID,
            "redirect_uri": f"{browser_world.app_origin}/app/index.html",
            "scope": "launch/patient openid patient/*.rs",
            "state": "s",
            "aud": smart.fhir,
            "code_challenge": "E9Melhoa2OwvFrEMTJguCQaoeRLkqOsJcP9Gk5sV9rY",
            "code_challenge_method": "S256",
        },
        headers={"Sec-Fetch-Dest": "iframe"},
    )
    assert page.status_code == 200, page.text
    csp = page.headers["content-security-policy"]
    assert f"frame-ancestors {browser_world.ehr_origin}" in csp
    assert "x-frame-options" not in page.headers  # DENY would contradict the allow-list
    cookie = page.headers["set-cookie"].lower()
    assert "samesite=none" in cookie and "secure" in cookie and "partitioned" in cookie
