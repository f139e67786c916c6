"""Token introspection, RFC 7662, with the SMART fields (SAL-70..72, INF-I1..I4).

The caller proves who it is with a bearer token of ours (SAL-71: "accepts a scoped SMART
bearer token") or by client authentication (HTTP Basic or private_key_jwt). A client may
introspect the tokens issued to it; a resource server registered with ``__introspect`` may
introspect any. Whatever is inactive, unknown or not the caller's reads ``{"active":
false}`` with status 200 (SAL-72).
"""

from __future__ import annotations

from typing import Any

from authlib.consts import default_json_headers
from authlib.oauth2.rfc6749 import OAuth2Error
from authlib.oauth2.rfc7662 import IntrospectionEndpoint

from fhir_server.access.scopes import Scopes, parse
from fhir_server.auth.id_token import fhir_user_url, subject_of
from fhir_server.auth.policy import INTROSPECT_SCOPE
from fhir_server.auth.server import HttpRequest, context_response
from fhir_server.auth.tokens import ACCESS, REFRESH, Token

HINTS = {"access_token": ACCESS, "refresh_token": REFRESH}


class InvalidTokenError(OAuth2Error):
    """RFC 6750 3.1: the bearer token presented is not valid."""

    error = "invalid_token"
    status_code = 401

    def get_headers(self) -> list[tuple[str, str]]:
        headers: list[tuple[str, str]] = super().get_headers()
        headers.append(("WWW-Authenticate", 'Bearer error="invalid_token"'))
        return headers


def bearer_token(request: Any) -> str | None:
    header = request.headers.get("Authorization") or ""
    scheme, _, value = header.partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def find_token(services: Any, value: str, hint: str | None) -> Token | None:
    kind = HINTS.get(hint or "")
    token: Token | None = services.tokens.find(value, kind)
    if token is None and kind is not None:
        token = services.tokens.find(value)  # a wrong hint is only a hint (RFC 7662 2.1)
    return token


class SmartIntrospectionEndpoint(IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = ["client_secret_basic", "private_key_jwt"]

    def authenticate_endpoint_client(self, request: HttpRequest) -> Any:
        presented = bearer_token(request)
        if presented is None:
            client = super().authenticate_endpoint_client(request)
            request.caller_scopes = client.allowed_scopes  # type: ignore[attr-defined]
            return client
        caller = self.server.services.tokens.find(presented, ACCESS)
        client = self.server.query_client(caller.client_id) if caller else None
        if caller is None or not caller.active or client is None:
            raise InvalidTokenError(description="The bearer token is not active.")
        request.client = client
        request.caller_scopes = parse(caller.scope)  # type: ignore[attr-defined]
        return client

    def check_permission(self, token: Token, client: Any, request: HttpRequest) -> bool:
        scopes: Scopes = getattr(request, "caller_scopes", Scopes())
        return token.client_id == client.get_client_id() or INTROSPECT_SCOPE in scopes

    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        return find_token(self.server.services, token_string, token_type_hint)

    def create_endpoint_response(self, request: HttpRequest) -> tuple[int, dict[str, Any], Any]:
        client = self.authenticate_endpoint_client(request)
        token = self.authenticate_token(request, client)
        if token is None or not token.active:
            return 200, {"active": False}, default_json_headers
        return 200, self.describe(token, request), default_json_headers

    def describe(self, token: Token, request: HttpRequest) -> dict[str, Any]:
        grant = token.grant
        payload: dict[str, Any] = {
            "active": True,
            "scope": token.scope,
            "client_id": token.client_id,
            "exp": token.expires_at,
            "iat": token.issued_at,
            "token_type": "Bearer" if token.kind == ACCESS else "refresh_token",
            "iss": request.fhir_base,
            "aud": request.fhir_base,
        }
        sub = subject_of(grant)
        if sub:
            payload["sub"] = sub
        if grant.fhir_user:
            payload["fhirUser"] = fhir_user_url(request.fhir_base, grant.fhir_user)
        payload.update(context_response(grant.context))
        return payload

    def introspect_token(self, token: Token) -> dict[str, Any]:  # pragma: no cover
        raise NotImplementedError("see describe()")
