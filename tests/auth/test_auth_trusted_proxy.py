"""Behind a trusted reverse proxy (SELFBACK_TRUSTED_PROXIES), the per-IP sign-in limit and
the audit trail's address are the client's, taken from X-Forwarded-For; a client cannot
escape a lock by writing its own header entries in front of the proxy's."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.auth.conftest import STANDALONE_SCOPE, SmartEnv
from tests.auth.smart_app import Browser
from tests.auth.test_auth_login_limits import close, limited_env

pytestmark = pytest.mark.db

LOGIN_SUBTYPE = "http://selfback.example.org/fhir/CodeSystem/auth-event|login"


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmartEnv]:
    # The test talks to the server from 127.0.0.1, playing the proxy.
    smart = limited_env(
        tmp_path_factory.mktemp("proxied"),
        SELFBACK_TRUSTED_PROXIES="127.0.0.1, ::1",
        SELFBACK_LOGIN_IP_FAILURE_LIMIT="3",
    )
    yield smart
    close(smart)


def wrong_password(smart: SmartEnv, forwarded_for: str | None) -> httpx.Response:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    browser = Browser(**headers)
    try:
        smart.start(browser, "patient", STANDALONE_SCOPE)
        # A new user name each time: the per-user lock (5) stays out of the way.
        return browser.press(
            "password", username=f"nobody-{secrets.token_hex(4)}", password="wrong password!"
        )
    finally:
        browser.close()


def test_the_per_ip_limit_counts_the_forwarded_client(proxied: SmartEnv) -> None:
    client = "203.0.113.7"
    for _ in range(3):
        assert wrong_password(proxied, client).status_code == 400
    assert wrong_password(proxied, client).status_code == 429  # the client's limit of 3
    # Another client behind the same proxy is not locked: the proxy's IP is not the key.
    assert wrong_password(proxied, "198.51.100.9").status_code == 400
    # Entries a client writes on the left are not believed: the proxy's right-most counts.
    assert wrong_password(proxied, f"{client}, 198.51.100.20").status_code == 400
    assert wrong_password(proxied, f"198.51.100.21, {client}").status_code == 429
    # The proxy's own requests (no header) are its own.
    assert wrong_password(proxied, None).status_code == 400
    # The audit trail records the client's address too.
    deadline, found = time.monotonic() + 15, 0
    while time.monotonic() < deadline and found < 5:
        bundle = httpx.get(
            f"{proxied.fhir}/AuditEvent",
            params={"subtype": LOGIN_SUBTYPE, "address": client, "_count": "50"},
            timeout=30,
        ).json()
        found = len(bundle.get("entry", []))
        time.sleep(0.1)
    assert found == 5  # 3 refused, 2 locked
    for entry in bundle["entry"]:
        agents = entry["resource"]["agent"]
        assert [a["network"]["address"] for a in agents if "network" in a] == [client]

