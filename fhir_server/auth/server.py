"""The authlib authorization server, adapted to Starlette, and the services behind it.

authlib has no server integration for Starlette/FastAPI (research note 4.2); this module
is that integration, following the pattern the note verified:

1. the route awaits the body (``await request.form()``);
2. :class:`HttpRequest` wraps it as an authlib ``OAuth2Request`` whose payload is the query
   plus the form (that makes POST /authorize work, SAL-10);
3. the synchronous authlib server runs in the thread pool (it waits for the database);
4. :meth:`SmartAuthorizationServer.handle_response` turns its answer into a Starlette
   response.

The grants, the client assertion check, the id_token and the introspection and revocation
endpoints are each in their own module; this one wires them together.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from authlib.oauth2.rfc6749 import AuthorizationServer, OAuth2Request
from authlib.oauth2.rfc6749.requests import OAuth2Payload
from starlette.responses import Response

from fhir_server.access.lookups import may_reach_patient
from fhir_server.access.scopes import OFFLINE_ACCESS, parse
from fhir_server.audit.records import AuditSink
from fhir_server.audit.trail import DisabledAudit
from fhir_server.auth.accounts import Accounts
from fhir_server.auth.clients import Client, ClientKeySets, ClientRegistry
from fhir_server.auth.credentials import new_secret
from fhir_server.auth.keys import SigningKeys
from fhir_server.auth.launch import LaunchContexts
from fhir_server.auth.policy import (
    APP_ACCESS_TTL,
    BACKEND_ACCESS_TTL,
    OFFLINE_REFRESH_TTL,
    ONLINE_REFRESH_TTL,
    Limits,
)
from fhir_server.auth.rate_limits import RateLimits
from fhir_server.auth.sms import SmsSender, sms_sender
from fhir_server.auth.tokens import TokenStore
from fhir_server.auth.urls import auth_base
from fhir_server.config import Settings
from fhir_server.storage.database import Database
from fhir_server.storage.repository import Repository

log = logging.getLogger("selfback.auth")

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


@dataclass
class AuthServices:
    """Everything the authorization server reads and writes, built once per process."""

    settings: Settings
    db: Database
    repository: Repository
    clients: ClientRegistry
    client_keys: ClientKeySets
    keys: SigningKeys
    tokens: TokenStore
    accounts: Accounts
    launches: LaunchContexts
    rate_limits: RateLimits
    limits: Limits
    sms: SmsSender
    # Sign-ins, token requests, introspection, revocation, launches and activation codes
    # are recorded here (fhir_server.audit); mount_auth hands it the server's trail.
    audit: AuditSink = field(default_factory=DisabledAudit)

    @classmethod
    def build(cls, settings: Settings, repository: Repository) -> AuthServices:
        db = repository.db
        return cls(
            settings=settings,
            db=db,
            repository=repository,
            clients=ClientRegistry(db),
            client_keys=ClientKeySets(),
            keys=SigningKeys(db),
            tokens=TokenStore(db),
            accounts=Accounts(db),
            launches=LaunchContexts(db),
            rate_limits=RateLimits(db),
            limits=Limits.from_settings(settings),
            sms=sms_sender(settings),
        )

    def patient_exists(self, patient_id: str) -> bool:
        return self.resource_exists("Patient", patient_id)

    def may_reach_patient(self, role: str | None, fhir_user: str | None, patient_id: str) -> bool:
        """Asked by the authorize step before a patient becomes a token's launch context:
        the patient exists and the access rules let this person reach them
        (fhir_server.access.lookups). The answer for a patient who may not be reached is
        the answer for one who does not exist."""
        return self.patient_exists(patient_id) and may_reach_patient(
            self.repository, self.settings, role=role, fhir_user=fhir_user, patient_id=patient_id
        )

    def resource_exists(self, rtype: str, rid: str) -> bool:
        if not rid or len(rid) > 64:
            return False
        stored = self.repository.read(rtype, rid)
        return stored is not None and not stored.deleted


# -- the request ------------------------------------------------------------------------------


class _Payload(OAuth2Payload):
    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self._datalist: dict[str, list[str]] = {}
        for key, value in pairs:
            self._datalist.setdefault(key, []).append(value)
        self._data = {k: v[0] for k, v in self._datalist.items()}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> dict[str, list[str]]:  # type: ignore[override]
        return self._datalist


class HttpRequest(OAuth2Request):
    """An HTTP request as authlib sees it, plus what this server knows about it.

    ``uri`` is built on the public base URL, not the socket address, so authlib's
    HTTPS-only rule judges what clients actually use (a TLS proxy in front is fine).
    """

    def __init__(
        self,
        method: str,
        uri: str,
        headers: Any,
        pairs: list[tuple[str, str]],
        *,
        fhir_base: str,
        client_ip: str,
    ) -> None:
        super().__init__(method, uri, headers=headers)
        self.payload = _Payload(pairs)
        self._form = dict(self.payload.data)
        self.fhir_base = fhir_base
        self.client_ip = client_ip
        self.grant_id: str | None = None  # the grant the tokens being issued belong to
        self.launch_context: Any = None  # set while validating an EHR launch
        self.issued_access_token: str | None = None  # for the audit record of a token issue
        self.revoked: Any = None  # the Claims of a grant revoked, for its audit record

    @property
    def args(self) -> dict[str, str]:
        return self._form

    @property
    def form(self) -> dict[str, str]:
        return self._form

    @property
    def auth_base(self) -> str:
        return auth_base(self.fhir_base)

    @property
    def token_url(self) -> str:
        return self.auth_base + "/token"


# -- the server -------------------------------------------------------------------------------


class SmartAuthorizationServer(AuthorizationServer):
    def __init__(self, services: AuthServices) -> None:
        super().__init__(scopes_supported=None)
        self.services = services
        # Imported here: those modules subclass authlib pieces and import this one.
        from fhir_server.auth.client_assertion import PrivateKeyJwt
        from fhir_server.auth.grants import (
            SmartAuthorizationCodeGrant,
            SmartClientCredentialsGrant,
            SmartRefreshTokenGrant,
        )
        from fhir_server.auth.id_token import SmartOpenIDCode
        from fhir_server.auth.introspection import SmartIntrospectionEndpoint
        from fhir_server.auth.revocation import SmartRevocationEndpoint

        self.register_token_generator("default", self._generate_token)
        self.register_client_auth_method(PrivateKeyJwt.CLIENT_AUTH_METHOD, PrivateKeyJwt(services))
        self.register_grant(SmartAuthorizationCodeGrant, [SmartOpenIDCode(services)])
        self.register_grant(SmartRefreshTokenGrant)
        self.register_grant(SmartClientCredentialsGrant)
        self.register_endpoint(SmartIntrospectionEndpoint(self))
        self.register_endpoint(SmartRevocationEndpoint(self))

    # -- authlib's framework hooks -----------------------------------------------------

    def query_client(self, client_id: str) -> Client | None:
        client = self.services.clients.get(client_id)
        return client if client is not None and not client.disabled else None

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        if not isinstance(request, HttpRequest):
            raise TypeError("routes hand authlib a prepared HttpRequest")
        return request

    def create_json_request(self, request: Any) -> Any:  # pragma: no cover - unused
        raise NotImplementedError

    def handle_response(
        self, status: int, body: Any, headers: Iterable[tuple[str, str]]
    ) -> Response:
        header_map = {k: v for k, v in headers}
        if isinstance(body, dict):
            header_map.setdefault("Cache-Control", "no-store")
            header_map.setdefault("Pragma", "no-cache")
            header_map["Content-Type"] = "application/json"
            return Response(orjson.dumps(body), status_code=status, headers=header_map)
        if status in (301, 302, 303, 307):
            # The Location may carry a code: keep it out of every cache (RFC 6749 10.3).
            header_map.setdefault("Cache-Control", "no-store")
        return Response(body or b"", status_code=status, headers=header_map)

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        log.debug("auth signal %s", name)

    def save_token(self, token: dict[str, Any], request: HttpRequest) -> None:
        if request.grant_id is None:
            raise RuntimeError("a grant must name its grant_id before tokens are saved")
        scope = token.get("scope", "")
        refresh_ttl = OFFLINE_REFRESH_TTL if OFFLINE_ACCESS in parse(scope) else ONLINE_REFRESH_TTL
        self.services.tokens.save(
            grant_id=request.grant_id,
            client_id=request.client.get_client_id(),
            access_token=token["access_token"],
            scope=scope,
            expires_in=int(token["expires_in"]),
            refresh_token=token.get("refresh_token"),
            refresh_ttl=refresh_ttl,
        )
        request.issued_access_token = token["access_token"]

    # -- tokens ----------------------------------------------------------------------------

    def _generate_token(
        self,
        grant_type: str,
        client: Client,
        user: Any = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        # Pitfall 4.3.4: authlib's default lifetime is 10 days; ours are 1 h and 5 min.
        backend = grant_type == "client_credentials"
        token: dict[str, Any] = {
            "access_token": new_secret(32),
            "token_type": "Bearer",
            "expires_in": BACKEND_ACCESS_TTL if backend else APP_ACCESS_TTL,
            "scope": scope or "",
        }
        # Pitfall 4.3.6: a refresh token only with offline_access or online_access.
        if include_refresh_token and not backend and parse(scope).wants_refresh:
            token["refresh_token"] = new_secret(32)
        return token


def context_response(context: dict[str, Any]) -> dict[str, Any]:
    """The launch-context parameters of a token response (SAL-31, SAL-32)."""
    keys = (
        "patient",
        "encounter",
        "fhirContext",
        "need_patient_banner",
        "smart_style_url",
        "intent",
    )
    return {k: context[k] for k in keys if context.get(k) is not None and context.get(k) != []}
