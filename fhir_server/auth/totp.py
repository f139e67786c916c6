"""Time-based one-time passwords: the optional second factor of clinicians and admins.

RFC 6238 (TOTP) over RFC 4226 (HOTP): HMAC-SHA-1 of the 30-second time step, dynamically
truncated to 6 digits, the format every authenticator app reads from an ``otpauth://``
URI (Google Authenticator "Key Uri Format"). Pure code: the time is an argument.

Replay (RFC 6238 section 5.2, "the verifier MUST NOT accept the second attempt of the
OTP after the successful validation has been issued for the first OTP") is left to the
caller: :func:`matching_step` says which time step a code belongs to, and the account
store keeps the last step accepted, so a code of that step or an earlier one is refused.
"""

from __future__ import annotations

import base64
import hmac
import secrets
import struct
from urllib.parse import quote, urlencode

DIGITS = 6
PERIOD = 30  # RFC 6238 section 5.2: 30 seconds is the recommended time step
# RFC 6238 section 5.2: "at most one time step is allowed as the network delay" (and the
# phone's clock drifts too), so the previous and the next step are accepted as well.
DRIFT_STEPS = 1
SECRET_BYTES = 20  # RFC 4226 section 4 R6: 160 bits is recommended
ISSUER = "SelfBack"


def new_secret() -> str:
    """A new 160-bit shared secret, base32 without padding, as authenticator apps take it."""
    return base64.b32encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii").rstrip("=")


def secret_bytes(secret: str) -> bytes:
    """The key a base32 secret stands for (case, spaces and padding forgiven)."""
    compact = "".join(secret.split()).upper().rstrip("=")
    return base64.b32decode(compact + "=" * (-len(compact) % 8))


def hotp(key: bytes, counter: int, *, digits: int = DIGITS, algorithm: str = "sha1") -> str:
    """RFC 4226 section 5.3: HMAC of the 8-byte counter, dynamic truncation, modulo 10^d."""
    mac = hmac.new(key, struct.pack(">Q", counter), algorithm).digest()
    offset = mac[-1] & 0x0F
    binary = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(binary % 10**digits).zfill(digits)


def time_step(at: float, *, period: int = PERIOD) -> int:
    """RFC 6238 section 4.2: T = floor((now - T0) / X), with T0 = 0 (the Unix epoch)."""
    return int(at // period)


def totp(
    key: bytes, at: float, *, digits: int = DIGITS, period: int = PERIOD, algorithm: str = "sha1"
) -> str:
    return hotp(key, time_step(at, period=period), digits=digits, algorithm=algorithm)


def well_formed(code: str, *, digits: int = DIGITS) -> bool:
    """Exactly ``digits`` ASCII digits (str.isdigit would also take other scripts' digits)."""
    return len(code) == digits and all("0" <= ch <= "9" for ch in code)


def matching_step(
    secret: str,
    code: str,
    at: float,
    *,
    digits: int = DIGITS,
    period: int = PERIOD,
    drift: int = DRIFT_STEPS,
) -> int | None:
    """The time step within ``drift`` steps of ``at`` whose code is ``code``, or None.

    Every candidate is computed and compared in constant time, so how long the check takes
    says nothing about which step (if any) matched."""
    typed = "".join(code.split())
    if not well_formed(typed, digits=digits):
        return None
    key = secret_bytes(secret)
    now = time_step(at, period=period)
    found: int | None = None
    for step in range(now - drift, now + drift + 1):
        if hmac.compare_digest(hotp(key, step, digits=digits), typed) and found is None:
            found = step
    return found


def provisioning_uri(secret: str, account: str, *, issuer: str = ISSUER) -> str:
    """``otpauth://totp/Issuer:account?secret=...&issuer=...`` (Key Uri Format): what an
    authenticator app scans as a QR code or takes pasted."""
    label = quote(f"{issuer}:{account}", safe=":@")
    query = urlencode(
        {
            "secret": secret,
            "issuer": issuer,
            "algorithm": "SHA1",
            "digits": str(DIGITS),
            "period": str(PERIOD),
        },
        quote_via=quote,
    )
    return f"otpauth://totp/{label}?{query}"
