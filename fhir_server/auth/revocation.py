"""Token revocation, RFC 7009 (SAL-73, INF-G5).

Revoking either token of an authorization ends the whole grant: the access token, the
refresh token and every token the grant produced fail from then on. The client
authenticates as at the token endpoint (public clients by ``client_id``). A token that is
unknown, or belongs to another client, is answered 200 and left alone (RFC 7009 2.2):
the answer must not tell a prober which tokens exist.
"""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc7009 import RevocationEndpoint

from fhir_server.auth.introspection import find_token
from fhir_server.auth.server import HttpRequest
from fhir_server.auth.tokens import Token


class SmartRevocationEndpoint(RevocationEndpoint):
    CLIENT_AUTH_METHODS = ["client_secret_basic", "private_key_jwt", "none"]

    def authenticate_token(self, request: HttpRequest, client: Any) -> Token | None:
        self.check_params(request, client)
        token = self.query_token(request.form["token"], request.form.get("token_type_hint"))
        if token is None or not token.check_client(client):
            return None
        return token

    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        return find_token(self.server.services, token_string, token_type_hint)

    def revoke_token(self, token: Token, request: HttpRequest) -> None:
        self.server.services.tokens.revoke_grant(token.grant.grant_id)
        request.revoked = token.claims()  # whose grant ended, for the audit trail
