"""Lifetimes, limits and role scopes: the numbers the authorization server lives by.

One place, so docs/AUTH.md and the discovery documents can cite them. The limits that an
installation tunes come from :class:`fhir_server.config.Settings`.
"""

from __future__ import annotations

from dataclasses import dataclass

from fhir_server.access.claims import ADMIN, PATIENT, PRACTITIONER
from fhir_server.access.scopes import Scopes, parse
from fhir_server.config import Settings

# Lifetimes, in seconds.
CODE_TTL = 60  # SAL-14: about one minute, single use
APP_ACCESS_TTL = 3600  # SAL-30: at most 1 h for apps
BACKEND_ACCESS_TTL = 300  # BDS-03: at most 5 min for backend clients
ID_TOKEN_TTL = 3600
OFFLINE_REFRESH_TTL = 90 * 24 * 3600
ONLINE_REFRESH_TTL = 12 * 3600  # online_access: for about a working day
LAUNCH_TTL = 300  # an EHR launch value must be used within 5 minutes
LOGIN_FLOW_TTL = 30 * 60
SMS_CODE_TTL = 5 * 60
ACTIVATION_CODE_TTL = 14 * 24 * 3600
# A client_assertion may be valid for at most this long (SMART Backend Services).
ASSERTION_MAX_LIFETIME = 300
CLOCK_SKEW = 30
# A retired signing key stays published until every id_token it signed has expired.
KEY_RETENTION = ID_TOKEN_TTL + 300

# Custom scopes (SAL-44: custom scopes start with "__").
EHR_LAUNCH_SCOPE = "__ehr-launch"  # create EHR launch contexts (POST /auth/launch)
ACTIVATION_SCOPE = "__activation-code"  # create patient activation codes
INTROSPECT_SCOPE = "__introspect"  # introspect tokens of any client (resource servers)

# What each role may ever be granted; granted = requested ∩ client ∩ role.
ROLE_SCOPES: dict[str, Scopes] = {
    PATIENT: parse(
        "patient/*.cruds launch/patient openid fhirUser profile offline_access online_access"
    ),
    PRACTITIONER: parse(
        "user/*.cruds patient/*.cruds launch launch/patient launch/encounter openid fhirUser "
        f"profile offline_access online_access {ACTIVATION_SCOPE}"
    ),
    ADMIN: parse(
        "user/*.cruds patient/*.cruds launch launch/patient launch/encounter openid fhirUser "
        f"profile offline_access online_access {ACTIVATION_SCOPE}"
    ),
}


@dataclass(frozen=True, slots=True)
class Limits:
    """Rate limits and lock-outs (issue 4, OWASP API2/API4/API6)."""

    sms_resend_seconds: int = 30  # at most one SMS per sign-in per 30 s
    sms_per_phone_hour: int = 5
    sms_per_ip_hour: int = 50
    sms_per_hour: int = 500  # all SMS of the installation: caps spend
    sms_code_attempts: int = 5  # wrong guesses before a code is void
    sms_failures_per_phone_hour: int = 10  # then the phone is locked for the hour
    activation_attempts_per_flow: int = 5
    login_failures_per_ip_window: int = 20  # wrong activation codes/passwords per IP
    password_failures_per_user_window: int = 5
    totp_failures_per_account_window: int = 5  # wrong or replayed TOTP codes, then locked
    window_seconds: int = 15 * 60

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            sms_per_ip_hour=settings.sms_ip_hourly_limit,
            sms_per_hour=settings.sms_hourly_limit,
            login_failures_per_ip_window=settings.login_ip_failure_limit,
        )
