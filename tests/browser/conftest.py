"""Headless Chromium driving the real JS ``fhirclient`` against the real server.

What a SMART deployer sets up, made the way an installation makes it (the ``selfback`` CLI
and FHIR writes over HTTP):

- the server on http://127.0.0.1:<port> (SQLite in the SQLite run; these tests are not
  repeated in the PostgreSQL pass: they test the browser contract, not storage);
- the test app (tests/browser/app: launch.html + index.html, fhirclient from
  tests/browser/js/node_modules) on http://localhost:<port>, registered as a *public*
  client whose redirect URI's origin becomes a CORS origin;
- a mock EHR page on http://localhost:<another port>, registered as an EHR client
  (``__ehr-launch``) with ``--origin``, which allows it to frame the sign-in pages.

"localhost" is another *site* than 127.0.0.1, so the API calls, the framing and the
sign-in cookie are tested as a real cross-site embedding of the server. The app shares
the EHR's site only because fhirclient keeps its state in sessionStorage, which Chromium
denies to a cross-site frame when it blocks third-party cookies (the app's concern, not
the server's).

Chromium is Debian's (``.ci/chromium.sh``), driven by Python playwright with
``executable_path``; playwright never downloads a browser here.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.auth.conftest import GENEROUS, SmartEnv
from tests.auth.smart_app import BackendKey
from tests.conftest import drop_database, fresh_database_url, start_server, stop_server

HERE = Path(__file__).resolve().parent
CHROMIUM = os.environ.get("SELFBACK_CHROMIUM", "/usr/bin/chromium")
FHIRCLIENT_JS = HERE / "js" / "node_modules" / "fhirclient" / "build" / "fhir-client.min.js"
CLIENT_ID = "selfback-browser-test"  # launch.html names it
BROWSER_APP_SCOPE = "launch launch/patient openid fhirUser patient/*.rs"


def _missing() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is absent (bash .ci/chromium.sh installs Debian's chromium)"
    if not FHIRCLIENT_JS.exists():
        return "fhirclient is not installed (make browser-deps: npm ci in tests/browser/js)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    return None


@pytest.fixture(scope="session")
def browser_deps() -> None:
    """Chromium, playwright and fhirclient: ``make test`` installs all three. Missing ones
    skip the tests when run by hand, and fail them under CI, where a skip would hide it."""
    missing = _missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)


class _Static(SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()


@dataclass
class StaticSite:
    """tests/browser served on a loopback port, under the host name the browser uses."""

    httpd: ThreadingHTTPServer
    host: str

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def serve_static(host: str) -> StaticSite:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Static, directory=str(HERE)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return StaticSite(httpd, host)


@dataclass
class BrowserWorld:
    smart: SmartEnv
    app: StaticSite
    ehr: StaticSite
    ehr_client: tuple[str, BackendKey]

    @property
    def app_origin(self) -> str:
        return self.app.origin

    @property
    def ehr_origin(self) -> str:
        return self.ehr.origin


@pytest.fixture(scope="session")
def browser_world(
    browser_deps: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BrowserWorld]:
    data_dir = tmp_path_factory.mktemp("browser-server")
    database_url = fresh_database_url(data_dir, "browser")
    server = start_server(database_url, data_dir, **GENEROUS)
    app, ehr = serve_static("localhost"), serve_static("localhost")
    env = SmartEnv(server, database_url, data_dir)
    try:
        key = BackendKey.rs384()
        jwks = data_dir / "ehr-jwks.json"
        jwks.write_bytes(orjson.dumps({"keys": [key.public()]}))
        # The EHR: writes the fixtures, creates activation codes and launch contexts, and
        # (--origin) is the web origin that embeds apps, so it may frame the sign-in pages.
        registered = env.cli(
            "client",
            "register",
            "--name",
            "Mock EHR",
            "--type",
            "confidential-asymmetric",
            "--jwks-file",
            str(jwks),
            "--scope",
            "system/*.cruds __ehr-launch __activation-code",
            "--origin",
            ehr.origin,
        )
        env.backends["setup"] = env.backends["ehr"] = (registered["client_id"], key)
        # The browser app: a public client; its redirect URI's origin is its CORS origin.
        env.cli(
            "client",
            "register",
            "--name",
            "SelfBack browser test app",
            "--type",
            "public",
            "--client-id",
            CLIENT_ID,
            "--redirect-uri",
            f"{app.origin}/app/index.html",
            "--launch-uri",
            f"{app.origin}/app/launch.html",
            "--scope",
            BROWSER_APP_SCOPE,
        )
        yield BrowserWorld(env, app, ehr, env.backends["ehr"])
    finally:
        app.close()
        ehr.close()
        stop_server(server)
        drop_database(database_url)


@pytest.fixture(scope="session")
def chromium(browser_deps: None) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            # Root in the CI container: Chromium's sandbox needs user namespaces it may lack.
            args=["--no-sandbox"],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    """A fresh browser profile per test (no cookies or storage carried over)."""
    context = chromium.new_context()
    context.set_default_timeout(30_000)
    page = context.new_page()
    messages: list[str] = []
    page.on("console", lambda message: messages.append(f"{message.type}: {message.text}"))
    page.console_messages = messages  # type: ignore[attr-defined]
    try:
        yield page
    finally:
        context.close()
