"""The authorization server's tables, on the same metadata as the FHIR storage schema.

Every secret a client or person presents (client secret, code, token, launch value,
activation code, login-flow handle) is stored only as its SHA-256 (``*_hash`` columns), so
a copy of the database lets nobody act as anyone. The one secret kept as is, a
clinician's TOTP secret (``auth_account.totp_secret``), is one the server must compute
with; the argon2id password still stands in front of it. Times are whole seconds since the Unix
epoch, UTC. JSON columns hold small documents (lists of URIs, launch context).
Migration: fhir_server/storage/migrations/versions/0003_auth.py.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)

from fhir_server.storage.schema import PK, metadata

HASH = String(64)  # hex SHA-256
ID = String(64)
TIME = BigInteger

auth_client = Table(
    "auth_client",
    metadata,
    Column("client_id", ID, primary_key=True),
    Column("name", String(255), nullable=False),
    # public | confidential-symmetric | confidential-asymmetric
    Column("client_type", String(32), nullable=False),
    Column("secret_hash", HASH, nullable=True),
    Column("redirect_uris", Text, nullable=False),  # JSON list
    Column("scope", Text, nullable=False),  # the scopes it may ever be granted
    Column("grant_types", Text, nullable=False),  # JSON list
    Column("jwks", Text, nullable=True),  # JSON JWK Set, inline registration
    Column("jwks_uri", String(1024), nullable=True),
    Column("launch_uri", String(1024), nullable=True),  # where EHR launches open the app
    Column("origins", Text, nullable=False),  # JSON list of CORS origins
    Column("created_at", TIME, nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
)

auth_signing_key = Table(
    "auth_signing_key",
    metadata,
    Column("kid", ID, primary_key=True),
    Column("alg", String(16), nullable=False),
    Column("private_jwk", Text, nullable=False),
    Column("created_at", TIME, nullable=False),
    # Retired keys sign nothing new but stay in the JWKS until their tokens expire.
    Column("retired_at", TIME, nullable=True),
)

auth_account = Table(
    "auth_account",
    metadata,
    Column("account_id", ID, primary_key=True),  # the OIDC "sub"
    Column("role", String(32), nullable=False),  # patient | practitioner | admin
    Column("fhir_user", String(255), nullable=True),  # e.g. Patient/123
    Column("phone", String(32), nullable=True),  # E.164
    Column("username", String(255), nullable=True),
    Column("password_hash", Text, nullable=True),  # argon2id
    Column("created_at", TIME, nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
    # TOTP second factor (fhir_server/auth/totp.py, migration 0006): the base32 shared
    # secret, stored as is because the server must compute codes from it (docs/AUTH.md),
    # and the last time step accepted, so no code is accepted twice (RFC 6238 5.2).
    Column("totp_secret", String(64), nullable=True),
    Column("totp_last_step", BigInteger, nullable=True),
    UniqueConstraint("phone", name="uq_auth_account_phone"),
    UniqueConstraint("username", name="uq_auth_account_username"),
)

auth_activation_code = Table(
    "auth_activation_code",
    metadata,
    Column("code_hash", HASH, primary_key=True),
    Column("patient_id", ID, nullable=False),
    Column("created_by", String(255), nullable=False),
    Column("created_at", TIME, nullable=False),
    Column("expires_at", TIME, nullable=False),
    Column("used_at", TIME, nullable=True),
    Column("account_id", ID, nullable=True),
    # Migration 0008 (issue 10 item 5): a code a clinician issued to move an existing
    # account to a new phone (re-enrolment), and when a newer code for the same patient
    # voided it. A code is redeemable only while used_at and voided_at are both NULL.
    Column("reenrol", Boolean, nullable=False, default=False, server_default=false()),
    Column("voided_at", TIME, nullable=True),
    Index("ix_auth_activation_code_patient", "patient_id"),
)

auth_login_flow = Table(
    "auth_login_flow",
    metadata,
    Column("flow_hash", HASH, primary_key=True),
    Column("request", Text, nullable=False),  # JSON: the validated authorize request
    Column("state", Text, nullable=False),  # JSON: step, locale, who signed in so far
    Column("created_at", TIME, nullable=False),
    Column("expires_at", TIME, nullable=False),
    Index("ix_auth_login_flow_expires", "expires_at"),
)

auth_launch = Table(
    "auth_launch",
    metadata,
    Column("launch_hash", HASH, primary_key=True),
    Column("created_by", ID, nullable=False),  # the EHR's backend client
    Column("client_id", ID, nullable=True),  # the app it is for, when named
    Column("context", Text, nullable=False),  # JSON launch context
    Column("created_at", TIME, nullable=False),
    Column("expires_at", TIME, nullable=False),
    Column("used_at", TIME, nullable=True),
)

auth_grant = Table(
    "auth_grant",
    metadata,
    Column("grant_id", ID, primary_key=True),
    Column("client_id", ID, nullable=False),
    Column("subject", String(255), nullable=True),
    Column("role", String(32), nullable=True),
    Column("fhir_user", String(255), nullable=True),
    Column("scope", Text, nullable=False),
    Column("context", Text, nullable=False),  # JSON: patient, encounter, fhirContext, ...
    Column("created_at", TIME, nullable=False),
    Column("refresh_expires_at", TIME, nullable=True),
    Column("revoked_at", TIME, nullable=True),
    Index("ix_auth_grant_subject", "subject"),
    Index("ix_auth_grant_client", "client_id"),
)

auth_code = Table(
    "auth_code",
    metadata,
    Column("code_hash", HASH, primary_key=True),
    Column("grant_id", ID, nullable=False),
    Column("client_id", ID, nullable=False),
    Column("redirect_uri", String(1024), nullable=False),
    Column("scope", Text, nullable=False),
    Column("code_challenge", String(128), nullable=False),
    Column("nonce", String(255), nullable=True),
    Column("auth_time", TIME, nullable=False),
    Column("expires_at", TIME, nullable=False),
    Column("used_at", TIME, nullable=True),
    Index("ix_auth_code_expires", "expires_at"),
)

auth_token = Table(
    "auth_token",
    metadata,
    Column("token_hash", HASH, primary_key=True),
    Column("kind", String(16), nullable=False),  # access | refresh
    Column("grant_id", ID, nullable=False),
    Column("client_id", ID, nullable=False),
    Column("scope", Text, nullable=False),
    Column("issued_at", TIME, nullable=False),
    Column("expires_at", TIME, nullable=False),
    Column("used_at", TIME, nullable=True),  # a refresh token already exchanged (rotated)
    Column("revoked_at", TIME, nullable=True),
    Index("ix_auth_token_grant", "grant_id"),
    Index("ix_auth_token_expires", "expires_at"),
)

# client_assertion "jti" values already seen, kept until the assertion expires (SAL-22).
auth_jti = Table(
    "auth_jti",
    metadata,
    Column("issuer", ID, nullable=False),
    Column("jti", String(255), nullable=False),
    Column("expires_at", TIME, nullable=False),
    PrimaryKeyConstraint("issuer", "jti", name="pk_auth_jti"),
    Index("ix_auth_jti_expires", "expires_at"),
)

# One row per counted event (an SMS sent, a wrong code); rate limits count them in a window.
auth_attempt = Table(
    "auth_attempt",
    metadata,
    Column("pk", PK, primary_key=True, autoincrement=True),
    Column("key", String(255), nullable=False),
    Column("at", TIME, nullable=False),
    Index("ix_auth_attempt_key_at", "key", "at"),
    Index("ix_auth_attempt_at", "at"),
)

AUTH_TABLES = (
    auth_client,
    auth_signing_key,
    auth_account,
    auth_activation_code,
    auth_login_flow,
    auth_launch,
    auth_grant,
    auth_code,
    auth_token,
    auth_jti,
    auth_attempt,
)
