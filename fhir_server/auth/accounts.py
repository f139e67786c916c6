"""People who sign in, and the activation codes that let patients become one.

- patients: created when they complete onboarding (activation code, phone, SMS code) and
  linked to their Patient; they sign in again with phone + SMS code;
- practitioners: created from the CLI, linked to a Practitioner, password (argon2id);
- administrators: created from the CLI.

Practitioners and administrators may enrol a TOTP second factor from the CLI
(fhir_server/auth/totp.py); the store keeps its secret and the last time step accepted.

An activation code is created for a Patient by a clinician, an EHR backend client or the
CLI; it is single use and expires (issue 4 item 5). Only its digest is stored.
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
from fhir_server.auth.tables import auth_account, auth_activation_code
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

    def create_activation_code(
        self, patient_id: str, *, created_by: str, ttl: int, now: int | None = None
    ) -> tuple[str, int]:
        """A new activation code for Patient/``patient_id``; returns (code, expires_at)."""
        now = int(time.time()) if now is None else now
        code = new_activation_code()
        expires_at = now + ttl
        with self.db.writer.begin() as conn:
            conn.execute(
                insert(auth_activation_code).values(
                    code_hash=digest(code),
                    patient_id=patient_id,
                    created_by=created_by[:255],
                    created_at=now,
                    expires_at=expires_at,
                    used_at=None,
                    account_id=None,
                )
            )
        return code, expires_at

    def peek_activation_code(self, typed: str, now: int | None = None) -> tuple[str, str] | None:
        """(code digest, patient id) for a valid, unused code; nothing is consumed yet."""
        now = int(time.time()) if now is None else now
        code_hash = digest(normalise_activation_code(typed))
        t = auth_activation_code
        with self.db.reader.connect() as conn:
            row = conn.execute(
                select(t.c.patient_id).where(
                    t.c.code_hash == code_hash, t.c.used_at.is_(None), t.c.expires_at > now
                )
            ).first()
        return (code_hash, row.patient_id) if row else None

    def complete_onboarding(
        self, *, code_hash: str, patient_id: str, phone: str, now: int | None = None
    ) -> Account:
        """Consume the activation code and create (or re-link) the patient's account, in
        one transaction. A patient who activates again with a new phone keeps one account,
        now on the new phone. A phone already used by another patient is refused."""
        now = int(time.time()) if now is None else now
        fhir_user = f"Patient/{patient_id}"
        a, t = auth_account, auth_activation_code
        with self.db.writer.begin() as conn:
            on_phone = conn.execute(select(a).where(a.c.phone == phone)).first()
            if on_phone is not None and on_phone.fhir_user != fhir_user:
                raise AccountError("phone-taken")
            mine = conn.execute(
                select(a).where(a.c.fhir_user == fhir_user, a.c.role == PATIENT)
            ).first()
            account_id = mine.account_id if mine is not None else new_identifier(12)
            claimed = conn.execute(
                update(t)
                .where(t.c.code_hash == code_hash, t.c.used_at.is_(None), t.c.expires_at > now)
                .values(used_at=now, account_id=account_id)
            )
            if claimed.rowcount != 1:
                raise AccountError("activation-used")
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
            else:
                conn.execute(
                    update(a)
                    .where(a.c.account_id == account_id)
                    .values(phone=phone, disabled=False)
                )
        account = self.get(account_id)
        assert account is not None
        return account


__all__ = ["ROLES", "Account", "AccountError", "Accounts", "normalise_phone"]
