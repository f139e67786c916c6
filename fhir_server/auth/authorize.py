"""The authorize endpoint: validate the request, sign the person in, ask for consent.

SMART App Launch 2.2 app-launch.html, RFC 6749 4.1. A request (GET or POST, SAL-10) is
first validated by authlib and our grant (client, redirect_uri, PKCE, aud, launch, scope).
Errors before the client and redirect_uri are known show an error page; later ones go
back to the app with ``error`` and ``state`` (SAL-15).

A valid request starts a *sign-in*: a row in ``auth_login_flow`` named by an unguessable
handle that every form carries (hidden ``flow``) and bound to the browser by a cookie.
Steps, one page each:

    standalone:  start --activation code--> phone --SMS--> code --> consent
                 start --phone (returning patient)------> code --> consent
                 start --user name + password (clinician)--------> consent
                 start --user name + password --TOTP code (enrolled)--> consent
    EHR launch:  consent (the EHR vouched for the practitioner in the launch context)

On *Allow* the code is issued through authlib and the browser is redirected to the app.
The offered scope is requested ∩ client registration ∩ the person's role; the person may
untick scopes (INF-G10), and a clinician without launch context may pick a patient.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from authlib.oauth2.rfc6749 import OAuth2Error
from sqlalchemy import delete, insert, select, update
from starlette.responses import HTMLResponse, Response

from fhir_server.access.claims import PATIENT, Claims
from fhir_server.access.scopes import (
    FHIR_USER,
    LAUNCH,
    LAUNCH_ENCOUNTER,
    LAUNCH_PATIENT,
    Scopes,
    intersect,
    parse,
    render,
)
from fhir_server.auth import pages
from fhir_server.auth.accounts import Account, normalise_phone
from fhir_server.auth.auditing import person, record_login
from fhir_server.auth.credentials import digest, new_secret, same
from fhir_server.auth.grants import Approval
from fhir_server.auth.login import Login, mask_phone
from fhir_server.auth.messages import LOCALES, pick_locale, text
from fhir_server.auth.onboarding import record_onboarding
from fhir_server.auth.policy import LOGIN_FLOW_TTL, ROLE_SCOPES
from fhir_server.auth.server import HttpRequest, SmartAuthorizationServer
from fhir_server.auth.tables import auth_login_flow
from fhir_server.auth.urls import auth_base

log = logging.getLogger("selfback.auth.authorize")

COOKIE = "selfback_signin"
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


@dataclass
class Flow:
    key: str  # the digest of the handle
    handle: str  # what the forms carry
    params: dict[str, str]  # the validated authorize request
    state: dict[str, Any]
    expires_at: int


@dataclass
class Step:
    """What one form submission asks for."""

    action: str
    form: dict[str, str]
    scopes: list[str] = field(default_factory=list)  # the ticked consent boxes
    cookie: str | None = None


class LoginFlows:
    def __init__(self, db: Any) -> None:
        self.db = db

    def create(self, params: dict[str, str], state: dict[str, Any]) -> Flow:
        now = int(time.time())
        handle = new_secret(32)
        flow = Flow(digest(handle), handle, params, state, now + LOGIN_FLOW_TTL)
        with self.db.writer.begin() as conn:
            conn.execute(delete(auth_login_flow).where(auth_login_flow.c.expires_at < now))
            conn.execute(
                insert(auth_login_flow).values(
                    flow_hash=flow.key,
                    request=orjson.dumps(params).decode(),
                    state=orjson.dumps(state).decode(),
                    created_at=now,
                    expires_at=flow.expires_at,
                )
            )
        return flow

    def get(self, handle: str) -> Flow | None:
        if not handle or len(handle) > 128:
            return None
        key = digest(handle)
        with self.db.reader.connect() as conn:
            row = conn.execute(
                select(auth_login_flow).where(auth_login_flow.c.flow_hash == key)
            ).first()
        if row is None or row.expires_at <= int(time.time()):
            return None
        return Flow(key, handle, orjson.loads(row.request), orjson.loads(row.state), row.expires_at)

    def save(self, flow: Flow) -> None:
        with self.db.writer.begin() as conn:
            conn.execute(
                update(auth_login_flow)
                .where(auth_login_flow.c.flow_hash == flow.key)
                .values(state=orjson.dumps(flow.state).decode())
            )

    def end(self, flow: Flow) -> None:
        with self.db.writer.begin() as conn:
            conn.execute(delete(auth_login_flow).where(auth_login_flow.c.flow_hash == flow.key))


def html(body: str, status: int = 200, cookie: tuple[str, bool] | None = None) -> Response:
    response = HTMLResponse(body, status_code=status, headers=PAGE_HEADERS)
    if cookie is not None:
        value, secure = cookie
        response.set_cookie(
            COOKIE,
            value,
            max_age=LOGIN_FLOW_TTL,
            path="/",
            httponly=True,
            samesite="lax",
            secure=secure,
        )
    return response


class AuthorizeEndpoint:
    def __init__(self, server: SmartAuthorizationServer) -> None:
        self.server = server
        self.services = server.services
        self.flows = LoginFlows(server.services.db)
        self.login = Login(server.services)

    # -- the authorization request ---------------------------------------------------------

    def begin(
        self, request: HttpRequest, accept_language: str | None, cookie: str | None = None
    ) -> Response:
        locale = pick_locale(request.payload.data.get("ui_locales"), accept_language)
        try:
            self.server.get_consent_grant(request=request, end_user=None)
        except OAuth2Error as error:
            return self._refuse(request, error, locale)
        client = request.client
        # One browser secret per browser, so sign-ins in two tabs do not evict each other.
        if not cookie or len(cookie) != 32:
            cookie = new_secret(24)
        state: dict[str, Any] = {
            "step": "start",
            "locale": locale,
            "browser": digest(cookie),
            "fhir_base": request.fhir_base,
            "client_name": client.name,
            "scope": request.scope,  # requested ∩ client registration
        }
        launch = request.launch_context
        if launch is not None:
            practitioner = launch.context.get("fhirUser")
            account = self.services.accounts.by_fhir_user(practitioner) if practitioner else None
            state["launch_hash"] = launch.launch_hash
            state["launch"] = launch.context
            role = account.role if account and account.role != PATIENT else "practitioner"
            self._signed_in(
                state,
                subject=account.account_id if account else None,
                role=role,
                fhir_user=practitioner,
                display=practitioner or "",
            )
            who = person(
                client.get_client_id(),
                subject=account.account_id if account else None,
                role=role,
                fhir_user=practitioner,
                patient=launch.context.get("patient"),
            )
            self._audit_login(request, client.get_client_id(), 200, "EHR launch", who)
        params = dict(request.payload.data)
        flow = self.flows.create(params, state)
        secure = request.fhir_base.startswith("https:")
        return html(self._render(flow), cookie=(cookie, secure))

    def _refuse(self, request: HttpRequest, error: OAuth2Error, locale: str) -> Response:
        if error.redirect_uri:
            error.state = request.payload.state
            return self.server.handle_error_response(request, error)  # type: ignore[no-any-return]
        key = (
            "error_bad_client"
            if error.error in ("invalid_client", "unauthorized_client")
            else "error_bad_request"
        )
        detail = f"{error.error}: {error.description}" if error.description else error.error
        return html(pages.error_page(locale, text(locale, key), detail or ""), status=400)

    # -- the steps -------------------------------------------------------------------------

    def step(self, request: HttpRequest, step: Step) -> Response:
        flow = self.flows.get(step.form.get("flow", ""))
        locale = (
            pick_locale(step.form.get("locale"), None)
            if step.form.get("locale") in LOCALES
            else "en"
        )
        if (
            flow is None
            or not step.cookie
            or not same(digest(step.cookie), flow.state.get("browser", ""))
        ):
            return html(pages.error_page(locale, text(locale, "error_flow_expired")), status=400)
        handler = {
            "locale": self._locale,
            "restart": self._restart,
            "activate": self._activate,
            "phone": self._phone,
            "resend": self._resend,
            "otp": self._otp,
            "password": self._password,
            "totp": self._totp,
            "approve": self._approve,
            "deny": self._deny,
        }.get(step.action)
        if handler is None:
            return html(self._render(flow, "error_unknown_action"), status=400)
        return handler(flow, request, step)

    def _locale(self, flow: Flow, request: HttpRequest, step: Step) -> Response:
        if step.form.get("locale") in LOCALES:
            flow.state["locale"] = step.form["locale"]
            self.flows.save(flow)
        return html(self._render(flow))

    def _restart(self, flow: Flow, request: HttpRequest, step: Step) -> Response:
        if flow.state.get("step") in ("phone", "otp", "totp"):
            for key in (
                "pending",
                "mode",
                "patient_id",
                "activation_hash",
                "phone",
                "otp_hash",
                "otp_expires_at",
            ):
                flow.state.pop(key, None)
            flow.state["step"] = "start"
            self.flows.save(flow)
        return html(self._render(flow))

    def _activate(self, flow: Flow, request: HttpRequest, step: Step) -> Response:
        if flow.state["step"] != "start":
            return html(self._render(flow, "error_unknown_action"), status=400)
        error = self.login.check_activation(
            step.form.get("activation_code", ""), request.client_ip, flow.key, flow.state
        )
        if error is None:
            flow.state["step"] = "phone"
            self.flows.save(flow)
        else:
            self._audit_login(request, flow, 400, f"activation code refused ({error})")
        return html(self._render(flow, error), status=200 if error is None else 400)

    def _phone(self, flow: Flow, request: HttpRequest, step: Step) -> Response:
        if flow.state["step"] not in ("start", "phone"):
            return html(self._render(flow, "error_unknown_action"), status=400)
        phone = normalise_phone(step.form.get("phone", ""))
        if phone is None:
            return html(self._render(flow, "error_phone_invalid"), status=400)
        onboarding = flow.state.get("mode") == "onboarding"
        if onboarding:
            owner = self.services.accounts.by_phone(phone)
            if owner is not None and owner.fhir_user != f"Patient/{flow.state['patient_id']}":
                self._audit_login(request, flow, 400, "phone refused (error_phone_taken)")
                return html(self._render(flow, "error_phone_taken"), status=400)
            deliver = True
        else:
            flow.state["mode"] = "returning"
            account = self.services.accounts.by_phone(phone)
            deliver = account is not None and account.role == PATIENT and not account.disabled
        error = self.login.send_code(
            phone, request.client_ip, flow.key, flow.state, deliver=deliver
        )
        status = 200 if error is None else 429 if error and "throttled" in error else 400
        if error is None:
            flow.state["step"] = "otp"
            self.flows.save(flow)
        else:
            self._audit_login(request, flow, status, f"SMS code not sent ({error})")
            if flow.state["step"] == "start" and not onboarding:
                flow.state.pop("mode", None)
        return html(self._render(flow, error), status=status)

    def _resend(self, flow: Flow, request: HttpRequest, step: Step) -> Response:
        phone = flow.state.get("phone")
        if flow.state["step"] != "otp" or not phone:
            return html(self._render(flow, "error_unknown_action"), status=400)
        if flow.state.get("mode") == "onboarding":
            deliver = True
        else:
            account = self.services.accounts.by_phone(phone)
            deliver = account is not None and account.role == PATIENT and not account.disabled
        error = self.login.send_code(
            phone, request.client_ip, flow.key, flow.state, deliver=deliver
        )
        self.flows.save(flow)
        if error is not None:
            self._audit_login(request, flow, 429, f"SMS code not sent ({error})")
        return html(self._render(flow, error), status=200 if error is None else 429)

    def _otp(self, flow: Flow, request: HttpRequest, step: Step) -> Response:
        if flow.state["step"] != "otp":
            return html(self._render(flow, "error_unknown_action"), status=400)
        error = self.login.check_code(step.form.get("otp", ""), flow.key, flow.state)
        if error is not None:
            self.flows.save(flow)
            self._audit_login(request, flow, 400, f"SMS code refused ({error})")
            return html(self._render(flow, error), status=400)
        phone = flow.state["phone"]
        account: Account | None
        if flow.state.get("mode") == "onboarding":
            # Redeeming the code, its refusals and a re-enrolment's revocations:
            # fhir_server/auth/login.py, accounts.py, onboarding.py (issue 10 item 5).
            done = self.login.complete_onboarding(request.client_ip, flow.key, flow.state)
            record_onboarding(
                self.services.audit,
                request,
                flow.params.get("client_id"),
                flow.state["patient_id"],
                done,
            )
            if isinstance(done, str):
                flow.state["step"] = "start"
                self.flows.save(flow)
                self._audit_login(request, flow, 400, f"activation refused ({done})")
                return html(self._render(flow, done), status=400)
            account = done.account
            log.info("patient account %s activated for %s", account.account_id, account.fhir_user)
        else:
            account = self.services.accounts.by_phone(phone)
            if account is None or account.role != PATIENT or account.disabled:
                self._audit_login(request, flow, 400, "no active patient account for the phone")
                return html(self._render(flow, "error_otp_invalid"), status=400)
        self._signed_in(
            flow.state,
            subject=account.account_id,
            role=account.role,
            fhir_user=account.fhir_user,
            display=mask_phone(phone),
        )
        self.flows.save(flow)
        how = "activation" if flow.state.get("mode") == "onboarding" else "SMS code"
        self._audit_login(request, flow, 200, f"signed in ({how})", self._who(flow))
        return html(self._render(flow))

    def _password(self, flow: Flow, request: HttpRequest, step: Step) -> Response:
        if flow.state["step"] != "start":
            return html(self._render(flow, "error_unknown_action"), status=400)
        result = self.login.check_password(
            step.form.get("username", ""), step.form.get("password", ""), request.client_ip
        )
        if isinstance(result, str):
            status = 429 if "locked" in result else 400
            username = step.form.get("username", "")[:64]
            self._audit_login(
                request, flow, status, f"password refused for '{username}' ({result})"
            )
            return html(self._render(flow, result), status=status)
        user = {
            "subject": result.account_id,
            "role": result.role,
            "fhir_user": result.fhir_user,
            "display": result.username or result.fhir_user or "",
        }
        if result.totp:
            # The password was right; the second factor decides. Nothing is recorded yet:
            # the sign-in's record is written when the TOTP code passes or fails.
            flow.state.update(step="totp", pending=user)
            self.flows.save(flow)
            return html(self._render(flow))
        self._signed_in(flow.state, **user)
        self.flows.save(flow)
        self._audit_login(request, flow, 200, "signed in (password)", self._who(flow))
        return html(self._render(flow))

    def _totp(self, flow: Flow, request: HttpRequest, step: Step) -> Response:
        pending = flow.state.get("pending")
        if flow.state["step"] != "totp" or not pending:
            return html(self._render(flow, "error_unknown_action"), status=400)
        error = self.login.check_totp(
            pending["subject"], step.form.get("totp", ""), request.client_ip
        )
        if error is not None:
            status = 429 if "locked" in error else 400
            # The password was right, so the record names the person: a failing second
            # factor is what an auditor looks for when a password may have leaked.
            who = person(
                flow.params.get("client_id", ""),
                subject=pending["subject"],
                role=pending["role"],
                fhir_user=pending["fhir_user"],
            )
            reason = f"TOTP refused for '{pending['display'][:64]}' ({error})"
            self._audit_login(request, flow, status, reason, who)
            return html(self._render(flow, error), status=status)
        flow.state.pop("pending", None)
        self._signed_in(flow.state, **pending)
        self.flows.save(flow)
        self._audit_login(request, flow, 200, "signed in (password + TOTP)", self._who(flow))
        return html(self._render(flow))

    # -- the audit trail (docs/AUTH.md, "Audit") -------------------------------------------

    def _audit_login(
        self,
        request: HttpRequest,
        flow: Flow | str | None,
        status: int,
        reason: str,
        who: Claims | None = None,
    ) -> None:
        client_id = flow.params.get("client_id") if isinstance(flow, Flow) else flow
        record_login(
            self.services.audit, request, client_id=client_id, status=status, reason=reason, who=who
        )

    @staticmethod
    def _who(flow: Flow) -> Claims:
        user = flow.state["user"]
        return person(
            flow.params.get("client_id", ""),
            subject=user["subject"],
            role=user["role"],
            fhir_user=user["fhir_user"],
            patient=flow.state.get("patient"),
        )

    # -- consent ---------------------------------------------------------------------------

    def _signed_in(
        self,
        state: dict[str, Any],
        *,
        subject: str | None,
        role: str,
        fhir_user: str | None,
        display: str,
    ) -> None:
        """Someone is signed in: work out what they may be offered."""
        launch = state.get("launch")
        offered = intersect(parse(state["scope"]), ROLE_SCOPES[role])
        drop = set()
        if launch is None:
            drop |= {LAUNCH, LAUNCH_ENCOUNTER}
        else:
            if not launch.get("patient"):
                drop.add(LAUNCH_PATIENT)
            if not launch.get("encounter"):
                drop.add(LAUNCH_ENCOUNTER)
        if not fhir_user:
            drop.add(FHIR_USER)
        offered = offered.without(*drop)
        patient: str | None = None
        if launch is not None:
            patient = launch.get("patient")
        elif role == PATIENT and fhir_user and fhir_user.startswith("Patient/"):
            patient = fhir_user.split("/", 1)[1]
        wants_patient = bool(offered.of_context("patient")) or LAUNCH_PATIENT in offered
        ask_patient = patient is None and wants_patient and launch is None and role != PATIENT
        if patient is None and not ask_patient:
            offered = _without_patient_scopes(offered)
        state.update(
            step="consent",
            user={"subject": subject, "role": role, "fhir_user": fhir_user, "display": display},
            offered=render(offered).split(),
            patient=patient,
            ask_patient=ask_patient,
            auth_time=int(time.time()),
        )

    def _approve(self, flow: Flow, request: HttpRequest, step: Step) -> Response:
        state = flow.state
        if state["step"] != "consent":
            return html(self._render(flow, "error_unknown_action"), status=400)
        chosen = parse([s for s in state["offered"] if s in set(step.scopes)])
        patient = state.get("patient")
        if state.get("ask_patient"):
            picked = (step.form.get("patient") or "").strip()
            if picked.startswith("Patient/"):
                picked = picked[len("Patient/") :]
            patient = picked or None
        user = state["user"]
        if patient is not None and not self.services.may_reach_patient(
            user["role"], user["fhir_user"], patient
        ):
            # A patient this person may not reach (no Consent, no CareTeam link) is
            # answered exactly as one that does not exist, so the page tells nobody
            # which ids exist (issue 10 item 2); an EHR launch naming one stops here too.
            self._audit_login(request, flow, 400, "patient not reachable or unknown")
            return html(self._render(flow, "error_patient_unknown"), status=400)
        if patient is None:
            chosen = _without_patient_scopes(chosen)
        if not chosen:
            return self._deny(flow, request, step)
        context = self._context(state, patient)
        approval = Approval(
            subject=user["subject"],
            role=user["role"],
            fhir_user=user["fhir_user"],
            scope=render(chosen),
            context=context,
            auth_time=state["auth_time"],
            launch_hash=state.get("launch_hash"),
        )
        return self._finish(flow, request, approval)

    def _deny(self, flow: Flow, request: HttpRequest, step: Step) -> Response:
        return self._finish(flow, request, None)

    def _finish(self, flow: Flow, request: HttpRequest, approval: Approval | None) -> Response:
        original = self._original_request(flow, request)
        try:
            grant = self.server.get_consent_grant(request=original, end_user=approval)
        except OAuth2Error as error:
            self.flows.end(flow)
            return self._refuse(original, error, flow.state.get("locale", "en"))
        response: Response = self.server.create_authorization_response(
            request=original, grant_user=approval, grant=grant
        )
        self.flows.end(flow)
        return response

    def _original_request(self, flow: Flow, request: HttpRequest) -> HttpRequest:
        fhir_base = flow.state["fhir_base"]
        return HttpRequest(
            "GET",
            auth_base(fhir_base) + "/authorize",
            request.headers,
            list(flow.params.items()),
            fhir_base=fhir_base,
            client_ip=request.client_ip,
        )

    def _context(self, state: dict[str, Any], patient: str | None) -> dict[str, Any]:
        style = auth_base(state["fhir_base"]) + "/smart-style.json"
        launch = state.get("launch")
        if launch is not None:
            context = {
                k: launch[k]
                for k in ("patient", "encounter", "fhirContext", "intent")
                if launch.get(k)
            }
            context["need_patient_banner"] = bool(launch.get("need_patient_banner", False))
        else:
            context = {"need_patient_banner": True}
            if patient:
                context["patient"] = patient
        context["smart_style_url"] = style
        return context

    # -- pages -------------------------------------------------------------------------------

    def _render(self, flow: Flow, error: str | None = None) -> str:
        state = flow.state
        locale = state.get("locale", "en")
        message = text(locale, error) if error else None
        step = state.get("step")
        if step == "phone":
            return pages.phone_page(locale, flow.handle, message)
        if step == "totp":
            return pages.totp_page(locale, flow.handle, message)
        if step == "otp":
            return pages.otp_page(locale, flow.handle, mask_phone(state.get("phone", "")), message)
        if step == "consent":
            choices = [pages.ScopeChoice(s) for s in state["offered"]]
            return pages.consent_page(
                locale,
                flow.handle,
                state["client_name"],
                state["user"]["display"],
                choices,
                ask_patient=bool(state.get("ask_patient")),
                patient=state.get("patient"),
                error=message,
            )
        return pages.start_page(locale, flow.handle, state["client_name"], message)


def _without_patient_scopes(scopes: Scopes) -> Scopes:
    return Scopes(
        tuple(s for s in scopes.resources if s.context != "patient"),
        scopes.others - {LAUNCH_PATIENT},
    )
