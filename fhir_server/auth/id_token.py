"""OpenID Connect id_token for ``openid`` (and ``fhirUser``) scopes (SAL-50, INF-O1..O6).

authlib's ``OpenIDCode`` extension decides when an id_token is due and checks ``nonce``
and ``prompt``; this subclass signs it with the server's current RS256 key, naming its
``kid``, with ``iss`` = the FHIR base URL, ``aud`` = the client_id (a string, as Inferno
compares it), ``sub`` = the account, and ``fhirUser`` = the absolute URL of the user's
FHIR resource.
"""

from __future__ import annotations

import time
from typing import Any

from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from authlib.oidc.core.util import create_half_hash
from joserfc import jwt

from fhir_server.access.scopes import FHIR_USER
from fhir_server.auth.keys import SIGNING_ALG
from fhir_server.auth.policy import ID_TOKEN_TTL
from fhir_server.auth.server import AuthServices, HttpRequest
from fhir_server.auth.tokens import Grant


def subject_of(grant: Grant) -> str | None:
    """The OIDC ``sub``: the account id, or the EHR's user reference when there is none."""
    return grant.subject or grant.fhir_user


def fhir_user_url(fhir_base: str, fhir_user: str | None) -> str | None:
    return f"{fhir_base.rstrip('/')}/{fhir_user}" if fhir_user else None


class SmartOpenIDCode(OpenIDCode):
    def __init__(self, services: AuthServices) -> None:
        super().__init__(require_nonce=False)
        self.services = services

    def exists_nonce(self, nonce: str, request: Any) -> bool:
        # The nonce is bound into the id_token and checked by the client (OIDC Core
        # 3.1.3.7); codes are single use, so a replayed nonce gains nothing here.
        return False

    def generate_user_info(self, user: Grant, scope: str) -> UserInfo:
        info = UserInfo(sub=subject_of(user))
        return info

    def encode_id_token(self, token: dict[str, Any], request: HttpRequest) -> str:
        key = self.services.keys.current()
        grant: Grant = request.user
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": request.fhir_base,
            "aud": request.client.get_client_id(),
            "iat": now,
            "exp": now + ID_TOKEN_TTL,
            "sub": subject_of(grant),
        }
        code = request.authorization_code
        if code is not None:
            claims.update(self.get_authorization_code_claims(code))
        at_hash = create_half_hash(token["access_token"], SIGNING_ALG)
        if at_hash is not None:
            claims["at_hash"] = at_hash.decode("ascii")
        if FHIR_USER in token.get("scope", "").split() and grant.fhir_user:
            claims["fhirUser"] = fhir_user_url(request.fhir_base, grant.fhir_user)
        header = {"alg": SIGNING_ALG, "kid": key.kid, "typ": "JWT"}
        return jwt.encode(header, claims, key.key, algorithms=[SIGNING_ALG])
