"""What the authorization server tells the audit trail (docs/AUTH.md, "Audit").

Each function turns what an endpoint knows into one :class:`AccessRecord` and hands it to
the trail, whose ``record`` only queues it. Never a token, code, password or phone number
goes into a record; a refusal carries the reason the endpoint answered with.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

from fhir_server.access.claims import Claims
from fhir_server.access.scopes import parse
from fhir_server.audit.records import AccessRecord, AuditSink
from fhir_server.auth.server import HttpRequest
from fhir_server.versioning import now_us

_EVENT_OF_PATH = {"/token": "token", "/introspect": "introspect", "/revoke": "revoke"}


def person(
    client_id: str,
    *,
    subject: str | None,
    role: str | None,
    fhir_user: str | None,
    patient: str | None = None,
) -> Claims:
    """Claims standing for a signed-in person before any token exists."""
    return Claims(
        client_id=client_id,
        scopes=parse(""),
        subject=subject,
        role=role,
        fhir_user=fhir_user,
        patient=patient,
    )


def record_login(
    audit: AuditSink,
    request: HttpRequest,
    *,
    client_id: str | None,
    status: int,
    reason: str,
    who: Claims | None = None,
) -> None:
    """A sign-in step's result: 200 signed in, 4xx refused (wrong code, locked ...)."""
    patient = who.patient if who else None
    if patient is None and who is not None and (who.fhir_user or "").startswith("Patient/"):
        patient = (who.fhir_user or "").split("/", 1)[1]
    audit.record(
        AccessRecord(
            action="login",
            outcome=status,
            at_us=now_us(),
            claims=who,
            client_id=client_id,
            patient_ids=(patient,) if patient else (),
            client_ip=request.client_ip,
            reason=reason,
        )
    )


def record_token_endpoint(
    audit: AuditSink,
    path: str,
    request: HttpRequest,
    status: int,
    body: bytes,
    claims_of: Any,
) -> None:
    """One answer of /auth/token, /auth/introspect or /auth/revoke.

    ``claims_of(access_token)`` resolves a token just issued to its claims, so the record
    names the person and patient the token is for (BALP IHE.IUA.71: the user agent)."""
    action = _EVENT_OF_PATH.get(path)
    if action is None:
        return
    form = request.form
    answer = _json_object(body)
    client = getattr(request, "client", None)
    client_id = client.get_client_id() if client is not None else claimed_client_id(request)
    grant_type = form.get("grant_type", "")
    claims: Claims | None = None
    patients: tuple[str, ...] = ()
    if status >= 400:
        error = str(answer.get("error", "")) if answer else ""
        described = str(answer.get("error_description", "")) if answer else ""
        reason = ": ".join(part for part in (error, described) if part)
        if action == "token" and grant_type:
            reason = f"grant_type={grant_type}; {reason}" if reason else f"grant_type={grant_type}"
    elif action == "token":
        reason = f"grant_type={grant_type}; scope={answer.get('scope', '')}"
        issued = request.issued_access_token
        claims = claims_of(issued) if issued else None
        patient = answer.get("patient")
        if isinstance(patient, str) and patient:
            patients = (patient,)
    elif action == "introspect":
        active = bool(answer.get("active"))
        reason = "token active" if active else "token inactive"
        patient = answer.get("patient") if active else None
        if isinstance(patient, str) and patient:
            patients = (patient,)
    elif request.revoked is not None:
        # RFC 7009 answers 200 either way; the record says whether a grant really ended.
        claims = request.revoked
        reason = "grant revoked"
        if claims.patient:
            patients = (claims.patient,)
    else:
        reason = "nothing revoked: the token is unknown or not this client's"
    audit.record(
        AccessRecord(
            action=action,
            outcome=status,
            at_us=now_us(),
            claims=claims,
            client_id=client_id,
            patient_ids=patients,
            client_ip=request.client_ip,
            reason=reason,
        )
    )


def claimed_client_id(request: HttpRequest) -> str | None:
    """The client a refused request said it was (form, HTTP Basic, or an assertion's
    ``iss``), unverified: the record says what was claimed, the outcome that it failed."""
    named = request.form.get("client_id")
    if named:
        return named[:64]
    scheme, _, value = (request.headers.get("authorization") or "").partition(" ")
    if scheme.lower() == "basic" and value:
        try:
            user = base64.b64decode(value.strip(), validate=True).decode().partition(":")[0]
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        return user[:64] or None
    assertion = request.form.get("client_assertion")
    if assertion and assertion.count(".") == 2:
        payload = assertion.split(".")[1]
        try:
            claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except (binascii.Error, ValueError, orjson.JSONDecodeError):
            return None
        issuer = claims.get("iss") if isinstance(claims, dict) else None
        return issuer[:64] if isinstance(issuer, str) and issuer else None
    return None


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def record_activation(
    audit: AuditSink,
    *,
    status: int,
    reason: str,
    patient_id: str | None,
    client_ip: str | None,
    client_id: str | None = None,
    who: Claims | None = None,
) -> None:
    """One step in an activation code's life (issued, voided, used, refused, re-enrolled,
    tokens revoked), as an ``activation-code`` event naming the patient. The reason never
    holds the code or a phone number (issue 10 item 5)."""
    audit.record(
        AccessRecord(
            action="activation-code",
            outcome=status,
            at_us=now_us(),
            claims=who,
            client_id=client_id if client_id is not None else (who.client_id if who else None),
            resource_type="Patient" if patient_id else None,
            resource_id=patient_id,
            patient_ids=(patient_id,) if patient_id else (),
            client_ip=client_ip,
            reason=reason,
        )
    )
