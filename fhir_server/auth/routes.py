"""HTTP routes of the authorization server, and :func:`mount_auth`, which adds them to the app.

    GET|POST /auth/authorize                     sign-in and consent pages (HTML)
    POST     /auth/token                         authorization_code, refresh_token, client_credentials
    POST     /auth/introspect                    RFC 7662 + SMART fields
    POST     /auth/revoke                        RFC 7009
    GET      /auth/jwks                          the server's public signing keys
    GET      /auth/smart-style.json              the style sheet smart_style_url names
    POST     /auth/launch                        an EHR creates a launch context (bearer, __ehr-launch)
    POST     /fhir/Patient/{id}/$activation-code an activation code for a patient (bearer, __activation-code)
    GET      /fhir/.well-known/smart-configuration
    GET      /fhir/.well-known/openid-configuration, /.well-known/openid-configuration

Errors on /auth are OAuth JSON (RFC 6749 5.2) or, for the pages, HTML; on /fhir they are
OperationOutcomes. Nothing here enforces tokens on the FHIR API (that is the access
module's caller).
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson
from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fhir_server.access.claims import Claims
from fhir_server.audit.records import AccessRecord
from fhir_server.auth import onboarding
from fhir_server.auth.auditing import record_token_endpoint
from fhir_server.auth.authorize import COOKIE, AuthorizeEndpoint, Step
from fhir_server.auth.discovery import openid_configuration, smart_configuration
from fhir_server.auth.framing import apply_framing
from fhir_server.auth.launch import LaunchError, check_fhir_context
from fhir_server.auth.origins import RegisteredOrigins
from fhir_server.auth.policy import (
    ACTIVATION_CODE_TTL,
    ACTIVATION_SCOPE,
    EHR_LAUNCH_SCOPE,
    LAUNCH_TTL,
)
from fhir_server.auth.server import AuthServices, HttpRequest, SmartAuthorizationServer
from fhir_server.client_address import client_address
from fhir_server.config import Settings
from fhir_server.errors import FhirError, operation_outcome
from fhir_server.errors import error as fhir_error
from fhir_server.server_state import ServerState
from fhir_server.storage.repository import Repository
from fhir_server.versioning import now_us

log = logging.getLogger("selfback.auth")

FORM = "application/x-www-form-urlencoded"
MAX_FORM_BYTES = 64 * 1024
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

# The style smart_style_url points at (SMART App Launch 2.2, "styling").
SMART_STYLE = {
    "color_background": "#f4f6f8",
    "color_error": "#b3261e",
    "color_highlight": "#1f5fa8",
    "color_modal_backdrop": "",
    "color_success": "#2e7d32",
    "color_text": "#1d2733",
    "dim_border_radius": "6px",
    "dim_font_size": "16px",
    "dim_spacing_size": "16px",
    "font_family_body": "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
    "font_family_heading": "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
}


class BadForm(Exception):
    pass


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class AuthApp:
    """The authorization server as one object the routes share (``app.state.auth``)."""

    def __init__(self, settings: Settings, repository: Repository) -> None:
        self.services = AuthServices.build(settings, repository)
        self.server = SmartAuthorizationServer(self.services)
        self.authorize = AuthorizeEndpoint(self.server)
        self.services.keys.ensure()
        # Browser origins (CORS) and frame ancestors, cached (fhir_server.auth.origins).
        self.origins = RegisteredOrigins(repository.db, settings.frame_ancestors)

    def claims(self, access_token: str) -> Claims | None:
        """The claims of an active access token, for the FHIR API's access decision."""
        return self.services.tokens.claims(access_token)


def _auth(request: Request) -> AuthApp:
    return request.app.state.auth  # type: ignore[no-any-return]


def fhir_base(request: Request) -> str:
    configured = _auth(request).services.settings.base_url
    if configured:
        return configured.rstrip("/")
    return str(request.base_url).rstrip("/") + "/fhir"


def client_ip(request: Request) -> str:
    """The client's address: the socket peer, or what a trusted proxy forwarded
    (SELFBACK_TRUSTED_PROXIES, fhir_server.client_address)."""
    settings = _auth(request).services.settings
    found = client_address(
        request.client.host if request.client else None,
        request.headers.getlist(settings.forwarded_header),
        settings.trusted_proxies,
        settings.forwarded_header,
    )
    return found or "unknown"


async def read_form(request: Request) -> list[tuple[str, str]]:
    """An urlencoded body as pairs, refused when too large, not urlencoded or not UTF-8."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != FORM:
        raise BadForm(f"the body must be {FORM}")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_FORM_BYTES:
        raise BadForm("the body is too large")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise BadForm("the body is too large")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=200)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadForm("the body is not valid form data") from exc
    return checked(pairs)


def checked(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Parameters without control characters: OAuth parameters are printable (RFC 6749
    Appendix A), and what people type into the forms has no reason to hold any."""
    for key, value in pairs:
        if _CONTROL.search(key) or _CONTROL.search(value):
            raise BadForm("parameters must not contain control characters")
    return pairs


def oauth_error(
    status: int, error: str, description: str, headers: dict[str, str] | None = None
) -> Response:
    body = orjson.dumps({"error": error, "error_description": description})
    return Response(
        body,
        status_code=status,
        media_type="application/json",
        headers={**NO_STORE, **(headers or {})},
    )


def http_request(request: Request, pairs: list[tuple[str, str]], path: str) -> HttpRequest:
    base = fhir_base(request)
    from fhir_server.auth.urls import auth_base

    return HttpRequest(
        request.method,
        auth_base(base) + path,
        request.headers,
        pairs,
        fhir_base=base,
        client_ip=client_ip(request),
    )


# -- authorize --------------------------------------------------------------------------------


async def authorize(request: Request) -> Response:
    """The sign-in pages, with the framing rules of fhir_server.auth.framing."""
    auth = _auth(request)
    response = await _authorize(request, auth)
    sets = auth.origins.cached() or await run_in_threadpool(auth.origins.load)
    framed = request.headers.get("sec-fetch-dest") == "iframe"
    return apply_framing(response, sets.frame_ancestors, framed)


async def _authorize(request: Request, auth: AuthApp) -> Response:
    try:
        pairs = checked(list(request.query_params.multi_items()))
        if request.method == "POST":
            pairs += await read_form(request)
    except BadForm as exc:
        return Response(str(exc), status_code=400, media_type="text/plain")
    names = {k for k, _ in pairs}
    if "flow" in names and request.method != "POST":
        # Sign-in steps change state: they are form posts, never links.
        return Response("sign-in steps are POSTed", status_code=405, headers={"Allow": "POST"})
    if "flow" in names:
        form: dict[str, str] = {}
        scopes: list[str] = []
        for key, value in pairs:
            if key == "scope":
                scopes.append(value)
            else:
                form.setdefault(key, value)
        step = Step(form.get("action", ""), form, scopes, request.cookies.get(COOKIE))
        prepared = http_request(request, [], "/authorize")
        return await run_in_threadpool(auth.authorize.step, prepared, step)
    prepared = http_request(request, pairs, "/authorize")
    try:
        return await run_in_threadpool(
            auth.authorize.begin,
            prepared,
            request.headers.get("accept-language"),
            request.cookies.get(COOKIE),
        )
    except ValueError as exc:
        if not _undescribable(exc):
            raise
        return Response("malformed authorization request", status_code=400, media_type="text/plain")


# -- token, introspection, revocation -----------------------------------------------------------


async def token(request: Request) -> Response:
    return await _token_endpoint(request, "/token", lambda s, r: s.create_token_response(r))


async def introspect(request: Request) -> Response:
    return await _token_endpoint(
        request, "/introspect", lambda s, r: s.create_endpoint_response("introspection", r)
    )


async def revoke(request: Request) -> Response:
    return await _token_endpoint(
        request, "/revoke", lambda s, r: s.create_endpoint_response("revocation", r)
    )


async def _token_endpoint(request: Request, path: str, call: Any) -> Response:
    auth = _auth(request)
    try:
        pairs = await read_form(request)
    except BadForm as exc:
        refused = oauth_error(400, "invalid_request", str(exc))
        _audit_token_endpoint(auth, path, http_request(request, [], path), refused)
        return refused
    prepared = http_request(request, pairs, path)
    # CORS (SAL-82: browsers of registered origins only) is the outer layer's,
    # fhir_server/cors.py.
    response: Response = await run_in_threadpool(_answer_token_endpoint, auth, path, call, prepared)
    return response


def _answer_token_endpoint(auth: AuthApp, path: str, call: Any, prepared: HttpRequest) -> Response:
    """authlib's answer, recorded in the audit trail (in the thread pool: resolving the
    issued token to its claims for the record reads the database)."""
    try:
        response: Response = call(auth.server, prepared)
    except ValueError as exc:
        if not _undescribable(exc):
            raise
        response = oauth_error(400, "invalid_request", "The request is malformed.")
    _audit_token_endpoint(auth, path, prepared, response)
    return response


def _audit_token_endpoint(
    auth: AuthApp, path: str, prepared: HttpRequest, response: Response
) -> None:
    services = auth.services
    record_token_endpoint(
        services.audit,
        path,
        prepared,
        response.status_code,
        bytes(response.body),
        services.tokens.claims,
    )


def _undescribable(exc: ValueError) -> bool:
    """authlib refuses to build an error whose description would quote a '"' or a
    backslash the client sent (RFC 6749 5.2 limits the characters); such a request is
    malformed, so it is answered 400 without the quote."""
    return str(exc).startswith("Error description contains forbidden characters")


# -- keys and discovery -------------------------------------------------------------------------


def _json(body: Any, headers: dict[str, str] | None = None, status: int = 200) -> Response:
    # SAL-01: application/json whatever the Accept header says.
    return Response(
        orjson.dumps(body), status_code=status, media_type="application/json", headers=headers
    )


async def jwks(request: Request) -> Response:
    keys = await run_in_threadpool(_auth(request).services.keys.jwks)
    return _json(keys, {"Cache-Control": "public, max-age=300"})


async def smart_style(request: Request) -> Response:
    return _json(SMART_STYLE, {"Cache-Control": "public, max-age=3600"})


async def smart_config(request: Request) -> Response:
    return _json(smart_configuration(fhir_base(request)), {"Cache-Control": "max-age=300"})


async def openid_config(request: Request) -> Response:
    return _json(openid_configuration(fhir_base(request)), {"Cache-Control": "max-age=300"})


# -- EHR launch contexts ---------------------------------------------------------------------------


def _bearer(request: Request) -> str | None:
    scheme, _, value = (request.headers.get("authorization") or "").partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def _audit(
    auth: AuthApp,
    request: Request,
    action: str,
    status: int,
    claims: Claims | None,
    reason: str,
    *,
    patient: str | None = None,
    resource: tuple[str, str] | None = None,
) -> None:
    """One launch or activation-code answer, recorded in the audit trail."""
    auth.services.audit.record(
        AccessRecord(
            action=action,
            outcome=status,
            at_us=now_us(),
            claims=claims,
            client_id=claims.client_id if claims else None,
            resource_type=resource[0] if resource else None,
            resource_id=resource[1] if resource else None,
            patient_ids=(patient,) if patient else (),
            client_ip=client_ip(request),
            reason=reason,
        )
    )


async def create_launch(request: Request) -> Response:
    auth = _auth(request)
    presented = _bearer(request)
    claims = await run_in_threadpool(auth.claims, presented) if presented else None
    if claims is None:
        _audit(auth, request, "launch", 401, None, "no valid bearer token")
        return oauth_error(
            401,
            "invalid_token",
            "A valid bearer token is required.",
            {"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    if EHR_LAUNCH_SCOPE not in claims.scopes:
        _audit(auth, request, "launch", 403, claims, f"the token lacks {EHR_LAUNCH_SCOPE}")
        return oauth_error(
            403,
            "insufficient_scope",
            f"Creating launch contexts needs the {EHR_LAUNCH_SCOPE} scope.",
            {"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{EHR_LAUNCH_SCOPE}"'},
        )
    body: dict[str, Any] = {}
    try:
        body = await _json_or_form(request)
        response = await run_in_threadpool(_create_launch, auth, claims, body, fhir_base(request))
        reason = f"launch context for {body.get('fhirUser') or body.get('practitioner')}"
        if body.get("client_id"):
            reason += f" with client {body.get('client_id')}"
    except (BadForm, LaunchError) as exc:
        response = oauth_error(400, "invalid_request", str(exc))
        reason = str(exc)
    try:
        patient = _id_of(body.get("patient"), "Patient")
    except LaunchError:
        patient = None
    _audit(auth, request, "launch", response.status_code, claims, reason, patient=patient)
    return response


async def _json_or_form(request: Request) -> dict[str, Any]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == FORM:
        return dict(await read_form(request))
    if content_type not in ("application/json", "application/fhir+json"):
        raise BadForm("send the launch context as application/json")
    raw = await request.body()
    if len(raw) > MAX_FORM_BYTES:
        raise BadForm("the body is too large")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadForm("the body is not valid JSON") from exc
    if not isinstance(body, dict):
        raise BadForm("the body must be a JSON object")
    return body


_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")  # FHIR R4 datatypes.html#id
_CLIENT_ID = re.compile(r"^[\x21-\x7e]{1,64}$")


def _id_of(value: Any, rtype: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise LaunchError(f"{rtype} must be an id or a {rtype}/<id> reference")
    rid = value[len(rtype) + 1 :] if value.startswith(rtype + "/") else value
    if not _FHIR_ID.match(rid):
        raise LaunchError(f"{rtype} must be an id or a {rtype}/<id> reference")
    return rid


def _create_launch(auth: AuthApp, claims: Claims, body: dict[str, Any], base: str) -> Response:
    services = auth.services
    patient = _id_of(body.get("patient"), "Patient")
    encounter = _id_of(body.get("encounter"), "Encounter")
    user = body.get("fhirUser") or body.get("practitioner")
    if not isinstance(user, str) or "/" not in user:
        raise LaunchError("fhirUser (e.g. Practitioner/123) names the clinician who launches")
    user_type, _, user_id = user.partition("/")
    if user_type not in ("Practitioner", "PractitionerRole") or not _FHIR_ID.match(user_id):
        raise LaunchError("an EHR launch is made by a Practitioner or PractitionerRole")
    if not services.resource_exists(*user.split("/", 1)):
        raise LaunchError(f"{user} is not known")
    if patient is not None and not services.patient_exists(patient):
        raise LaunchError(f"Patient/{patient} is not known")
    if encounter is not None and not services.resource_exists("Encounter", encounter):
        raise LaunchError(f"Encounter/{encounter} is not known")
    client_id = body.get("client_id")
    if client_id is not None and (
        not isinstance(client_id, str) or not _CLIENT_ID.match(client_id)
    ):
        raise LaunchError("client_id must be a registered client's id")
    client = services.clients.get(client_id) if client_id else None
    if client_id and client is None:
        raise LaunchError(f"client {client_id} is not registered")
    banner = body.get("need_patient_banner", False)
    if not isinstance(banner, bool):
        banner = str(banner).lower() in ("true", "1", "yes")
    intent = body.get("intent")
    context = {
        "fhirUser": user,
        "patient": patient,
        "encounter": encounter,
        "fhirContext": check_fhir_context(body.get("fhirContext")),
        "need_patient_banner": banner,
        "intent": intent if isinstance(intent, str) else None,
    }
    value, expires_at = services.launches.create(
        created_by=claims.client_id, client_id=client_id, context=context, ttl=LAUNCH_TTL
    )
    answer: dict[str, Any] = {"launch": value, "expires_in": LAUNCH_TTL, "iss": base}
    if client is not None and client.launch_uri:
        separator = "&" if "?" in client.launch_uri else "?"
        answer["launch_url"] = (
            client.launch_uri + separator + urlencode({"iss": base, "launch": value})
        )
    log.info("launch context by %s for %s on Patient/%s", claims.client_id, user, patient)
    return _json(answer, NO_STORE, status=201)


# -- Patient/{id}/$activation-code ---------------------------------------------------------------


def _outcome(exc: FhirError) -> Response:
    return Response(
        orjson.dumps(operation_outcome(exc.issues)),
        status_code=exc.status,
        media_type="application/fhir+json",
        headers={**NO_STORE, **exc.headers},
    )


async def activation_code(request: Request) -> Response:
    auth = _auth(request)
    presented = _bearer(request)
    claims = await run_in_threadpool(auth.claims, presented) if presented else None
    patient_id = request.path_params["id"]
    target = patient_id if _FHIR_ID.match(patient_id) else None
    resource = ("Patient", target) if target else None

    def audit(status: int, who: Claims | None, reason: str) -> None:
        _audit(
            auth, request, "activation-code", status, who, reason, patient=target, resource=resource
        )

    if claims is None:
        audit(401, None, "no valid bearer token")
        problem = fhir_error(401, "login", "A valid bearer token is required")
        problem.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
        return _outcome(problem)
    if ACTIVATION_SCOPE not in claims.scopes:
        audit(403, claims, f"the token lacks {ACTIVATION_SCOPE}")
        problem = fhir_error(
            403, "forbidden", f"Creating activation codes needs the {ACTIVATION_SCOPE} scope"
        )
        problem.headers["WWW-Authenticate"] = (
            f'Bearer error="insufficient_scope", scope="{ACTIVATION_SCOPE}"'
        )
        return _outcome(problem)
    ttl, reenrol = ACTIVATION_CODE_TTL, False
    if request.headers.get("content-length") not in (None, "0"):
        try:
            ttl, reenrol = _activation_parameters(await _json_or_form(request))
        except (BadForm, FhirError) as exc:
            problem = exc if isinstance(exc, FhirError) else fhir_error(400, "invalid", str(exc))
            audit(problem.status, claims, "; ".join(i.diagnostics for i in problem.issues))
            return _outcome(problem)
    if target is None:
        audit(404, claims, "not a valid Patient id")
        return _outcome(fhir_error(404, "not-found", "No Patient has that id"))
    # Issuing, voiding, refusing and their audit events: fhir_server/auth/onboarding.py.
    return await run_in_threadpool(
        _activation_code, auth, claims, patient_id, ttl, reenrol, client_ip(request)
    )


def _activation_parameters(body: dict[str, Any]) -> tuple[int, bool]:
    """Parameters.parameter: validityHours (valueInteger, 1..720 hours) and reenrol
    (valueBoolean: move the patient's existing account to the phone the code is redeemed
    with -- issue 10 item 5)."""
    ttl, reenrol = ACTIVATION_CODE_TTL, False
    parameters = body.get("parameter") or []
    if not isinstance(parameters, list):
        raise fhir_error(400, "invalid", "parameter must be a list")
    for parameter in parameters:
        if not isinstance(parameter, dict):
            continue
        if parameter.get("name") == "validityHours":
            hours = parameter.get("valueInteger")
            if not isinstance(hours, int) or isinstance(hours, bool) or not 1 <= hours <= 720:
                raise fhir_error(400, "invalid", "validityHours must be an integer from 1 to 720")
            ttl = hours * 3600
        elif parameter.get("name") == "reenrol":
            value = parameter.get("valueBoolean")
            if not isinstance(value, bool):
                raise fhir_error(400, "invalid", "reenrol must be a valueBoolean")
            reenrol = value
    return ttl, reenrol


def _activation_code(
    auth: AuthApp,
    claims: Claims,
    patient_id: str,
    ttl: int,
    reenrol: bool,
    address: str | None,
) -> Response:
    from datetime import UTC, datetime

    issued = onboarding.issue(
        auth.services, claims, patient_id, ttl=ttl, reenrol=reenrol, client_ip=address
    )
    if isinstance(issued, onboarding.Refusal):
        return _outcome(fhir_error(issued.status, issued.code, issued.text))
    log.info(
        "activation code for Patient/%s by %s", patient_id, claims.fhir_user or claims.client_id
    )
    expires = datetime.fromtimestamp(issued.expires_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    parameters = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "code", "valueString": issued.code},
            {"name": "expires", "valueInstant": expires},
            {"name": "patient", "valueReference": {"reference": f"Patient/{patient_id}"}},
            {"name": "reenrol", "valueBoolean": issued.reenrol},
            {"name": "voided", "valueInteger": issued.voided},
        ],
    }
    return Response(orjson.dumps(parameters), media_type="application/fhir+json", headers=NO_STORE)


# -- mounting ------------------------------------------------------------------------------------

ROUTES = [
    Route("/auth/authorize", authorize, methods=["GET", "POST"]),
    Route("/auth/token", token, methods=["POST"]),
    Route("/auth/introspect", introspect, methods=["POST"]),
    Route("/auth/revoke", revoke, methods=["POST"]),
    Route("/auth/jwks", jwks, methods=["GET"]),
    Route("/auth/smart-style.json", smart_style, methods=["GET"]),
    Route("/auth/launch", create_launch, methods=["POST"]),
    Route("/fhir/Patient/{id}/$activation-code", activation_code, methods=["POST"]),
    Route("/fhir/.well-known/smart-configuration", smart_config, methods=["GET"]),
    Route("/fhir/.well-known/openid-configuration", openid_config, methods=["GET"]),
    Route("/.well-known/openid-configuration", openid_config, methods=["GET"]),
]


def mount_auth(app: FastAPI, state: ServerState) -> AuthApp:
    """Add the authorization server to ``app`` (as ``app.state.auth``). Its routes go
    first, so ``/fhir/.well-known/...`` is not taken for a read of type ``.well-known``."""
    auth = AuthApp(state.settings, state.repository)
    auth.services.audit = state.audit
    app.state.auth = auth
    app.router.routes[0:0] = ROUTES
    return auth
