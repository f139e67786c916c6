"""The three grants, as SMART App Launch 2.2 and Backend Services want them.

Each subclasses authlib's grant and closes the gaps the research note lists (section 4.3):

- authorization code: PKCE S256 required for every client -- no challenge, ``plain``, an
  empty or wrong verifier are all refused (SAL-13, pitfall 5); ``aud`` must be our FHIR
  base URL (SAL-12); ``launch`` must be a live launch context for this client (SAL-16);
  codes live a minute and work once, and a replayed code revokes its grant (SAL-14);
- refresh token: only with ``offline_access``/``online_access`` (pitfall 6); rotated on
  every use, replay revokes the grant; bound to its client; the scope may narrow (SAL-61);
  a public client may leave out ``client_id`` (the JS client does, pitfall 10);
- client credentials: ``private_key_jwt`` only, ``system/`` and custom scopes only, 5-minute
  tokens, no refresh token (BDS-02, BDS-03).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from authlib.oauth2.rfc6749 import (
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Error,
)
from authlib.oauth2.rfc6749.grants import (
    AuthorizationCodeGrant,
    ClientCredentialsGrant,
    RefreshTokenGrant,
)
from authlib.oauth2.rfc6749.hooks import hooked
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from fhir_server.access.scopes import Scopes, intersect, is_custom, is_subset, parse, render
from fhir_server.auth.credentials import same
from fhir_server.auth.policy import CODE_TTL
from fhir_server.auth.server import HttpRequest, context_response
from fhir_server.auth.tokens import REFRESH, AuthorizationCode, Grant, Token
from fhir_server.auth.urls import same_url

_PKCE_VALUE = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")


@dataclass(frozen=True, slots=True)
class Approval:
    """What the person approved on the consent page: the grant_user handed to authlib."""

    subject: str
    role: str
    fhir_user: str | None
    scope: str
    context: dict[str, Any]
    auth_time: int
    launch_hash: str | None = None


def _services(grant: Any) -> Any:
    return grant.server.services


# -- authorization code -------------------------------------------------------------------------


class SmartAuthorizationCodeGrant(AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "private_key_jwt", "none"]
    request: HttpRequest

    def validate_authorization_request(self) -> str:
        redirect_uri: str = super().validate_authorization_request()
        try:
            self._validate_smart_request()
        except OAuth2Error as error:
            error.redirect_uri = redirect_uri
            raise
        return redirect_uri

    def _validate_smart_request(self) -> None:
        data = self.request.payload.data
        for name in ("code_challenge", "code_challenge_method", "aud", "launch", "nonce"):
            if len(self.request.payload.datalist.get(name, [])) > 1:
                raise InvalidRequestError(f"Repeated '{name}' parameter.")
        # SAL-13, pitfall 5: S256 for everyone; a missing method would mean "plain".
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("PKCE is required: code_challenge_method must be S256.")
        if not _PKCE_VALUE.match(data.get("code_challenge") or ""):
            raise InvalidRequestError("PKCE is required: a valid code_challenge is missing.")
        # SAL-11/12: aud (or its synonym resource) names the FHIR server the token is for.
        aud = data.get("aud") or data.get("resource")
        if not aud:
            raise InvalidRequestError("The aud parameter (the FHIR base URL) is required.")
        if not same_url(aud, self.request.fhir_base):
            raise InvalidRequestError("The aud parameter does not name this FHIR server.")
        launch = data.get("launch")
        if launch:
            context = _services(self).launches.find(launch)
            if context is None or not context.usable_by(self.client.client_id, int(time.time())):
                raise InvalidRequestError("The launch value is unknown, used or expired.")
            self.request.launch_context = context
        if not self.request.scope:
            raise InvalidScopeError("None of the requested scopes may be granted to this client.")

    def save_authorization_code(self, code: str, request: HttpRequest) -> None:
        approval: Approval = request.user
        services = _services(self)
        data = request.payload.data
        now = int(time.time())
        with services.db.writer.begin() as conn:
            if approval.launch_hash and not services.launches.consume(
                conn, approval.launch_hash, now
            ):
                raise InvalidRequestError("The launch value was used already.")
            services.tokens.issue_code(
                code=code,
                client_id=request.client.client_id,
                redirect_uri=data.get("redirect_uri") or "",
                scope=approval.scope,
                subject=approval.subject,
                role=approval.role,
                fhir_user=approval.fhir_user,
                context=approval.context,
                code_challenge=data["code_challenge"],
                nonce=data.get("nonce"),
                auth_time=approval.auth_time,
                ttl=CODE_TTL,
                conn=conn,
            )

    def query_authorization_code(self, code: str, client: Any) -> AuthorizationCode | None:
        if not isinstance(code, str) or not code or len(code) > 512:
            return None
        tokens = _services(self).tokens
        found = tokens.find_code(code, client.client_id)
        if found is None:
            return None
        if found.used_at is not None:
            # RFC 6749 4.1.2: a code used twice revokes what it produced.
            tokens.revoke_grant(found.grant.grant_id)
            return None
        if found.expires_at <= int(time.time()) or found.grant.revoked_at is not None:
            return None
        return found

    def validate_token_request(self) -> None:
        super().validate_token_request()
        # SAL-13, INF-G2: the verifier must be present, well-formed and match.
        code: AuthorizationCode = self.request.authorization_code
        verifier = self.request.form.get("code_verifier")
        if not verifier:
            raise InvalidRequestError("Missing code_verifier (PKCE is required).")
        if not _PKCE_VALUE.match(verifier):
            raise InvalidRequestError("Malformed code_verifier.")
        if not same(create_s256_code_challenge(verifier), code.code_challenge):
            raise InvalidGrantError("The code_verifier does not match the code_challenge.")

    def authenticate_user(self, authorization_code: AuthorizationCode) -> Grant:
        return authorization_code.grant

    def delete_authorization_code(self, authorization_code: AuthorizationCode) -> None:
        """Codes are claimed (marked used) before tokens are made; nothing left to do."""

    @hooked
    def create_token_response(self) -> tuple[int, dict[str, Any], Any]:
        code: AuthorizationCode = self.request.authorization_code
        if not _services(self).tokens.claim_code(code):
            raise InvalidGrantError("The authorization code was used already.")
        grant = code.grant
        self.request.user = grant
        self.request.grant_id = grant.grant_id
        token = self.generate_token(user=grant, scope=code.scope, include_refresh_token=True)
        self.save_token(token)
        token.update(context_response(grant.context))
        return 200, token, self.TOKEN_RESPONSE_HEADER


# -- refresh token -----------------------------------------------------------------------------


class SmartRefreshTokenGrant(RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "private_key_jwt", "none"]
    INCLUDE_NEW_REFRESH_TOKEN = True
    request: HttpRequest

    def _validate_request_client(self) -> Any:
        form = self.request.form
        presented = (
            self.request.headers.get("Authorization")
            or form.get("client_id")
            or form.get("client_assertion")
        )
        if presented:
            return super()._validate_request_client()
        # Pitfall 10: a public client may refresh without client_id; the token names it.
        token = _services(self).tokens.find(form.get("refresh_token") or "", REFRESH)
        client = self.server.query_client(token.client_id) if token else None
        if client is None or not client.is_public:
            raise InvalidClientError(description="Client authentication is missing.")
        if not client.check_grant_type(self.GRANT_TYPE):
            raise InvalidClientError(description="The client may not refresh tokens.")
        self.request.auth_method = "none"
        return client

    def authenticate_refresh_token(self, refresh_token: str) -> Token | None:
        tokens = _services(self).tokens
        token = tokens.find(refresh_token, REFRESH)
        if token is None:
            return None
        if token.used_at is not None:
            tokens.revoke_grant(token.grant.grant_id)  # a rotated token came back: stolen
            return None
        return token if token.active else None

    def _validate_token_scope(self, token: Token) -> None:
        scope = self.request.payload.scope
        if scope and not is_subset(parse(scope), parse(token.scope)):
            raise InvalidScopeError("A refresh may only narrow the granted scope.")

    def authenticate_user(self, refresh_token: Token) -> Grant:
        return refresh_token.grant

    def revoke_old_credential(self, refresh_token: Token) -> None:
        """The old token was claimed (marked used) before the new ones were made."""

    @hooked
    def create_token_response(self) -> tuple[int, dict[str, Any], Any]:
        old: Token = self.request.refresh_token
        if not _services(self).tokens.claim_refresh(old):
            raise InvalidGrantError("The refresh token was used already.")
        requested = self.request.payload.scope
        scope = render(intersect(parse(requested), parse(old.scope))) if requested else old.scope
        grant = old.grant
        self.request.user = grant
        self.request.grant_id = grant.grant_id
        token = self.generate_token(user=grant, scope=scope, include_refresh_token=True)
        self.save_token(token)
        token.update(context_response(grant.context))
        return 200, token, self.TOKEN_RESPONSE_HEADER


# -- client credentials (SMART Backend Services) --------------------------------------------------


class SmartClientCredentialsGrant(ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["private_key_jwt"]
    request: HttpRequest

    def validate_token_request(self) -> None:
        super().validate_token_request()
        offered = parse(self.client.get_allowed_scope(self.request.payload.scope))
        granted = Scopes(
            offered.of_context("system"), frozenset(s for s in offered.others if is_custom(s))
        )
        if not granted:
            # BDS-02: a request for nothing this client may have fails.
            raise InvalidScopeError("None of the requested scopes may be granted to this client.")
        self.request.scope = render(granted)

    @hooked
    def create_token_response(self) -> tuple[int, dict[str, Any], Any]:
        scope = self.request.scope
        services = _services(self)
        self.request.grant_id = services.tokens.create_grant(
            client_id=self.client.client_id, scope=scope
        )
        token = self.generate_token(scope=scope, include_refresh_token=False)
        self.save_token(token)
        return 200, token, self.TOKEN_RESPONSE_HEADER


__all__ = [
    "Approval",
    "SmartAuthorizationCodeGrant",
    "SmartClientCredentialsGrant",
    "SmartRefreshTokenGrant",
]
