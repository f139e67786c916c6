"""Registered OAuth clients: the three SMART client types and what each may do.

- ``public``: a native or browser app without a secret (the patient app, D3); PKCE only.
- ``confidential-symmetric``: authenticates with HTTP Basic (``client_secret_basic``).
- ``confidential-asymmetric``: authenticates with a signed JWT (``private_key_jwt``,
  RS384 or ES384) against a JWK Set registered inline or by URL (SAL-21/22); backend
  services use this type with the client-credentials grant.

Clients are registered from the CLI (``selfback client register``). :class:`Client`
implements authlib's ``ClientMixin``.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from authlib.oauth2.rfc6749 import ClientMixin
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import insert, select, update

from fhir_server.access.scopes import Scopes, intersect, parse, render
from fhir_server.auth.credentials import digest, new_identifier, new_secret, same
from fhir_server.auth.tables import auth_client
from fhir_server.config import origin_or_none
from fhir_server.storage.database import Database

PUBLIC = "public"
SYMMETRIC = "confidential-symmetric"
ASYMMETRIC = "confidential-asymmetric"
CLIENT_TYPES = (PUBLIC, SYMMETRIC, ASYMMETRIC)

_CLIENT_ID = re.compile(r"^[\x21-\x7e]{1,64}$")  # RFC 6749 A.1: VSCHAR
AUTH_METHOD = {PUBLIC: "none", SYMMETRIC: "client_secret_basic", ASYMMETRIC: "private_key_jwt"}
GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")


class RegistrationError(ValueError):
    """A client registration that cannot work (told to the CLI user)."""


@dataclass(frozen=True)
class Client(ClientMixin):
    client_id: str
    name: str
    client_type: str
    secret_hash: str | None
    redirect_uris: tuple[str, ...]
    scope: str
    grant_types: tuple[str, ...]
    jwks: dict[str, Any] | None = None
    jwks_uri: str | None = None
    launch_uri: str | None = None
    origins: tuple[str, ...] = ()
    created_at: int = 0
    disabled: bool = False
    allowed_scopes: Scopes = field(default_factory=Scopes, compare=False)

    # -- authlib ClientMixin ---------------------------------------------------------

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return self.redirect_uris[0] if len(self.redirect_uris) == 1 else None

    def get_allowed_scope(self, scope: str | None) -> str:
        """requested ∩ registration; an absent scope asks for nothing (SMART needs one)."""
        return render(intersect(parse(scope or ""), self.allowed_scopes))

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        # RFC 6749 3.1.2.3 / SAL-11: exact string match with a registered value.
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return self.secret_hash is not None and same(digest(client_secret), self.secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return not self.disabled and method == AUTH_METHOD[self.client_type]

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and "authorization_code" in self.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        return not self.disabled and grant_type in self.grant_types

    # -- ours ------------------------------------------------------------------------

    @property
    def is_public(self) -> bool:
        return self.client_type == PUBLIC

    def allows_origin(self, origin: str) -> bool:
        return origin in self.origins

    def describe(self) -> dict[str, Any]:
        """The registration as the CLI prints it (never the secret's digest)."""
        return {
            "client_id": self.client_id,
            "name": self.name,
            "client_type": self.client_type,
            "token_endpoint_auth_method": AUTH_METHOD[self.client_type],
            "redirect_uris": list(self.redirect_uris),
            "scope": self.scope,
            "grant_types": list(self.grant_types),
            "jwks_uri": self.jwks_uri,
            "jwks": self.jwks,
            "launch_uri": self.launch_uri,
            "origins": list(self.origins),
            "created_at": self.created_at,
            "disabled": self.disabled,
        }


def _client_from_row(row: Any) -> Client:
    return Client(
        client_id=row.client_id,
        name=row.name,
        client_type=row.client_type,
        secret_hash=row.secret_hash,
        redirect_uris=tuple(orjson.loads(row.redirect_uris)),
        scope=row.scope,
        grant_types=tuple(orjson.loads(row.grant_types)),
        jwks=orjson.loads(row.jwks) if row.jwks else None,
        jwks_uri=row.jwks_uri,
        launch_uri=row.launch_uri,
        origins=tuple(orjson.loads(row.origins)),
        created_at=row.created_at,
        disabled=row.disabled,
        allowed_scopes=parse(row.scope),
    )


def origin_of(uri: str) -> str | None:
    return origin_or_none(uri)


class ClientRegistry:
    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, client_id: str | None) -> Client | None:
        if not isinstance(client_id, str) or not _CLIENT_ID.match(client_id):
            return None
        with self.db.reader.connect() as conn:
            row = conn.execute(
                select(auth_client).where(auth_client.c.client_id == client_id)
            ).first()
        if row is None:
            return None
        return _client_from_row(row)

    def all(self) -> list[Client]:
        with self.db.reader.connect() as conn:
            rows = conn.execute(select(auth_client).order_by(auth_client.c.created_at)).all()
        return [_client_from_row(r) for r in rows]

    def register(
        self,
        *,
        name: str,
        client_type: str,
        scope: str,
        redirect_uris: list[str] = (),  # type: ignore[assignment]
        grant_types: list[str] | None = None,
        jwks: dict[str, Any] | None = None,
        jwks_uri: str | None = None,
        launch_uri: str | None = None,
        origins: list[str] | None = None,
        client_id: str | None = None,
    ) -> tuple[Client, str | None]:
        """Register a client; returns it and, for symmetric clients, the secret (shown once)."""
        if client_type not in CLIENT_TYPES:
            raise RegistrationError(f"client type must be one of {', '.join(CLIENT_TYPES)}")
        grants = list(grant_types or _default_grants(client_type, bool(redirect_uris)))
        unknown = set(grants) - set(GRANT_TYPES)
        if unknown:
            raise RegistrationError(f"unknown grant types: {', '.join(sorted(unknown))}")
        if "client_credentials" in grants and client_type != ASYMMETRIC:
            # SMART Backend Services: backend clients authenticate with private_key_jwt.
            raise RegistrationError("client_credentials needs a confidential-asymmetric client")
        if "authorization_code" in grants and not redirect_uris:
            raise RegistrationError("the authorization code grant needs a --redirect-uri")
        for uri in redirect_uris:
            parts = urlsplit(uri)
            if not parts.scheme or parts.fragment:
                raise RegistrationError(f"redirect URI {uri!r} must be absolute, without fragment")
        if client_type == ASYMMETRIC:
            if bool(jwks) == bool(jwks_uri):
                raise RegistrationError(
                    "an asymmetric client needs exactly one of --jwks or --jwks-url"
                )
            if jwks is not None:
                _check_jwks(jwks)
        elif jwks or jwks_uri:
            raise RegistrationError("only confidential-asymmetric clients register keys")
        parsed = parse(scope)
        if not parsed:
            raise RegistrationError("--scope names no scope this server knows")
        if client_id is not None and not _CLIENT_ID.match(client_id):
            raise RegistrationError("a client_id is 1 to 64 printable ASCII characters")
        client_id = client_id or new_identifier(16)
        secret = new_secret(32) if client_type == SYMMETRIC else None
        cors = list(origins or [])
        for origin in cors:
            # An exact origin, as a browser sends it in Origin (RFC 6454 7): no path, no
            # trailing slash, no wildcard -- those would never match, or match too much.
            if origin_of(origin) != origin:
                raise RegistrationError(
                    f"--origin {origin!r} must be an origin like https://app.example.org"
                )
        for uri in redirect_uris:
            origin = origin_of(uri)
            if origin and origin not in cors:
                cors.append(origin)
        row = {
            "client_id": client_id,
            "name": name,
            "client_type": client_type,
            "secret_hash": digest(secret) if secret else None,
            "redirect_uris": orjson.dumps(list(redirect_uris)).decode(),
            "scope": render(parsed),
            "grant_types": orjson.dumps(grants).decode(),
            "jwks": orjson.dumps(jwks).decode() if jwks else None,
            "jwks_uri": jwks_uri,
            "launch_uri": launch_uri,
            "origins": orjson.dumps(cors).decode(),
            "created_at": int(time.time()),
            "disabled": False,
        }
        with self.db.writer.begin() as conn:
            if conn.execute(
                select(auth_client.c.client_id).where(auth_client.c.client_id == client_id)
            ).first():
                raise RegistrationError(f"client {client_id!r} already exists")
            conn.execute(insert(auth_client).values(**row))
        client = self.get(client_id)
        assert client is not None
        return client, secret

    def set_disabled(self, client_id: str, disabled: bool) -> bool:
        with self.db.writer.begin() as conn:
            result = conn.execute(
                update(auth_client)
                .where(auth_client.c.client_id == client_id)
                .values(disabled=disabled)
            )
        return result.rowcount == 1

    def set_jwks(self, client_id: str, jwks: dict[str, Any] | None, jwks_uri: str | None) -> bool:
        """Replace an asymmetric client's keys (its own key rotation)."""
        if jwks is not None:
            _check_jwks(jwks)
        with self.db.writer.begin() as conn:
            result = conn.execute(
                update(auth_client)
                .where(
                    auth_client.c.client_id == client_id, auth_client.c.client_type == ASYMMETRIC
                )
                .values(jwks=orjson.dumps(jwks).decode() if jwks else None, jwks_uri=jwks_uri)
            )
        return result.rowcount == 1


def _default_grants(client_type: str, has_redirect: bool) -> list[str]:
    if client_type == ASYMMETRIC and not has_redirect:
        return ["client_credentials"]
    return ["authorization_code", "refresh_token"]


def _check_jwks(jwks: dict[str, Any]) -> None:
    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    if not isinstance(keys, list) or not keys:
        raise RegistrationError("a JWK Set needs a non-empty 'keys' list")
    for key in keys:
        if not isinstance(key, dict) or "d" in key:
            raise RegistrationError("register public keys only (a key has a private part 'd')")
        if not key.get("kid"):
            raise RegistrationError("every registered key needs a 'kid'")
    try:
        KeySet.import_key_set(jwks)  # type: ignore[arg-type]
    except (JoseError, ValueError, TypeError) as exc:
        raise RegistrationError(f"not a usable JWK Set: {exc}") from exc


# -- client key sets registered by URL -------------------------------------------------------

_MAX_JWKS_BYTES = 64 * 1024
_DEFAULT_CACHE_SECONDS = 300
_MAX_CACHE_SECONDS = 3600
_MIN_REFETCH_SECONDS = 10


class JwksFetchError(Exception):
    pass


@dataclass
class _Cached:
    jwks: dict[str, Any]
    fetched_at: float
    fresh_until: float


class ClientKeySets:
    """Client JWK Sets: inline ones as registered, URL ones fetched with a timeout and a
    size cap, cached as their ``Cache-Control: max-age`` allows (SAL-22), and fetched
    again when an assertion names a ``kid`` the cached set lacks."""

    def __init__(self, timeout: float = 5.0) -> None:
        self.timeout = timeout
        self._cache: dict[str, _Cached] = {}
        self._lock = threading.Lock()

    def for_client(self, client: Client, kid: str) -> dict[str, Any]:
        if client.jwks is not None:
            return client.jwks
        if not client.jwks_uri:
            raise JwksFetchError("the client has no registered keys")
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(client.jwks_uri)
        if cached and now < cached.fresh_until and _has_kid(cached.jwks, kid):
            return cached.jwks
        if (
            cached
            and _has_kid(cached.jwks, kid) is False
            and now - cached.fetched_at < _MIN_REFETCH_SECONDS
        ):
            return cached.jwks  # asked again too soon: no fetch storm on a bad kid
        fetched = self._fetch(client.jwks_uri)
        with self._lock:
            self._cache[client.jwks_uri] = fetched
        return fetched.jwks

    def _fetch(self, url: str) -> _Cached:
        try:
            with (
                httpx.Client(timeout=self.timeout, follow_redirects=False) as http,
                http.stream("GET", url, headers={"Accept": "application/json"}) as response,
            ):
                if response.status_code != 200:
                    raise JwksFetchError(f"the JWKS URL answered {response.status_code}")
                body = b""
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > _MAX_JWKS_BYTES:
                        raise JwksFetchError("the JWK Set is too large")
                max_age = _max_age(response.headers.get("cache-control"))
        except httpx.HTTPError as exc:
            raise JwksFetchError(
                f"the JWKS URL could not be fetched: {type(exc).__name__}"
            ) from exc
        try:
            jwks = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise JwksFetchError("the JWKS URL did not return JSON") from exc
        if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
            raise JwksFetchError("the JWKS URL did not return a JWK Set")
        now = time.monotonic()
        return _Cached(jwks, now, now + max_age)


def _has_kid(jwks: dict[str, Any], kid: str) -> bool:
    return any(isinstance(k, dict) and k.get("kid") == kid for k in jwks.get("keys", []))


def _max_age(cache_control: str | None) -> float:
    if not cache_control:
        return _DEFAULT_CACHE_SECONDS
    directives = [d.strip().lower() for d in cache_control.split(",")]
    if "no-store" in directives or "no-cache" in directives:
        return 0
    for directive in directives:
        name, _, value = directive.partition("=")
        if name == "max-age" and value.strip().isdigit():
            return min(int(value), _MAX_CACHE_SECONDS)
    return _DEFAULT_CACHE_SECONDS
