"""Secrets we hand out and how we keep them: random values, digests, passwords, SMS codes.

Handed-out secrets (tokens, codes, launch values, client secrets) are 256-bit random and
stored as SHA-256 digests: a fast digest is enough for values nobody can guess. Passwords
are argon2id. Six-digit SMS codes are guessable offline from a plain digest, so they are
keyed with the installation's secret (HMAC-SHA-256).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_PASSWORDS = PasswordHasher()


def new_secret(nbytes: int = 32) -> str:
    """A URL-safe random value with ``nbytes`` of entropy."""
    return secrets.token_urlsafe(nbytes)


def new_identifier(nbytes: int = 16) -> str:
    """A random URL-safe identifier (client ids, account ids) that does not start with
    ``-`` or ``_``: these are typed as command-line arguments (``selfback client disable
    ID``), where a leading ``-`` reads as an option. Drawn again until it does not (one
    value in 32 is), so every value left is equally likely."""
    while True:
        value = secrets.token_urlsafe(nbytes)
        if value[0] not in "-_":
            return value


def digest(secret: str) -> str:
    """The hex SHA-256 we store instead of ``secret``."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def hash_password(password: str) -> str:
    return _PASSWORDS.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    if not stored:
        # Spend the same time as a real check, so unknown users cannot be told apart.
        _PASSWORDS.hash(password)
        return False
    try:
        return _PASSWORDS.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def new_sms_code() -> str:
    return f"{secrets.randbelow(1_000_000):06d}"


def keyed_digest(key: bytes, value: str) -> str:
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


# Activation codes are read aloud and typed by patients: 12 characters from an alphabet
# without look-alikes (no 0/O, 1/I/L), shown in groups of four (~58 bits of entropy).
_ACTIVATION_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"


def new_activation_code() -> str:
    raw = "".join(secrets.choice(_ACTIVATION_ALPHABET) for _ in range(12))
    return "-".join(raw[i : i + 4] for i in range(0, 12, 4))


def normalise_activation_code(text: str) -> str:
    """What a person typed, compared as we issued it: case, spaces and dashes ignored."""
    raw = "".join(ch for ch in text.upper() if ch.isalnum())
    return "-".join(raw[i : i + 4] for i in range(0, len(raw), 4))
