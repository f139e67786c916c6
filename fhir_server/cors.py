"""CORS for browser SMART apps: the outermost ASGI layer, so every ``/fhir`` and ``/auth``
path gets it (the ``/fhir`` routes bypass FastAPI's middleware, fhir_server/app.py).

Fetch Standard, "CORS protocol"; SMART App Launch 2.2 (browser apps are public clients
that call the token endpoint and the FHIR API from their own origin). The rules
(docs/AUTH.md "Browsers: CORS and framing"):

- **Public documents** -- ``/fhir/metadata``, the SMART and OpenID configurations, the
  JWKS and the style sheet -- answer any origin: ``Access-Control-Allow-Origin: *``, no
  credentials (they hold nothing private; INF-D4).
- **Everything else under /fhir and /auth** (the token, revocation and introspection
  endpoints included) answers only the *registered* origins of enabled clients
  (fhir_server.auth.origins): the origin is echoed, ``Vary: Origin`` is always sent, and
  credentials (cookies) are never allowed -- tokens travel in ``Authorization``.
- A preflight (``OPTIONS`` with ``Access-Control-Request-Method``) is answered here,
  204 with the allowed methods and request headers, or 403 without CORS headers for an
  origin that is not registered. ``/auth/authorize`` is navigated to, never fetched: it
  gets no CORS headers.
"""

from __future__ import annotations

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fhir_server.auth.origins import OriginSets, RegisteredOrigins

PUBLIC_PATHS = frozenset(
    {
        "/fhir/metadata",
        "/fhir/.well-known/smart-configuration",
        "/fhir/.well-known/openid-configuration",
        "/.well-known/openid-configuration",
        "/auth/jwks",
        "/auth/smart-style.json",
    }
)
NOT_FETCHED = frozenset({"/auth/authorize"})

# What a SMART app sends besides the CORS-safelisted headers: the bearer token, FHIR
# bodies, and the conditional and Prefer headers of FHIR R4 http.html.
ALLOW_HEADERS = (
    "Authorization, Content-Type, Accept, If-Match, If-None-Exist, If-None-Match, "
    "If-Modified-Since, Prefer"
)
# What a SMART app reads back: where a created resource lives and its version (R4 http.html
# "create", "update", "versioning"), and why a token was refused (RFC 6750 3).
EXPOSE_HEADERS = "Location, ETag, Content-Location, Last-Modified, WWW-Authenticate"
FHIR_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE"
AUTH_METHODS = "GET, POST"
MAX_AGE = "600"

PUBLIC = "public"
REGISTERED = "registered"
_ANY_ORIGIN = (b"access-control-allow-origin", b"*")
_EXPOSE = (b"access-control-expose-headers", EXPOSE_HEADERS.encode())


def _add_vary_origin(headers: list[tuple[bytes, bytes]]) -> None:
    for i, (name, value) in enumerate(headers):
        if name.lower() == b"vary":
            if b"origin" not in value.lower() and value.strip() != b"*":
                headers[i] = (name, value + b", Origin")
            return
    headers.append((b"vary", b"Origin"))


def policy_for(path: str) -> str | None:
    """Which CORS rule a path falls under (None: no CORS at all)."""
    if path in PUBLIC_PATHS:
        return PUBLIC
    if path in NOT_FETCHED:
        return None
    if path == "/fhir" or path.startswith(("/fhir/", "/auth/")):
        return REGISTERED
    return None


def preflight_headers(policy: str, origin: str, path: str) -> dict[str, str]:
    """The headers of an accepted preflight (pure)."""
    methods = AUTH_METHODS if path.startswith("/auth/") else FHIR_METHODS
    headers = {
        "Access-Control-Allow-Methods": methods,
        "Access-Control-Allow-Headers": ALLOW_HEADERS,
        "Access-Control-Max-Age": MAX_AGE,
    }
    if policy == PUBLIC:
        headers["Access-Control-Allow-Origin"] = "*"
    else:
        headers["Access-Control-Allow-Origin"] = origin
        headers["Vary"] = "Origin"
    return headers


class Cors:
    """ASGI middleware applying :func:`policy_for` around ``app``."""

    def __init__(self, app: ASGIApp, origins: RegisteredOrigins) -> None:
        self.app = app
        self.origins = origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        policy = policy_for(path)
        if policy is None:
            await self.app(scope, receive, send)
            return
        # Raw headers, read once: this runs on every FHIR request (docs/BENCHMARKS.md).
        origin: str | None = None
        asks_method = False
        for name, value in scope["headers"]:
            if name == b"origin":
                origin = value.decode("latin-1")
            elif name == b"access-control-request-method":
                asks_method = True
        if scope["method"] == "OPTIONS" and asks_method:
            allowed = origin is not None and (policy == PUBLIC or await self._registered(origin))
            await self._preflight(policy, origin, path, allowed, send)
            return
        extra: list[tuple[bytes, bytes]] = []
        if policy == PUBLIC:
            extra = [_ANY_ORIGIN, _EXPOSE]
        elif origin is not None and await self._registered(origin):
            extra = [(b"access-control-allow-origin", origin.encode("latin-1")), _EXPOSE]
        vary = policy == REGISTERED

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                headers.extend(extra)
                if vary:
                    # The answer depends on Origin, so caches must key on it (Fetch "CORS
                    # protocol and HTTP caches"), with or without a match.
                    _add_vary_origin(headers)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_cors)

    async def _registered(self, origin: str) -> bool:
        sets: OriginSets | None = self.origins.cached(origin)
        if sets is None:
            sets = await run_in_threadpool(self.origins.load)
        return origin in sets.cors

    @staticmethod
    async def _preflight(
        policy: str, origin: str | None, path: str, allowed: bool, send: Send
    ) -> None:
        if allowed and origin is not None:
            status, headers, body = 204, preflight_headers(policy, origin, path), b""
            content_type = None
        else:
            # No CORS headers: the browser refuses the real request. The body says why to
            # a person reading the network panel (an OperationOutcome on /fhir).
            status, headers = 403, {"Vary": "Origin"}
            diagnostics = f"the origin {origin!r} is not registered for this server"
            if path.startswith("/fhir"):
                content_type = "application/fhir+json"
                body = orjson.dumps(
                    {
                        "resourceType": "OperationOutcome",
                        "issue": [
                            {"severity": "error", "code": "forbidden", "diagnostics": diagnostics}
                        ],
                    }
                )
            else:
                content_type = "application/json"
                body = orjson.dumps({"error": "invalid_request", "error_description": diagnostics})
        raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        if content_type:
            raw.append((b"content-type", content_type.encode()))
        raw.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})
