"""A scripted SMART app and browser for the end-to-end tests.

The browser is an httpx client that keeps cookies and never follows redirects; pages are
read with the standard library's HTML parser, so the tests submit exactly the forms a
person would (no JavaScript anywhere). Backend clients sign their assertions with joserfc.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx
import orjson
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from tests.conftest import ROOT

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


# -- the CLI -------------------------------------------------------------------------------------


def auth_cli(
    *args: str, database_url: str, data_dir: Path, env: dict[str, str] | None = None
) -> Any:
    """Run ``python -m fhir_server.auth.cli``; returns its JSON (asserting success)."""
    import os

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "fhir_server.auth.cli",
            *args,
            "--database-url",
            database_url,
            "--data-dir",
            str(data_dir),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return orjson.loads(result.stdout)


# -- HTML forms ----------------------------------------------------------------------------------


@dataclass
class Form:
    action: str
    fields: list[tuple[str, str]] = field(default_factory=list)  # hidden + text inputs
    checkboxes: list[tuple[str, str, bool]] = field(default_factory=list)
    buttons: list[tuple[str, str]] = field(default_factory=list)


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self.errors: list[str] = []
        self._in_error = False
        self._current: Form | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self._current = Form(a.get("action", ""))
            self.forms.append(self._current)
        elif tag == "input" and self._current is not None:
            kind = a.get("type", "text")
            if kind == "checkbox":
                self._current.checkboxes.append((a["name"], a.get("value", ""), "checked" in a))
            else:
                self._current.fields.append((a.get("name", ""), a.get("value", "")))
        elif tag == "button" and self._current is not None:
            self._current.buttons.append((a.get("name", ""), a.get("value", "")))
        elif tag == "p" and "error" in a.get("class", ""):
            self._in_error = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._current = None
        if tag == "p":
            self._in_error = False

    def handle_data(self, data: str) -> None:
        if self._in_error:
            self.errors.append(data)


def forms_of(html: str) -> _FormParser:
    parser = _FormParser()
    parser.feed(html)
    return parser


class Browser:
    """A person's browser: cookies kept, redirects shown, forms submitted by button."""

    def __init__(self, **headers: str) -> None:
        self.http = httpx.Client(follow_redirects=False, timeout=60, headers=headers)
        self.page: httpx.Response | None = None

    def close(self) -> None:
        self.http.close()

    def get(self, url: str) -> httpx.Response:
        self.page = self.http.get(url)
        return self.page

    def post(self, url: str, data: Any) -> httpx.Response:
        pairs = list(data.items()) if isinstance(data, dict) else list(data)
        self.page = self.http.post(
            url,
            content=urlencode(pairs),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        return self.page

    @property
    def errors(self) -> list[str]:
        assert self.page is not None
        return forms_of(self.page.text).errors

    def press(self, action: str, *, untick: tuple[str, ...] = (), **values: str) -> httpx.Response:
        """Fill ``values`` into the form whose button has ``action`` and press that button."""
        assert self.page is not None
        for form in forms_of(self.page.text).forms:
            if ("action", action) not in form.buttons:
                continue
            data: list[tuple[str, str]] = []
            for name, value in form.fields:
                data.append((name, values.pop(name, value)))
            data += [(n, v) for n, v, checked in form.checkboxes if checked and v not in untick]
            data += list(values.items())
            data.append(("action", action))
            url = urljoin(str(self.page.url), form.action)
            return self.post(url, data)
        raise AssertionError(f"no button {action!r} on the page: {self.page.text[:2000]}")

    def checkboxes(self) -> list[str]:
        assert self.page is not None
        return [v for f in forms_of(self.page.text).forms for _, v, _ in f.checkboxes]


# -- PKCE and the authorize request ---------------------------------------------------------------


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    )
    return verifier, challenge


@dataclass
class App:
    """A SMART app registration plus what one launch of it needs."""

    client_id: str
    redirect_uri: str
    secret: str | None = None

    def authorize_params(
        self,
        fhir_base: str,
        scope: str,
        *,
        challenge: str,
        state: str,
        launch: str | None = None,
        **extra: str,
    ) -> dict[str, str]:
        params = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": scope,
            "state": state,
            "aud": fhir_base,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        if launch:
            params["launch"] = launch
        params.update(extra)
        return params

    def auth(self) -> httpx.BasicAuth | None:
        return httpx.BasicAuth(self.client_id, self.secret) if self.secret else None

    def exchange(
        self, token_url: str, code: str, verifier: str | None, **extra: str
    ) -> httpx.Response:
        data = {"grant_type": "authorization_code", "code": code, "redirect_uri": self.redirect_uri}
        if verifier is not None:
            data["code_verifier"] = verifier
        if not self.secret:
            data["client_id"] = self.client_id
        data.update(extra)
        return httpx.post(token_url, data=data, auth=self.auth(), timeout=60)

    def refresh(
        self, token_url: str, refresh_token: str, scope: str | None = None
    ) -> httpx.Response:
        data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        if scope is not None:
            data["scope"] = scope
        if not self.secret:
            data["client_id"] = self.client_id
        return httpx.post(token_url, data=data, auth=self.auth(), timeout=60)


def redirect_params(response: httpx.Response) -> dict[str, str]:
    assert response.status_code in (302, 303), (response.status_code, response.text[:3000])
    query = urlsplit(response.headers["location"]).query
    return {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}


TOKEN_FIELDS = ("access_token", "token_type", "expires_in", "scope")


def check_token_response(response: httpx.Response) -> dict[str, Any]:
    """INF-S3/S4/S5 on one token response."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["cache-control"] == "no-store"  # SAL-23
    assert response.headers["pragma"] == "no-cache"
    body: dict[str, Any] = response.json()
    for name in TOKEN_FIELDS:
        assert body.get(name) not in (None, ""), name
    assert isinstance(body["expires_in"], int) and 0 < body["expires_in"] <= 3600  # SAL-30
    assert body["token_type"].lower() == "bearer"
    return body


def sms_code(data_dir: Path, phone: str, after: int = 0) -> str:
    """The newest code the outbox holds for ``phone`` (the outbox is the SMS gateway)."""
    path = data_dir / "sms-outbox.jsonl"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if path.exists():
            lines = path.read_bytes().splitlines()[after:]
            for line in reversed(lines):
                message = orjson.loads(line)
                if message["to"] == phone:
                    match = re.search(r"\b(\d{6})\b", message["body"])
                    assert match, message
                    return match.group(1)
        time.sleep(0.05)
    raise AssertionError(f"no SMS to {phone}")


def outbox_lines(data_dir: Path) -> int:
    path = data_dir / "sms-outbox.jsonl"
    return len(path.read_bytes().splitlines()) if path.exists() else 0


def new_phone() -> str:
    return "+45" + "".join(secrets.choice("0123456789") for _ in range(8))


# -- backend clients ------------------------------------------------------------------------------


@dataclass
class BackendKey:
    kid: str
    alg: str
    key: Any

    @classmethod
    def rs384(cls) -> BackendKey:
        kid = uuid.uuid4().hex
        return cls(
            kid,
            "RS384",
            RSAKey.generate_key(2048, parameters={"kid": kid, "alg": "RS384"}, private=True),
        )

    @classmethod
    def es384(cls) -> BackendKey:
        kid = uuid.uuid4().hex
        return cls(
            kid,
            "ES384",
            ECKey.generate_key("P-384", parameters={"kid": kid, "alg": "ES384"}, private=True),
        )

    def public(self) -> dict[str, Any]:
        return self.key.as_dict(private=False)

    def assertion(self, client_id: str, token_url: str, **overrides: Any) -> str:
        now = int(time.time())
        header = {"alg": self.alg, "kid": self.kid, "typ": "JWT", **overrides.pop("header", {})}
        header = {k: v for k, v in header.items() if v is not None}
        claims = {
            "iss": client_id,
            "sub": client_id,
            "aud": token_url,
            "exp": now + 240,
            "iat": now,
            "jti": uuid.uuid4().hex,
            **overrides,
        }
        claims = {k: v for k, v in claims.items() if v is not None}
        algs = [header["alg"]] if header["alg"] in ("RS384", "ES384", "RS256", "ES256") else None
        return jwt.encode(header, claims, self.key, algorithms=algs)


def backend_token(
    token_url: str, client_id: str, key: BackendKey, scope: str, **overrides: Any
) -> httpx.Response:
    return httpx.post(
        token_url,
        data={
            "grant_type": "client_credentials",
            "scope": scope,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": key.assertion(client_id, token_url, **overrides),
        },
        timeout=60,
    )


class JwksServer:
    """A client's JWKS URL, served on loopback for the duration of a test session."""

    def __init__(self) -> None:
        self.jwks: dict[str, Any] = {"keys": []}
        self.fetches = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                outer.fetches += 1
                body = orjson.dumps(outer.jwks)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", "max-age=60")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/jwks.json"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def form_url(base: str, params: dict[str, str]) -> str:
    return base + "?" + urlencode(params)
