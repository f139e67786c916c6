"""A real client, unchanged: the Python ``fhirclient`` package (4.x) discovers the endpoints
through the CapabilityStatement's oauth-uris (SAL-06), sends PKCE S256 and aud, exchanges
the code, reads the patient and refreshes. Our script plays the person at the browser."""

from __future__ import annotations

import pytest

from tests.auth.conftest import STANDALONE_SCOPE, SmartEnv
from tests.auth.smart_app import Browser, new_phone, sms_code

fhirclient = pytest.importorskip("fhirclient.client")

pytestmark = pytest.mark.db


def test_fhirclient_completes_a_standalone_launch_and_reads_the_patient(smart: SmartEnv) -> None:
    patient, phone = smart.new_patient("Fhirclient"), new_phone()
    activation = smart.activation_code(patient)
    app = smart.apps["patient"]
    client = fhirclient.FHIRClient(
        settings={
            "app_id": app.client_id,
            "api_base": smart.fhir,
            "redirect_uri": app.redirect_uri,
            # fhirclient prepends launch/patient itself when no patient is known yet.
            "scope": STANDALONE_SCOPE.replace("launch/patient ", ""),
        }
    )
    url = client.authorize_url
    assert url.startswith(smart.authorize_url)
    assert "code_challenge_method=S256" in url

    browser = Browser()
    assert browser.get(url).status_code == 200
    browser.press("activate", activation_code=activation)
    browser.press("phone", phone=phone)
    browser.press("otp", otp=sms_code(smart.data_dir, phone))
    redirect = browser.press("approve")
    assert redirect.status_code == 302

    client.handle_callback(redirect.headers["location"])
    assert client.ready
    assert client.patient_id == patient
    assert client.patient is not None
    assert client.patient.name[0].family == "Fhirclient"
    assert client.reauthorize()  # refresh through the client, too
    assert client.launch_context["patient"] == patient
