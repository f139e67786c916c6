"""People who sign in, and the activation codes that let patients become one.

- patients: created when they complete onboarding (activation code, phone, SMS code) and
  linked to their Patient; they sign in again with phone + SMS code;
- practitioners: created from the CLI, linked to a Practitioner, password (argon2id);
- administrators: created from the CLI.

Practitioners and administrators may enrol a TOTP second factor from the CLI
(fhir_server/auth/totp.py); the store keeps its secret and the last time step accepted.

An activation code is created for a Patient by a clinician, an EHR backend client or the
CLI; it is single use and expires (issue 4 item 5). Only its digest is stored. Issue 10
item 5: a new code voids the patient's unused ones; a plain code only creates an account,
never moves one; a clinician's re-enrolment code may put an existing account on a new
phone, and then the old phone's grants are revoked in the same transaction.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, or_, select, update

from fhir_server.access.claims import ADMIN, PATIENT, PRACTITIONER, ROLES
from fhir_server.auth.credentials import (
    digest,
    hash_password,
    new_activation_code,
    new_identifier,
    normalise_activation_code,
    verify_password,
)
from fhir_server.auth.tables import auth_account, auth_activation_code, auth_grant
from fhir_server.auth.totp import new_secret as new_totp_secret
from fhir_server.storage.database import Database

_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_FHIR_USER = re.compile(
    r"^(Patient|Practitioner|PractitionerRole|RelatedPerson|Person)/[A-Za-z0-9\-.]{1,64}$"
)


class AccountError(ValueError):
    """An account that cannot be created as asked."""


@dataclass(frozen=True, slots=True)
class Account:
    account_id: str
    role: str
    fhir_user: str | None
    phone: str | None
    username: str | None
    disabled: bool
    totp: bool = False  # a TOTP second factor is enrolled

    @property
    def patient_id(self) -> str | None:
        if self.role == PATIENT and self.fhir_user and self.fhir_user.startswith("Patient/"):
            return self.fhir_user.split("/", 1)[1]
        return None

    def describe(self) -> dict[str, Any]:
        return {
            "account_id": self.account_id,
            "role": self.role,
            "fhir_user": self.fhir_user,
            "phone": self.phone,
            "username": self.username,
            "disabled": self.disabled,
            "totp": self.totp,
        }


def normalise_phone(text: str) -> str | None:
    """An E.164 number (``+4512345678``) from what a person typed, or None.
    Spaces, dashes, dots and brackets are ignored; ``00`` stands for ``+``."""
    compact = re.sub(r"[\s\-.()]", "", text or "")
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    return compact if _E164.match(compact) else None


def check_fhir_user(reference: str | None) -> str | None:
    if reference is None:
        return None
    if not _FHIR_USER.match(reference):
        raise AccountError(
            "fhirUser must be a relative reference to a Patient, Practitioner, "
            "PractitionerRole, RelatedPerson or Person (SAL-50)"
        )
    return reference


def _account(row: Any) -> Account:
    return Account(
        row.account_id,
        row.role,
        row.fhir_user,
        row.phone,
        row.username,
        row.disabled,
        row.totp_secret is not None,
    )


class Accounts:
    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, account_id: str) -> Account | None:
        return self._one(auth_account.c.account_id == account_id)

    def by_phone(self, phone: str) -> Account | None:
        return self._one(auth_account.c.phone == phone)

    def by_username(self, username: str) -> Account | None:
        return self._one(auth_account.c.username == username)

    def by_fhir_user(self, fhir_user: str) -> Account | None:
        return self._one(auth_account.c.fhir_user == fhir_user)

    def _one(self, condition: Any) -> Account | None:
        with self.db.reader.connect() as conn:
            row = conn.execute(select(auth_account).where(condition)).first()
        return _account(row) if row else None

    def all(self) -> list[Account]:
        with self.db.reader.connect() as conn:
            rows = conn.execute(select(auth_account).order_by(auth_account.c.created_at)).all()
        return [_account(r) for r in rows]

    # -- staff accounts (CLI) ----------------------------------------------------------------

    def create_staff(
        self, *, role: str, username: str, password: str, fhir_user: str | None
    ) -> Account:
        if role not in (PRACTITIONER, ADMIN):
            raise AccountError("staff accounts are practitioners or admins")
        if role == PRACTITIONER and not (fhir_user or "").startswith(
            ("Practitioner/", "PractitionerRole/")
        ):
            raise AccountError("a practitioner account needs --fhir-user Practitioner/<id>")
        if len(password) < 12:
            raise AccountError("passwords need at least 12 characters")
        if not username or len(username) > 255:
            raise AccountError("a username of 1 to 255 characters is needed")
        check_fhir_user(fhir_user)
        account_id = new_identifier(12)
        with self.db.writer.begin() as conn:
            taken = conn.execute(
                select(auth_account.c.account_id).where(auth_account.c.username == username)
            ).first()
            if taken:
                raise AccountError(f"username {username!r} is taken")
            conn.execute(
                insert(auth_account).values(
                    account_id=account_id,
                    role=role,
                    fhir_user=fhir_user,
                    phone=None,
                    username=username,
                    password_hash=hash_password(password),
                    created_at=int(time.time()),
                    disabled=False,
                )
            )
        account = self.get(account_id)
        assert account is not None
        return account

    def check_password(self, username: str, password: str) -> Account | None:
        with self.db.reader.connect() as conn:
            row = conn.execute(
                select(auth_account).where(auth_account.c.username == username)
            ).first()
        stored = row.password_hash if row is not None else None
        if not verify_password(stored, password) or row is None or row.disabled:
            return None
        return _account(row)

    # -- TOTP second factor (staff accounts) --------------------------------------------------

    def staff(self, name: str) -> Account | None:
        """A practitioner or admin account by its account_id or its user name."""
        found = self.get(name) or self.by_username(name)
        return found if found is not None and found.role in (PRACTITIONER, ADMIN) else None

    def enrol_totp(self, account_id: str) -> str:
        """A new TOTP secret for the account (replacing any earlier one); returns it."""
        secret = new_totp_secret()
        with self.db.writer.begin() as conn:
            conn.execute(
                update(auth_account)
                .where(auth_account.c.account_id == account_id)
                .values(totp_secret=secret, totp_last_step=None)
            )
        return secret

    def remove_totp(self, account_id: str) -> bool:
        """Sign-in by password alone again; False when no TOTP was enrolled."""
        a = auth_account
        with self.db.writer.begin() as conn:
            result = conn.execute(
                update(a)
                .where(a.c.account_id == account_id, a.c.totp_secret.is_not(None))
                .values(totp_secret=None, totp_last_step=None)
            )
        return result.rowcount == 1

    def totp_of(self, account_id: str) -> tuple[str, int | None] | None:
        """(secret, last time step accepted) of an enrolled account still enabled, else None."""
        a = auth_account
        with self.db.reader.connect() as conn:
            row = conn.execute(
                select(a.c.totp_secret, a.c.totp_last_step, a.c.disabled).where(
                    a.c.account_id == account_id
                )
            ).first()
        if row is None or row.totp_secret is None or row.disabled:
            return None
        return row.totp_secret, row.totp_last_step

    def claim_totp_step(self, account_id: str, step: int) -> bool:
        """Accept a code of time ``step`` once: the conditional UPDATE lets exactly one of
        two requests racing with the same code through (RFC 6238 section 5.2)."""
        a = auth_account
        with self.db.writer.begin() as conn:
            result = conn.execute(
                update(a)
                .where(
                    a.c.account_id == account_id,
                    a.c.totp_secret.is_not(None),
                    or_(a.c.totp_last_step.is_(None), a.c.totp_last_step < step),
                )
                .values(totp_last_step=step)
            )
        return result.rowcount == 1

    def set_disabled(self, account_id: str, disabled: bool) -> bool:
        with self.db.writer.begin() as conn:
            result = conn.execute(
                update(auth_account)
                .where(auth_account.c.account_id == account_id)
                .values(disabled=disabled)
            )
        return result.rowcount == 1

    # -- activation codes -----------------------------------------------------------------------

    def issue_activation_code(
        self,
        patient_id: str,
        *,
        created_by: str,
        ttl: int,
        reenrol: bool = False,
        now: int | None = None,
    ) -> IssuedCode:
        """A new activation code for Patient/``patient_id``. In the same transaction every
        unused code of that patient is voided: the newest code is the only one that works,
        so a code handed out earlier (a lost letter, an old SMS) is dead the moment a
        clinician issues another (issue 10 item 5). ``reenrol`` marks a code a clinician
        issued to move the patient's existing account to a new phone; a plain code never
        moves an account (:meth:`complete_onboarding`)."""
        now = int(time.time()) if now is None else now
        code = new_activation_code()
        expires_at = now + ttl
        t = auth_activation_code
        with self.db.writer.begin() as conn:
            voided = conn.execute(
                update(t)
                .where(t.c.patient_id == patient_id, t.c.used_at.is_(None), t.c.voided_at.is_(None))
                .values(voided_at=now)
            ).rowcount
            conn.execute(
                insert(t).values(
                    code_hash=digest(code),
                    patient_id=patient_id,
                    created_by=created_by[:255],
                    created_at=now,
                    expires_at=expires_at,
                    used_at=None,
                    account_id=None,
                    reenrol=reenrol,
                    voided_at=None,
                )
            )
        return IssuedCode(code, expires_at, int(voided or 0), reenrol)

    def create_activation_code(
        self, patient_id: str, *, created_by: str, ttl: int, now: int | None = None
    ) -> tuple[str, int]:
        """A new plain activation code (voiding the patient's unused ones); (code, expires_at)."""
        issued = self.issue_activation_code(patient_id, created_by=created_by, ttl=ttl, now=now)
        return issued.code, issued.expires_at

    def patient_account(self, patient_id: str) -> Account | None:
        """The patient account linked to Patient/``patient_id``, if any."""
        return self._one(
            (auth_account.c.fhir_user == f"Patient/{patient_id}") & (auth_account.c.role == PATIENT)
        )

    def peek_activation_code(self, typed: str, now: int | None = None) -> tuple[str, str] | None:
        """(code digest, patient id) for a code that may be redeemed now; nothing is consumed
        yet. None -- the answer for a code that never existed -- for a code used, voided
        or expired, for a plain code of a patient who already has an account (only a
        clinician's re-enrolment code may touch an existing account) and for any code of
        a patient whose account is disabled."""
        now = int(time.time()) if now is None else now
        code_hash = digest(normalise_activation_code(typed))
        t, a = auth_activation_code, auth_account
        with self.db.reader.connect() as conn:
            row = conn.execute(
                select(t.c.patient_id, t.c.reenrol).where(
                    t.c.code_hash == code_hash,
                    t.c.used_at.is_(None),
                    t.c.voided_at.is_(None),
                    t.c.expires_at > now,
                )
            ).first()
            if row is None:
                return None
            account = conn.execute(
                select(a.c.disabled).where(
                    a.c.fhir_user == f"Patient/{row.patient_id}", a.c.role == PATIENT
                )
            ).first()
        if account is not None and (account.disabled or not row.reenrol):
            return None
        return code_hash, row.patient_id

    def complete_onboarding(
        self, *, code_hash: str, patient_id: str, phone: str, now: int | None = None
    ) -> Onboarded:
        """Consume the activation code and create the patient's account -- or, for a
        clinician's re-enrolment code, put the existing account on ``phone`` -- in one
        transaction. When the phone changes, every grant the account holds is revoked in
        that transaction (the old phone's access and refresh tokens die with it).

        Refused (AccountError, nothing written): ``phone-taken`` when another patient's
        account has the phone; ``activation-invalid`` when the code is no longer
        redeemable (used -- even a moment ago by a racing sign-in --, voided, expired),
        when it is a plain code and the patient has an account by now, or when that
        account is disabled. Callers answer ``activation-invalid`` exactly as an unknown
        code."""
        now = int(time.time()) if now is None else now
        fhir_user = f"Patient/{patient_id}"
        a, t, g = auth_account, auth_activation_code, auth_grant
        with self.db.writer.begin() as conn:
            on_phone = conn.execute(select(a).where(a.c.phone == phone)).first()
            if on_phone is not None and on_phone.fhir_user != fhir_user:
                raise AccountError("phone-taken")
            code = conn.execute(
                select(t.c.reenrol, t.c.patient_id).where(t.c.code_hash == code_hash)
            ).first()
            if code is None or code.patient_id != patient_id:
                raise AccountError("activation-invalid")
            mine = conn.execute(
                select(a).where(a.c.fhir_user == fhir_user, a.c.role == PATIENT)
            ).first()
            if mine is not None and (mine.disabled or not code.reenrol):
                raise AccountError("activation-invalid")
            account_id = mine.account_id if mine is not None else new_identifier(12)
            claimed = conn.execute(
                update(t)
                .where(
                    t.c.code_hash == code_hash,
                    t.c.used_at.is_(None),
                    t.c.voided_at.is_(None),
                    t.c.expires_at > now,
                )
                .values(used_at=now, account_id=account_id)
            )
            if claimed.rowcount != 1:
                raise AccountError("activation-invalid")
            old_phone = mine.phone if mine is not None else None
            moved = mine is not None and old_phone != phone
            revoked = 0
            if mine is None:
                conn.execute(
                    insert(a).values(
                        account_id=account_id,
                        role=PATIENT,
                        fhir_user=fhir_user,
                        phone=phone,
                        username=None,
                        password_hash=None,
                        created_at=now,
                        disabled=False,
                    )
                )
            elif moved:
                conn.execute(update(a).where(a.c.account_id == account_id).values(phone=phone))
                revoked = conn.execute(
                    update(g)
                    .where(g.c.subject == account_id, g.c.revoked_at.is_(None))
                    .values(revoked_at=now)
                ).rowcount
        account = self.get(account_id)
        assert account is not None
        return Onboarded(
            account=account,
            created=mine is None,
            reenrolled=mine is not None,
            phone_changed=moved,
            grants_revoked=int(revoked or 0),
        )


@dataclass(frozen=True, slots=True)
class IssuedCode:
    code: str  # shown once to whoever asked; only its digest is stored
    expires_at: int
    voided: int  # unused codes of the same patient voided by this one
    reenrol: bool


@dataclass(frozen=True, slots=True)
class Onboarded:
    """What redeeming an activation code did."""

    account: Account
    created: bool  # a new account
    reenrolled: bool  # an existing account, through a clinician's re-enrolment code
    phone_changed: bool  # ... now on another phone
    grants_revoked: int  # grants (with their access and refresh tokens) of the old phone


__all__ = [
    "ROLES",
    "Account",
    "AccountError",
    "Accounts",
    "IssuedCode",
    "Onboarded",
    "normalise_phone",
]
