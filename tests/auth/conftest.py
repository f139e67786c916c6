"""One real server for the authorization tests, with patients, clients and accounts made
the way an installation makes them: FHIR writes over HTTP and the ``selfback`` CLI."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.auth.smart_app import (
    App,
    BackendKey,
    Browser,
    JwksServer,
    auth_cli,
    backend_token,
    bearer,
    form_url,
    new_phone,
    pkce,
    redirect_params,
    sms_code,
)
from tests.conftest import (
    RunningServer,
    drop_database,
    fresh_database_url,
    start_server,
    stop_server,
)

PATIENT_APP_SCOPE = "launch/patient openid fhirUser offline_access online_access patient/*.cruds"
CLINICIAN_APP_SCOPE = (
    "launch launch/patient launch/encounter openid fhirUser offline_access online_access "
    "patient/*.rs user/*.cruds __activation-code"
)
STANDALONE_SCOPE = "launch/patient openid fhirUser offline_access patient/*.rs"  # Inferno's
EHR_SCOPE = "launch openid fhirUser offline_access patient/*.rs"  # Inferno's
CLINICIAN_PASSWORD = "correct horse battery staple"

# Generous limits: the tests share one IP (127.0.0.1); test_auth_login_limits has its own server.
GENEROUS = {
    "SELFBACK_AUTH": "smart",
    "SELFBACK_LOAD_CONTENT": "0",
    "SELFBACK_SMS_IP_HOURLY_LIMIT": "10000",
    "SELFBACK_SMS_HOURLY_LIMIT": "10000",
    "SELFBACK_LOGIN_IP_FAILURE_LIMIT": "10000",
    # Refusals are the point of many tests here: no 429s, every one audited one by one
    # (tests/integration/test_hostile_inputs.py checks the defaults' behaviour).
    "SELFBACK_REFUSAL_LIMIT": "1000000",
    "SELFBACK_REFUSAL_AUDIT_DETAIL": "1000000",
}


@dataclass
class SmartEnv:
    server: RunningServer
    database_url: str
    data_dir: Path
    patients: dict[str, str] = field(default_factory=dict)
    practitioner: str = ""
    encounter: str = ""
    apps: dict[str, App] = field(default_factory=dict)
    backends: dict[str, tuple[str, BackendKey]] = field(default_factory=dict)
    jwks_server: JwksServer | None = None
    # (token, monotonic deadline) per backend client and scope, reused while it lives
    _tokens: dict[tuple[str, str], tuple[str, float]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def fhir(self) -> str:
        return self.server.fhir

    @property
    def token_url(self) -> str:
        return self.url + "/auth/token"

    @property
    def authorize_url(self) -> str:
        return self.url + "/auth/authorize"

    def cli(self, *args: str, env: dict[str, str] | None = None) -> Any:
        return auth_cli(*args, database_url=self.database_url, data_dir=self.data_dir, env=env)

    def admin_headers(self) -> dict[str, str]:
        """A bearer token of the set-up client (``system/*.cruds``): how the tests write
        their fixtures now that /fhir enforces tokens. No header on a server that runs with
        ``SELFBACK_AUTH=none`` (no set-up client registered)."""
        if "setup" not in self.backends:
            return {}
        return bearer(self.cached_token("setup", "system/*.cruds"))

    def cached_token(self, name: str, scope: str) -> str:
        key = (name, scope)
        found = self._tokens.get(key)
        if found is None or found[1] < time.monotonic():
            # backend tokens live 5 minutes; renew a minute early
            found = (self.backend_access_token(name, scope), time.monotonic() + 240)
            self._tokens[key] = found
        return found[0]

    def create(self, resource: dict[str, Any]) -> str:
        response = httpx.post(
            f"{self.fhir}/{resource['resourceType']}",
            json=resource,
            headers=self.admin_headers(),
            timeout=60,
        )
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def new_patient(self, family: str = "Hansen") -> str:
        return self.create(
            {"resourceType": "Patient", "name": [{"family": family, "given": ["Test"]}]}
        )

    # -- backend and EHR helpers ---------------------------------------------------------------

    def backend_access_token(self, name: str, scope: str) -> str:
        client_id, key = self.backends[name]
        response = backend_token(self.token_url, client_id, key, scope)
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    def activation_code(self, patient_id: str) -> str:
        """An activation code, made the way a clinician's system does: the FHIR operation."""
        token = self.backend_access_token("ehr", "__activation-code")
        response = httpx.post(
            f"{self.fhir}/Patient/{patient_id}/$activation-code", headers=bearer(token)
        )
        assert response.status_code == 200, response.text
        parameters = {p["name"]: p for p in response.json()["parameter"]}
        return str(parameters["code"]["valueString"])

    def launch(self, app: str = "clinician", **context: Any) -> dict[str, Any]:
        token = self.backend_access_token("ehr", "__ehr-launch")
        body = {
            "client_id": self.apps[app].client_id,
            "patient": self.patients["a"],
            "fhirUser": f"Practitioner/{self.practitioner}",
            "encounter": self.encounter,
            "need_patient_banner": True,
            **context,
        }
        response = httpx.post(self.url + "/auth/launch", json=body, headers=bearer(token))
        assert response.status_code == 201, response.text
        return dict(response.json())

    # -- the patient app's sign-in ----------------------------------------------------------------

    def start(
        self, browser: Browser, app: str, scope: str, *, launch: str | None = None, **extra: str
    ) -> tuple[str, str]:
        """Open the authorize page; returns (code_verifier, state)."""
        verifier, challenge = pkce()
        state = secrets.token_urlsafe(12)
        params = self.apps[app].authorize_params(
            self.fhir, scope, challenge=challenge, state=state, launch=launch, **extra
        )
        response = browser.get(form_url(self.authorize_url, params))
        assert response.status_code == 200, response.text[:3000]
        return verifier, state

    def onboard(
        self,
        browser: Browser,
        patient_id: str,
        phone: str,
        scope: str = STANDALONE_SCOPE,
        app: str = "patient",
    ) -> tuple[str, str]:
        """Activation code -> phone -> SMS code; ends on the consent page."""
        code = self.activation_code(patient_id)
        verifier, state = self.start(browser, app, scope)
        assert (
            browser.press("activate", activation_code=code.lower().replace("-", " ")).status_code
            == 200
        )
        assert browser.press("phone", phone=phone).status_code == 200, browser.errors
        assert browser.press("otp", otp=sms_code(self.data_dir, phone)).status_code == 200, (
            browser.errors
        )
        return verifier, state

    def sign_in(
        self, browser: Browser, phone: str, scope: str = STANDALONE_SCOPE, app: str = "patient"
    ) -> tuple[str, str]:
        """A returning patient: phone -> SMS code; ends on the consent page."""
        verifier, state = self.start(browser, app, scope)
        before = _outbox_size(self.data_dir)
        assert browser.press("phone", phone=phone).status_code == 200, browser.errors
        assert (
            browser.press("otp", otp=sms_code(self.data_dir, phone, before)).status_code == 200
        ), browser.errors
        return verifier, state

    def approve(self, browser: Browser, state: str, **kwargs: Any) -> str:
        params = redirect_params(browser.press("approve", **kwargs))
        assert params["state"] == state
        assert "error" not in params, params
        return params["code"]

    def patient_tokens(self, scope: str = STANDALONE_SCOPE) -> tuple[dict[str, Any], str]:
        """A fresh patient, onboarded: (token response, patient id)."""
        patient = self.new_patient()
        browser = Browser()
        try:
            verifier, state = self.onboard(browser, patient, new_phone(), scope)
            code = self.approve(browser, state)
        finally:
            browser.close()
        response = self.apps["patient"].exchange(self.token_url, code, verifier)
        assert response.status_code == 200, response.text
        return response.json(), patient


def _outbox_size(data_dir: Path) -> int:
    path = data_dir / "sms-outbox.jsonl"
    return len(path.read_bytes().splitlines()) if path.exists() else 0


@pytest.fixture(scope="session")
def smart(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmartEnv]:
    data_dir = tmp_path_factory.mktemp("auth-server")
    database_url = fresh_database_url(data_dir, "auth")
    server = start_server(database_url, data_dir, **GENEROUS)
    jwks_server = JwksServer()
    env = SmartEnv(server, database_url, data_dir, jwks_server=jwks_server)
    try:
        _populate(env, jwks_server)
        yield env
    finally:
        stop_server(server)
        jwks_server.close()
        drop_database(database_url)


def _populate(env: SmartEnv, jwks_server: JwksServer) -> None:
    # The set-up client writes the fixtures (FHIR writes need a token).
    setup_key = BackendKey.rs384()
    setup_jwks = env.data_dir / "setup-jwks.json"
    setup_jwks.write_bytes(orjson.dumps({"keys": [setup_key.public()]}))
    setup = env.cli(
        "client",
        "register",
        "--name",
        "Test set-up",
        "--type",
        "confidential-asymmetric",
        "--jwks-file",
        str(setup_jwks),
        "--scope",
        "system/*.cruds",
    )
    env.backends["setup"] = (setup["client_id"], setup_key)
    env.patients = {"a": env.new_patient("Andersen"), "b": env.new_patient("Berg")}
    env.practitioner = env.create(
        {"resourceType": "Practitioner", "name": [{"family": "Jensen", "given": ["Anna"]}]}
    )
    # The clinician may reach both patients: a Consent naming them and a CareTeam link
    # (SEC-02), without which no launch or pick gives them a patient (issue 10 item 2).
    from tests.auth.access_world import care_team, consent  # access_world imports us

    for patient in env.patients.values():
        env.create(consent(patient, f"Practitioner/{env.practitioner}"))
        env.create(care_team(patient, f"Practitioner/{env.practitioner}"))
    env.encounter = env.create(
        {
            "resourceType": "Encounter",
            "status": "in-progress",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": f"Patient/{env.patients['a']}"},
        }
    )
    register_patient_app(env)
    clinician_app = env.cli(
        "client",
        "register",
        "--name",
        "Clinician dashboard",
        "--type",
        "confidential-symmetric",
        "--redirect-uri",
        "https://clinician-app.example/cb",
        "--launch-uri",
        "https://clinician-app.example/launch",
        "--scope",
        CLINICIAN_APP_SCOPE,
    )
    env.apps["clinician"] = App(
        clinician_app["client_id"],
        "https://clinician-app.example/cb",
        clinician_app["client_secret"],
    )
    # A SMART app that authenticates with private_key_jwt (client-confidential-asymmetric).
    app_key = BackendKey.rs384()
    jwks_file = env.data_dir / "asym-app-jwks.json"
    jwks_file.write_bytes(orjson.dumps({"keys": [app_key.public()]}))
    asym = env.cli(
        "client",
        "register",
        "--name",
        "Asymmetric app",
        "--type",
        "confidential-asymmetric",
        "--redirect-uri",
        "https://asym-app.example/cb",
        "--jwks-file",
        str(jwks_file),
        "--scope",
        STANDALONE_SCOPE,
    )
    env.apps["asymmetric"] = App(asym["client_id"], "https://asym-app.example/cb")
    env.backends["asymmetric-app"] = (asym["client_id"], app_key)
    # Backend services: the EHR (RS384, inline keys), an analytics job (ES384), one by URL.
    for name, key, scope in (
        ("ehr", BackendKey.rs384(), "system/*.rs __ehr-launch __activation-code"),
        ("es384", BackendKey.es384(), "system/*.rs system/Observation.cruds"),
    ):
        path = env.data_dir / f"{name}-jwks.json"
        path.write_bytes(orjson.dumps({"keys": [key.public()]}))
        registered = env.cli(
            "client",
            "register",
            "--name",
            name,
            "--type",
            "confidential-asymmetric",
            "--jwks-file",
            str(path),
            "--scope",
            scope,
        )
        env.backends[name] = (registered["client_id"], key)
    url_key = BackendKey.rs384()
    jwks_server.jwks = {"keys": [url_key.public()]}
    by_url = env.cli(
        "client",
        "register",
        "--name",
        "By URL",
        "--type",
        "confidential-asymmetric",
        "--jwks-url",
        jwks_server.url,
        "--scope",
        "system/*.rs",
    )
    env.backends["by-url"] = (by_url["client_id"], url_key)
    env.cli(
        "account",
        "create",
        "--role",
        "practitioner",
        "--username",
        "dr-jensen",
        "--fhir-user",
        f"Practitioner/{env.practitioner}",
        env={"SELFBACK_NEW_PASSWORD": CLINICIAN_PASSWORD},
    )


@pytest.fixture(scope="session")
def world(smart: SmartEnv) -> Any:
    """Patients A and B with data of the representative types, and minted tokens
    (tests/auth/access_world.py)."""
    from tests.auth.access_world import build_world

    return build_world(smart)


def register_patient_app(env: SmartEnv) -> None:
    """The patient's phone app: a public client with the patient-app scopes."""
    patient_app = env.cli(
        "client",
        "register",
        "--name",
        "SelfBack patient app",
        "--type",
        "public",
        "--redirect-uri",
        "https://patient-app.example/callback",
        "--scope",
        PATIENT_APP_SCOPE,
    )
    env.apps["patient"] = App(patient_app["client_id"], "https://patient-app.example/callback")
