"""Settings, read from arguments first and the environment (``SELFBACK_*``) second."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from fhir_server.client_address import FORWARDED_HEADERS, Network, parse_trusted_proxies

DEFAULT_DATA_DIR = Path("data")
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
# Limits (docs/DEPLOYMENT.md "Limits"); each is SELFBACK_<NAME> in the environment.
DEFAULT_REFUSAL_LIMIT = 120  # 401/403 per address per window: two a second, sustained
DEFAULT_REFUSAL_WINDOW = 60  # seconds
DEFAULT_REFUSAL_AUDIT_DETAIL = 10  # refusals audited one by one per address, kind, window
DEFAULT_PATIENT_MAX_BODY_BYTES = 256 * 1024
DEFAULT_PRACTITIONER_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_MAX_JSON_DEPTH = 64  # Bundle > entry > resource > Questionnaire.item x 20 fits
DEFAULT_MAX_ARRAY_ITEMS = 10_000  # a Synthea patient Bundle has < 200 entries
DEFAULT_MAX_ELEMENTS = 200_000  # values (objects, arrays, primitives) in one body: ~3 s to validate
DEFAULT_MAX_URL_BYTES = 8 * 1024
DEFAULT_MAX_SEARCH_PARAMS = 100
DEFAULT_MAX_PARAM_REPEATS = 20
DEFAULT_MAX_PARAM_VALUES = 100  # comma-separated alternatives in one value
DEFAULT_MAX_SORT_KEYS = 8
AUTH_MODES = ("smart", "none")
AUDIT_WRITERS = ("process", "thread")
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


def _env(name: str, default: str) -> str:
    return os.environ.get(f"SELFBACK_{name}", default)


# Settings field -> default, read from SELFBACK_<FIELD IN CAPITALS>.
LIMITS: dict[str, int] = {
    "refusal_limit": DEFAULT_REFUSAL_LIMIT,
    "refusal_window": DEFAULT_REFUSAL_WINDOW,
    "refusal_audit_detail": DEFAULT_REFUSAL_AUDIT_DETAIL,
    "patient_max_body_bytes": DEFAULT_PATIENT_MAX_BODY_BYTES,
    "practitioner_max_body_bytes": DEFAULT_PRACTITIONER_MAX_BODY_BYTES,
    "max_json_depth": DEFAULT_MAX_JSON_DEPTH,
    "max_array_items": DEFAULT_MAX_ARRAY_ITEMS,
    "max_elements": DEFAULT_MAX_ELEMENTS,
    "max_url_bytes": DEFAULT_MAX_URL_BYTES,
    "max_search_params": DEFAULT_MAX_SEARCH_PARAMS,
    "max_param_repeats": DEFAULT_MAX_PARAM_REPEATS,
    "max_param_values": DEFAULT_MAX_PARAM_VALUES,
    "max_sort_keys": DEFAULT_MAX_SORT_KEYS,
}


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str = ""
    data_dir: Path = DEFAULT_DATA_DIR
    # The public base URL of the FHIR endpoint; derived from the request when empty.
    base_url: str = ""
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    default_page_size: int = 20
    max_page_size: int = 1000
    load_content: bool = True
    # Run the outbox worker in this process (off only to test that events wait safely).
    events_worker: bool = True
    secret_key: bytes = field(default=b"", repr=False)
    # SMART authorization server (fhir_server.auth, docs/AUTH.md)
    sms_sender: str = "outbox"  # outbox (JSON lines in data_dir) | webhook
    sms_webhook_url: str = ""
    sms_hourly_limit: int = 500  # every SMS this installation sends
    sms_ip_hourly_limit: int = 50
    login_ip_failure_limit: int = 20  # wrong activation codes/passwords per IP per 15 min
    # Reverse proxies whose forwarding header names the client (fhir_server.client_address);
    # empty: the socket peer is the client and forwarding headers are ignored.
    trusted_proxies: tuple[Network, ...] = ()
    forwarded_header: str = "x-forwarded-for"  # or "forwarded" (RFC 7239)
    # Access control on /fhir (docs/AUTH.md): "smart" (bearer tokens, the default) or
    # "none" (local experiments only: loopback, every request an admin).
    auth: str = "smart"
    # The audit trail (fhir_server.audit, docs/AUTH.md "Audit"): on unless SELFBACK_AUDIT=off.
    audit: bool = True
    # Where AuditEvents are written: "process" (a writer process of its own, the default:
    # the request process only queues records) or "thread" (a thread of this process).
    audit_writer: str = "process"
    # A clinician sees a patient's data only with a permitting Consent *and* an active
    # CareTeam of the patient naming them (SEC-02, docs/AUTH.md "Consent"); off
    # (SELFBACK_CARE_TEAM_REQUIRED=off) for deployments that rely on Consent alone.
    care_team_required: bool = True
    # Hardening against floods and oversized input (docs/DEPLOYMENT.md "Limits"):
    # refusals (401/403) per client address and window before they are answered 429, and
    # how many of them per address, kind and window are audited one by one before the rest
    # are counted into one AuditEvent (fhir_server/api/refusals.py, audit/coalesce.py).
    refusal_limit: int = DEFAULT_REFUSAL_LIMIT
    refusal_window: int = DEFAULT_REFUSAL_WINDOW
    refusal_audit_detail: int = DEFAULT_REFUSAL_AUDIT_DETAIL
    # Body limits by role (fhir_server/api/limits.py): a patient app sends questionnaire
    # answers and step counts, never megabytes; admins and backend clients get
    # max_body_bytes. Every body also meets the structure limits below.
    patient_max_body_bytes: int = DEFAULT_PATIENT_MAX_BODY_BYTES
    practitioner_max_body_bytes: int = DEFAULT_PRACTITIONER_MAX_BODY_BYTES
    max_json_depth: int = DEFAULT_MAX_JSON_DEPTH
    max_array_items: int = DEFAULT_MAX_ARRAY_ITEMS
    max_elements: int = DEFAULT_MAX_ELEMENTS
    # Searches and URLs (fhir_server/search/limits.py, the ASGI app for the URL).
    max_url_bytes: int = DEFAULT_MAX_URL_BYTES
    max_search_params: int = DEFAULT_MAX_SEARCH_PARAMS
    max_param_repeats: int = DEFAULT_MAX_PARAM_REPEATS
    max_param_values: int = DEFAULT_MAX_PARAM_VALUES
    max_sort_keys: int = DEFAULT_MAX_SORT_KEYS
    # Safety alerts (fhir_server.alerts, docs/ALERTS.md). A signed webhook receives every
    # alert when a URL is set; the SMS gateway above (sms_sender) also gets the urgent and
    # emergency ones when alert_sms is on.
    alert_webhook_url: str = ""
    alert_webhook_secret: str = field(default="", repr=False)
    alert_sms: bool = True
    # Delivery retries: capped exponential back-off (base * 2^(n-1), at most cap), given
    # up (Communication.status stopped, with the reason) once an alert is max_age old.
    alert_retry_base_seconds: float = 15.0
    alert_retry_cap_seconds: float = 900.0
    alert_retry_max_age_seconds: float = 86_400.0
    # An emergency alert (cauda equina signs) still not accepted by its owner after this
    # long is escalated to the organisation. NICE CKS "Sciatica (lumbar radiculopathy)" /
    # "Low back pain without radiculopathy": suspected cauda equina syndrome needs
    # *immediate* (emergency, same-day) referral, so the default is 30 minutes; the
    # deployment's clinical safety officer signs the value off (DCB0129/DCB0160).
    alert_escalation_seconds: float = 1800.0
    # Origins that may frame the sign-in and consent pages besides those registered on EHR
    # clients (SELFBACK_FRAME_ANCESTORS, space-separated; fhir_server.auth.framing).
    frame_ancestors: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        data_dir = Path(_env("DATA_DIR", str(DEFAULT_DATA_DIR)))
        settings = cls(
            database_url=_env("DATABASE_URL", ""),
            data_dir=data_dir,
            base_url=_env("BASE_URL", ""),
            max_body_bytes=int(_env("MAX_BODY_BYTES", str(DEFAULT_MAX_BODY_BYTES))),
            load_content=_env("LOAD_CONTENT", "1") not in ("0", "false", "no"),
            events_worker=_env("EVENTS_WORKER", "1") not in ("0", "false", "no"),
            sms_sender=_env("SMS_SENDER", "outbox"),
            sms_webhook_url=_env("SMS_WEBHOOK_URL", ""),
            sms_hourly_limit=int(_env("SMS_HOURLY_LIMIT", "500")),
            sms_ip_hourly_limit=int(_env("SMS_IP_HOURLY_LIMIT", "50")),
            login_ip_failure_limit=int(_env("LOGIN_IP_FAILURE_LIMIT", "20")),
            trusted_proxies=parse_trusted_proxies(_env("TRUSTED_PROXIES", "")),
            forwarded_header=_env("FORWARDED_HEADER", "x-forwarded-for").strip().lower(),
            auth=_env("AUTH", "smart").strip().lower(),
            audit=_env("AUDIT", "on").lower() not in ("0", "off", "false", "no"),
            audit_writer=_env("AUDIT_WRITER", "process").strip().lower(),
            care_team_required=_env("CARE_TEAM_REQUIRED", "on").lower()
            not in ("0", "off", "false", "no"),
            **{name: int(_env(name.upper(), str(default))) for name, default in LIMITS.items()},
            alert_webhook_url=_env("ALERT_WEBHOOK_URL", ""),
            alert_webhook_secret=_env("ALERT_WEBHOOK_SECRET", ""),
            alert_sms=_env("ALERT_SMS", "on").lower() not in ("0", "off", "false", "no"),
            alert_retry_base_seconds=float(_env("ALERT_RETRY_BASE_SECONDS", "15")),
            alert_retry_cap_seconds=float(_env("ALERT_RETRY_CAP_SECONDS", "900")),
            alert_retry_max_age_seconds=float(_env("ALERT_RETRY_MAX_AGE_SECONDS", "86400")),
            alert_escalation_seconds=float(_env("ALERT_ESCALATION_SECONDS", "1800")),
            frame_ancestors=parse_origins(_env("FRAME_ANCESTORS", ""), "SELFBACK_FRAME_ANCESTORS"),
        )
        clean = {k: v for k, v in overrides.items() if v is not None}
        return replace(settings, **clean).resolved()  # type: ignore[arg-type]

    def resolved(self) -> Settings:
        """Fill in what is derived: the SQLite default URL and the secret key."""
        if self.auth not in AUTH_MODES:
            raise ValueError(
                f"SELFBACK_AUTH must be one of {', '.join(AUTH_MODES)}, not {self.auth!r}"
            )
        if self.forwarded_header not in FORWARDED_HEADERS:
            raise ValueError(
                f"SELFBACK_FORWARDED_HEADER must be one of {', '.join(FORWARDED_HEADERS)}, "
                f"not {self.forwarded_header!r}"
            )
        if self.audit_writer not in AUDIT_WRITERS:
            raise ValueError(
                f"SELFBACK_AUDIT_WRITER must be one of {', '.join(AUDIT_WRITERS)}, "
                f"not {self.audit_writer!r}"
            )
        for name in LIMITS:
            if getattr(self, name) < 1:
                raise ValueError(f"SELFBACK_{name.upper()} must be a positive number")
        if self.alert_webhook_url and not self.alert_webhook_secret:
            raise ValueError("SELFBACK_ALERT_WEBHOOK_URL needs SELFBACK_ALERT_WEBHOOK_SECRET")
        url = self.database_url or f"sqlite:///{self.data_dir / 'selfback.sqlite'}"
        key = self.secret_key or _load_or_create_secret(self.data_dir)
        return replace(self, database_url=normalise_database_url(url), secret_key=key)


def parse_origins(text: str, where: str) -> tuple[str, ...]:
    """Web origins (``https://ehr.example.org``), space- or comma-separated; a value that
    is not exactly an origin (a path, a wildcard, a trailing slash) is refused at start-up."""
    origins = []
    for word in text.replace(",", " ").split():
        if origin_or_none(word) != word:
            raise ValueError(f"{where}: {word!r} is not an origin like https://ehr.example.org")
        origins.append(word)
    return tuple(origins)


def origin_or_none(uri: str) -> str | None:
    """The origin (scheme://host[:port]) of an http(s) URL (RFC 6454), else None."""
    parts = urlsplit(uri)
    if parts.scheme in ("http", "https") and parts.netloc and "@" not in parts.netloc:
        return f"{parts.scheme}://{parts.netloc}"
    return None


def normalise_database_url(url: str) -> str:
    """Accept the usual ``postgresql://`` spelling and use the psycopg 3 driver for it."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _load_or_create_secret(data_dir: Path) -> bytes:
    """A per-installation key for signing paging cursors; kept so cursors survive restarts."""
    env = os.environ.get("SELFBACK_SECRET_KEY")
    if env:
        return env.encode()
    path = data_dir / "secret.key"
    if path.exists():
        return path.read_bytes().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32).encode()
    path.write_bytes(key)
    path.chmod(0o600)
    return key
