"""``private_key_jwt``: a client proves who it is with a JWT signed by its own key.

SMART App Launch 2.2 client-confidential-asymmetric.html and RFC 7523 section 3. authlib's
``JWTBearerClientAssertion`` is the base; what it leaves open is done here (research note
4.3, pitfalls 1-3), and every failure is ``invalid_client`` (SAL-22):

- header: ``alg`` RS384 or ES384 (authlib would allow only RS256/ES256), ``kid`` required,
  ``jku`` accepted only if it is the registered JWKS URL;
- key: exactly one key of the registered set (inline, or fetched from its URL) has that
  ``kid``, and its ``kty`` fits ``alg``;
- claims: ``iss`` = ``sub`` = a registered client_id, ``aud`` = our token URL, ``exp`` in the
  future but at most 5 minutes ahead (authlib sets no cap), ``jti`` never seen before for
  this issuer (kept in ``auth_jti`` until the assertion expires).
"""

from __future__ import annotations

import time
from typing import Any

from authlib.oauth2.rfc6749 import InvalidClientError
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7523.client import ASSERTION_TYPE
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import import_key
from sqlalchemy import delete, insert
from sqlalchemy.exc import IntegrityError

from fhir_server.auth.clients import Client, JwksFetchError
from fhir_server.auth.policy import ASSERTION_MAX_LIFETIME, CLOCK_SKEW
from fhir_server.auth.server import AuthServices, HttpRequest
from fhir_server.auth.tables import auth_jti

ALGORITHMS = {"RS384": "RSA", "ES384": "EC"}
_EC_CURVE = {"ES384": "P-384"}


def _fail(description: str) -> InvalidClientError:
    # authlib refuses '"' and '\\' in error descriptions (RFC 6749 5.2).
    clean = "".join(ch for ch in description if 0x20 <= ord(ch) <= 0x7E and ch not in '"\\')
    return InvalidClientError(description=clean[:200])


class PrivateKeyJwt(JWTBearerClientAssertion):
    CLIENT_AUTH_METHOD = "private_key_jwt"  # pitfall 3: authlib calls it client_assertion_jwt

    def __init__(self, services: AuthServices) -> None:
        super().__init__(validate_jti=True, leeway=CLOCK_SKEW)
        self.services = services
        self._purged_at = 0.0

    def __call__(self, query_client: Any, request: HttpRequest) -> Client | None:
        data = request.form
        if data.get("client_assertion_type") != ASSERTION_TYPE or not data.get("client_assertion"):
            return None  # not this method; the next one is tried
        try:
            return self._authenticate(query_client, request, data["client_assertion"])
        except InvalidClientError:
            raise
        except (JoseError, JwksFetchError, ValueError, TypeError, KeyError) as exc:
            raise _fail(f"Invalid client assertion: {exc}") from exc

    def _authenticate(self, query_client: Any, request: HttpRequest, assertion: str) -> Client:
        if len(assertion) > 16 * 1024:
            raise _fail("The client assertion is too large.")
        headers, unverified = self.extract_assertion(assertion)
        alg = headers.get("alg")
        if alg not in ALGORITHMS:
            raise _fail("The assertion must be signed with RS384 or ES384.")
        kid = headers.get("kid")
        if not isinstance(kid, str) or not kid:
            raise _fail("The assertion header needs a kid.")
        client_id = unverified.get("iss")
        if not isinstance(client_id, str) or unverified.get("sub") != client_id:
            raise _fail("The assertion iss and sub must both be the client_id.")
        named = request.form.get("client_id")
        if named and named != client_id:
            raise _fail("client_id does not match the assertion issuer.")
        client: Client | None = query_client(client_id)
        if client is None:
            raise _fail("The client does not exist on this server.")
        if not client.check_endpoint_auth_method(self.CLIENT_AUTH_METHOD, "token"):
            raise _fail("The client is not registered for private_key_jwt.")
        jku = headers.get("jku")
        if jku is not None and jku != client.jwks_uri:
            raise _fail("The jku header is not the registered JWKS URL.")
        key = self._client_key(client, kid, alg)
        token = jwt.decode(assertion, key, algorithms=[alg])
        claims = token.claims
        now = int(time.time())
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or exp > now + ASSERTION_MAX_LIFETIME + CLOCK_SKEW:
            raise _fail("The assertion exp must be at most 5 minutes ahead.")
        self._verify_claims(claims, request.token_url, now)
        request.client = client
        return client

    def _client_key(self, client: Client, kid: str, alg: str) -> Any:
        jwks = self.services.client_keys.for_client(client, kid)
        matches = [k for k in jwks.get("keys", []) if isinstance(k, dict) and k.get("kid") == kid]
        if len(matches) != 1:
            raise _fail("Exactly one registered key must match the assertion kid.")
        jwk = matches[0]
        if jwk.get("kty") != ALGORITHMS[alg]:
            raise _fail("The key type does not fit the assertion alg.")
        if alg in _EC_CURVE and jwk.get("crv") != _EC_CURVE[alg]:
            raise _fail("ES384 needs a P-384 key.")
        if jwk.get("alg") not in (None, alg):
            raise _fail("The key is registered for another algorithm.")
        public = {k: v for k, v in jwk.items() if k not in ("d", "p", "q", "dp", "dq", "qi")}
        return import_key(public)

    def _verify_claims(self, claims: dict[str, Any], token_url: str, now: int) -> None:
        registry = jwt.JWTClaimsRegistry(
            now=now,
            leeway=CLOCK_SKEW,
            iss={"essential": True},
            sub={"essential": True},
            aud={"essential": True, "value": token_url},
            exp={"essential": True},
            jti={"essential": True},
        )
        try:
            registry.validate(claims)
        except JoseError as exc:
            raise _fail(f"Invalid client assertion: {exc.description or exc.error}") from exc
        if not self.validate_jti(claims, claims["jti"]):
            raise _fail("The assertion jti was used before.")

    def validate_jti(self, claims: dict[str, Any], jti: Any) -> bool:
        if not isinstance(jti, str) or not jti or len(jti) > 255:
            return False
        now = int(time.time())
        db = self.services.db
        try:
            with db.writer.begin() as conn:
                conn.execute(
                    insert(auth_jti).values(
                        issuer=str(claims["iss"])[:64],
                        jti=jti,
                        expires_at=int(claims["exp"]) + CLOCK_SKEW,
                    )
                )
        except IntegrityError:
            return False
        if time.monotonic() - self._purged_at > 60:
            self._purged_at = time.monotonic()
            with db.writer.begin() as conn:
                conn.execute(delete(auth_jti).where(auth_jti.c.expires_at < now))
        return True

    def get_audiences(self) -> list[str]:  # pragma: no cover - per request, see _verify_claims
        raise NotImplementedError
