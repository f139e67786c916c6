"""Checking who someone is: activation codes, SMS codes, passwords -- each rate-limited.

Patients onboard with activation code -> phone -> SMS code and return with phone -> SMS
code; clinicians and admins use a password (issue 4 item 5). The limits (policy.Limits)
stop brute force and cap SMS spend (OWASP API2, API4, API6):

- activation codes: 5 wrong tries per sign-in, and a per-IP count of wrong codes and
  passwords over 15 minutes;
- SMS: one per sign-in per 30 s, 5 per phone per hour, a per-IP and an installation-wide
  hourly cap; each code expires in 5 minutes and dies after 5 wrong tries; 10 wrong codes
  for one phone within an hour lock that phone for the hour;
- passwords: 5 failures per user name within 15 minutes lock the user name;
- TOTP codes (clinicians who enrolled a second factor): 5 wrong or replayed codes per
  account within 15 minutes lock the account's sign-in; they count against the IP too.

A returning sign-in with a phone that has no account looks exactly like one that has:
the same page, the same counters, no SMS. Nobody learns which numbers are registered.

Each check returns an error key of fhir_server.auth.messages (``None`` when it passed)
and keeps its progress in the sign-in ``state`` dictionary.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from fhir_server.auth.accounts import Account, AccountError, Onboarded
from fhir_server.auth.credentials import keyed_digest, new_secret, new_sms_code, same
from fhir_server.auth.messages import text
from fhir_server.auth.policy import SMS_CODE_TTL
from fhir_server.auth.server import AuthServices
from fhir_server.auth.sms import SmsError
from fhir_server.auth.totp import matching_step

log = logging.getLogger("selfback.auth.login")

HOUR = 3600


class Login:
    def __init__(self, services: AuthServices) -> None:
        self.services = services
        self.limits = services.limits
        self.counts = services.rate_limits
        self.secret = services.settings.secret_key

    # -- activation codes ---------------------------------------------------------------

    def check_activation(
        self, typed: str, ip: str, flow_key: str, state: dict[str, Any]
    ) -> str | None:
        limits = self.limits
        if self.counts.exceeded(
            f"login-fail:ip:{ip}", limits.login_failures_per_ip_window, limits.window_seconds
        ):
            return "error_activation_locked"
        if self.counts.exceeded(
            f"activation-fail:flow:{flow_key}", limits.activation_attempts_per_flow, LOGIN_WINDOW
        ):
            return "error_activation_locked"
        found = self.services.accounts.peek_activation_code(typed or "") if typed else None
        if found is None or not self.services.patient_exists(found[1]):
            self.counts.record(f"login-fail:ip:{ip}")
            self.counts.record(f"activation-fail:flow:{flow_key}")
            return "error_activation_invalid"
        state["activation_hash"], state["patient_id"] = found
        state["mode"] = "onboarding"
        return None

    def complete_onboarding(self, ip: str, flow_key: str, state: dict[str, Any]) -> Onboarded | str:
        """Redeem the sign-in's activation code for the phone just proven by SMS. A code
        that stopped being redeemable since the first step (a racing sign-in used it, a
        newer code voided it, the patient got an account meanwhile) is answered as an
        unknown code and counts against the sign-in and the IP like one (issue 10 item 5)."""
        try:
            done = self.services.accounts.complete_onboarding(
                code_hash=state["activation_hash"],
                patient_id=state["patient_id"],
                phone=state["phone"],
            )
        except AccountError as exc:
            if str(exc) == "phone-taken":
                return "error_phone_taken"
            self.counts.record(f"login-fail:ip:{ip}")
            self.counts.record(f"activation-fail:flow:{flow_key}")
            return "error_activation_invalid"
        if done.grants_revoked:
            self.services.tokens.forget_claims()  # the old phone's tokens fail from now on
        return done

    # -- SMS codes ------------------------------------------------------------------------

    def send_code(
        self, phone: str, ip: str, flow_key: str, state: dict[str, Any], *, deliver: bool
    ) -> str | None:
        """Send (or, for an unknown phone, pretend to send) a new SMS code."""
        limits, now = self.limits, int(time.time())
        phone_key, flow_sms_key = f"sms:phone:{phone}", f"sms:flow:{flow_key}"
        last = self.counts.last(flow_sms_key)
        if last is not None and now - last < limits.sms_resend_seconds:
            return "error_sms_throttled"
        if (
            self.counts.exceeded(phone_key, limits.sms_per_phone_hour, HOUR)
            or self.counts.exceeded(f"sms:ip:{ip}", limits.sms_per_ip_hour, HOUR)
            or self.counts.exceeded("sms:all", limits.sms_per_hour, HOUR)
        ):
            return "error_sms_throttled"
        if self.counts.exceeded(
            f"otp-fail:phone:{phone}", limits.sms_failures_per_phone_hour, HOUR
        ):
            return "error_otp_locked"
        code = new_sms_code() if deliver else new_secret(16)  # a value nobody can type
        self.counts.record(phone_key, now)
        self.counts.record(flow_sms_key, now)
        self.counts.record(f"sms:ip:{ip}", now)
        if deliver:
            self.counts.record("sms:all", now)
            try:
                self.services.sms.send(
                    phone, text(state.get("locale", "en"), "sms_body", code=code)
                )
            except SmsError as exc:
                log.warning("SMS to %s failed: %s", _mask(phone), exc)
                return "error_sms_failed"
        state["phone"] = phone
        state["otp_hash"] = keyed_digest(self.secret, f"{flow_key}:{code}")
        state["otp_expires_at"] = now + SMS_CODE_TTL
        return None

    def check_code(self, typed: str, flow_key: str, state: dict[str, Any]) -> str | None:
        limits, now = self.limits, int(time.time())
        phone, expected = state.get("phone"), state.get("otp_hash")
        if not phone or not expected:
            return "error_otp_expired"
        if self.counts.exceeded(
            f"otp-fail:phone:{phone}", limits.sms_failures_per_phone_hour, HOUR
        ):
            return "error_otp_locked"
        if state.get("otp_expires_at", 0) <= now or self.counts.exceeded(
            f"otp-fail:code:{expected}", limits.sms_code_attempts, HOUR
        ):
            return "error_otp_expired"
        candidate = keyed_digest(self.secret, f"{flow_key}:{(typed or '').strip()}")
        if not same(candidate, expected):
            self.counts.record(f"otp-fail:phone:{phone}", now)
            self.counts.record(f"otp-fail:code:{expected}", now)
            return "error_otp_invalid"
        state.pop("otp_hash", None)  # a code works once
        return None

    # -- passwords ---------------------------------------------------------------------------

    def check_password(self, username: str, password: str, ip: str) -> Account | str:
        limits = self.limits
        user_key = f"password-fail:user:{username[:200]}"
        if self.counts.exceeded(
            f"login-fail:ip:{ip}", limits.login_failures_per_ip_window, limits.window_seconds
        ) or self.counts.exceeded(
            user_key, limits.password_failures_per_user_window, limits.window_seconds
        ):
            return "error_password_locked"
        account = self.services.accounts.check_password(username, password) if username else None
        if account is None:
            self.counts.record(f"login-fail:ip:{ip}")
            self.counts.record(user_key)
            return "error_password_invalid"
        return account

    # -- TOTP, the second factor after a password ---------------------------------------------

    def check_totp(
        self, account_id: str, typed: str, ip: str, now: float | None = None
    ) -> str | None:
        limits = self.limits
        now = time.time() if now is None else now
        account_key = f"totp-fail:account:{account_id}"
        if self.counts.exceeded(
            f"login-fail:ip:{ip}", limits.login_failures_per_ip_window, limits.window_seconds
        ) or self.counts.exceeded(
            account_key, limits.totp_failures_per_account_window, limits.window_seconds
        ):
            return "error_totp_locked"
        enrolled = self.services.accounts.totp_of(account_id)
        if enrolled is None:
            # Removed or disabled while this sign-in waited: no code can pass now.
            return "error_totp_invalid"
        secret, last_step = enrolled
        step = matching_step(secret, typed or "", now)
        if step is None:
            error = "error_totp_invalid"
        elif (last_step is not None and step <= last_step) or not (
            self.services.accounts.claim_totp_step(account_id, step)
        ):
            # RFC 6238 section 5.2: a code (or an older one) that already signed someone in
            # is refused, even within its 30 s; an eavesdropper gains nothing by it.
            error = "error_totp_used"
        else:
            return None
        self.counts.record(f"login-fail:ip:{ip}")
        self.counts.record(account_key)
        return error


LOGIN_WINDOW = 24 * HOUR  # a sign-in lives far shorter; its counters need no other window


def _mask(phone: str) -> str:
    return phone[:3] + "*" * max(0, len(phone) - 5) + phone[-2:]


def mask_phone(phone: str) -> str:
    return _mask(phone)
