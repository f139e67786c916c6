"""CORS over HTTP, as a browser asks for it (Fetch Standard "CORS protocol"): preflights
and actual requests on /fhir and /auth from registered, unregistered and any origins
(docs/AUTH.md "Browsers: CORS and framing"). The browser itself, with the JS fhirclient,
is in tests/browser."""

from __future__ import annotations

import secrets
import time

import httpx
import pytest

from tests.auth.conftest import SmartEnv
from tests.auth.smart_app import bearer
from tests.auth.test_auth_cli import run

pytestmark = pytest.mark.db

APP = "https://patient-app.example"  # the patient app's redirect URI's origin
STRANGER = "https://evil.example"
SMART_HEADERS = {
    "authorization",
    "content-type",
    "if-match",
    "if-none-exist",
    "if-none-match",
    "prefer",
}
EXPOSED = {"location", "etag", "content-location", "last-modified"}


def preflight(
    url: str, origin: str, method: str = "GET", headers: str = "authorization"
) -> httpx.Response:
    return httpx.options(
        url,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": headers,
        },
    )


def _names(value: str) -> set[str]:
    return {h.strip().lower() for h in value.split(",")}


@pytest.mark.parametrize(
    "path", ["/Patient/123", "/Observation", "", "/Patient/1/_history", "/$export"]
)
def test_preflight_on_fhir_allows_a_registered_origin(smart: SmartEnv, path: str) -> None:
    response = preflight(smart.fhir + path, APP, "PUT", "authorization,content-type,if-match")
    assert response.status_code == 204, response.text
    assert response.headers["access-control-allow-origin"] == APP
    assert _names(response.headers["access-control-allow-headers"]) >= SMART_HEADERS
    assert {"GET", "POST", "PUT", "PATCH", "DELETE"} <= {
        m.strip() for m in response.headers["access-control-allow-methods"].split(",")
    }
    assert "origin" in _names(response.headers["vary"])
    assert "access-control-allow-credentials" not in response.headers


def test_preflight_from_an_unregistered_origin_gets_no_cors_headers(smart: SmartEnv) -> None:
    response = preflight(smart.fhir + "/Patient/123", STRANGER)
    assert response.status_code == 403
    assert not [h for h in response.headers if h.startswith("access-control-")]
    assert response.json()["resourceType"] == "OperationOutcome"
    token = preflight(smart.url + "/auth/token", STRANGER, "POST", "content-type")
    assert token.status_code == 403
    assert "access-control-allow-origin" not in token.headers


def test_a_fhir_read_from_a_registered_origin_exposes_the_version_headers(smart: SmartEnv) -> None:
    token = smart.cached_token("setup", "system/*.cruds")
    patient = smart.patients["a"]
    response = httpx.get(
        f"{smart.fhir}/Patient/{patient}", headers={**bearer(token), "Origin": APP}
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == APP
    assert _names(response.headers["access-control-expose-headers"]) >= EXPOSED
    assert "origin" in _names(response.headers["vary"])
    assert "access-control-allow-credentials" not in response.headers


def test_a_fhir_read_from_an_unregistered_origin_carries_no_cors_headers(smart: SmartEnv) -> None:
    """The server still answers (CORS is the browser's to enforce); the browser then
    hides the answer from the page. Vary: Origin keeps caches from mixing the two."""
    token = smart.cached_token("setup", "system/*.cruds")
    for headers in ({"Origin": STRANGER}, {}):
        response = httpx.get(
            f"{smart.fhir}/Patient/{smart.patients['a']}", headers={**bearer(token), **headers}
        )
        assert response.status_code == 200
        assert "access-control-allow-origin" not in response.headers
        assert "origin" in _names(response.headers["vary"])


def test_errors_carry_cors_headers_too_so_the_app_can_read_them(smart: SmartEnv) -> None:
    response = httpx.get(f"{smart.fhir}/Patient/nobody", headers={"Origin": APP})
    assert response.status_code == 401
    assert response.headers["access-control-allow-origin"] == APP
    assert response.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize(
    "path",
    [
        "/fhir/metadata",
        "/fhir/.well-known/smart-configuration",
        "/fhir/.well-known/openid-configuration",
        "/.well-known/openid-configuration",
        "/auth/jwks",
    ],
)
def test_public_documents_allow_any_origin_without_credentials(smart: SmartEnv, path: str) -> None:
    response = httpx.get(smart.url + path, headers={"Origin": STRANGER})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in response.headers
    ask = preflight(smart.url + path, STRANGER, "GET", "accept")
    assert ask.status_code == 204
    assert ask.headers["access-control-allow-origin"] == "*"


def test_the_sign_in_pages_get_no_cors_headers(smart: SmartEnv) -> None:
    response = httpx.get(smart.url + "/auth/authorize", headers={"Origin": APP})
    assert "access-control-allow-origin" not in response.headers


def test_a_client_registered_while_the_server_runs_is_allowed_within_seconds(
    smart: SmartEnv,
) -> None:
    origin = f"https://late-{secrets.token_hex(4)}.example"
    assert preflight(smart.fhir + "/Patient", origin).status_code == 403
    smart.cli(
        "client", "register", "--name", "Late app", "--type", "public",
        "--redirect-uri", f"{origin}/callback", "--scope", "launch/patient patient/*.rs",
    )  # fmt: skip
    deadline = time.monotonic() + 15  # the cache reloads on a miss at most once a second
    status = 0
    while time.monotonic() < deadline:
        status = preflight(smart.fhir + "/Patient", origin).status_code
        if status == 204:
            break
        time.sleep(0.2)
    assert status == 204


def test_an_origin_option_adds_an_origin_and_must_be_exact(smart: SmartEnv) -> None:
    origin = f"https://spa-{secrets.token_hex(4)}.example"
    registered = smart.cli(
        "client", "register", "--name", "SPA", "--type", "public",
        "--redirect-uri", "com.example.spa:/cb", "--origin", origin,
        "--scope", "launch/patient patient/*.rs",
    )  # fmt: skip
    assert registered["origins"] == [origin]
    for bad in (origin + "/", origin + "/app", "*"):
        refused = run(
            smart, "client", "register", "--name", "Bad", "--type", "public",
            "--redirect-uri", "com.example.bad:/cb", "--origin", bad, "--scope", "patient/*.rs",
        )  # fmt: skip
        assert refused.returncode == 2, bad
        assert "must be an origin" in refused.stdout
