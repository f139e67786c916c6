"""Activation codes, from issue to redemption (issue 10 item 5, docs/AUTH.md "Patients,
first time").

- Issuing a code for a patient voids that patient's unused codes (accounts.py).
- A plain code creates an account; it never touches an existing one. A patient who has
  an account is given a code only as a *re-enrolment*, asked for by a clinician who may
  reach the patient (their Consent, and CareTeam when required: the rule every request of
  their token is held to), an admin, an EHR backend client or the CLI
  (``selfback activation-code PATIENT_ID --reenrol``). A clinician who may not reach the
  patient gets the answer of an unknown patient.
- Redeeming a re-enrolment code with a new phone moves the account and revokes every
  grant it held, so the old phone's access and refresh tokens stop working.

Every step goes to the audit trail as an ``activation-code`` event naming the patient;
no record holds a code or a phone number. This module decides and records; the HTTP
operation is in routes.py, the sign-in pages in authorize.py, the CLI in cli.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from fhir_server.access.claims import ADMIN, PATIENT, PRACTITIONER, Claims
from fhir_server.audit.records import AuditSink
from fhir_server.auth.accounts import IssuedCode, Onboarded
from fhir_server.auth.auditing import record_activation
from fhir_server.auth.server import AuthServices, HttpRequest


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why no code was issued: an HTTP status, an OperationOutcome issue code, a text."""

    status: int
    code: str
    text: str


def issue(
    services: AuthServices,
    claims: Claims | None,
    patient_id: str,
    *,
    ttl: int,
    reenrol: bool,
    client_ip: str | None,
) -> IssuedCode | Refusal:
    """Issue a code for Patient/``patient_id`` on behalf of ``claims`` (None: the CLI),
    recording each step. Refusals are recorded too."""

    def audit(status: int, reason: str) -> None:
        record_activation(
            services.audit,
            status=status,
            reason=reason,
            patient_id=patient_id,
            client_ip=client_ip,
            who=claims,
        )

    unknown = Refusal(404, "not-found", f"Patient/{patient_id} is not known")
    if not services.patient_exists(patient_id):
        audit(404, f"activation code refused: Patient/{patient_id} is not known")
        return unknown
    account = services.accounts.patient_account(patient_id)
    touches_account = reenrol or account is not None
    if touches_account and claims is not None and not _may_reenrol(services, claims, patient_id):
        # The same answer as a patient that does not exist (issue 10 item 2): a clinician
        # learns nothing about patients they may not reach.
        audit(404, "re-enrolment refused: the requester may not reach the patient")
        return unknown
    if account is not None and not reenrol:
        audit(409, "activation code refused: the patient has an account; re-enrol instead")
        return Refusal(
            409,
            "conflict",
            f"Patient/{patient_id} already has an account. A code alone never moves an "
            "account to a new phone: ask for a re-enrolment (parameter reenrol = true)",
        )
    if account is not None and account.disabled:
        audit(409, "re-enrolment refused: the patient's account is disabled")
        return Refusal(409, "conflict", f"the account of Patient/{patient_id} is disabled")
    creator = (claims.fhir_user or f"client:{claims.client_id}") if claims else "cli"
    issued = services.accounts.issue_activation_code(
        patient_id, created_by=creator, ttl=ttl, reenrol=account is not None
    )
    kind = "re-enrolment code" if issued.reenrol else "activation code"
    audit(200, f"{kind} issued, valid {ttl // 3600} h")
    if issued.voided:
        audit(200, f"{issued.voided} unused activation code(s) of the patient voided")
    return issued


def _may_reenrol(services: AuthServices, claims: Claims, patient_id: str) -> bool:
    """Clinicians who may reach the patient, admins, and backend (EHR) clients holding the
    scope -- never a patient."""
    if claims.role == PATIENT:
        return False
    if claims.role in (PRACTITIONER, ADMIN):
        return services.may_reach_patient(claims.role, claims.fhir_user, patient_id)
    return claims.is_backend


def record_onboarding(
    audit: AuditSink,
    request: HttpRequest,
    client_id: str | None,
    patient_id: str,
    done: Onboarded | str,
) -> None:
    """The audit events of a redemption: used (account created), re-enrolled, tokens
    revoked -- or refused."""

    def record(status: int, reason: str) -> None:
        record_activation(
            audit,
            status=status,
            reason=reason,
            patient_id=patient_id,
            client_ip=request.client_ip,
            client_id=client_id,
        )

    if isinstance(done, str):
        record(400, f"activation code refused at redemption ({done})")
        return
    if done.created:
        record(200, f"activation code used: account {done.account.account_id} created")
        return
    moved = "moved to a new phone" if done.phone_changed else "kept on the same phone"
    record(200, f"re-enrolment code used: account {done.account.account_id} {moved}")
    if done.phone_changed:
        record(
            200,
            f"tokens of the old phone revoked: {done.grants_revoked} grant(s) of "
            f"account {done.account.account_id}",
        )
