"""auth: OAuth clients, signing keys, accounts, codes, tokens, launch contexts, rate limits

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-21 12:00:00

Tables of fhir_server/auth/tables.py (the SMART authorization server).
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "auth_account",
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("fhir_user", sa.String(length=255), nullable=True),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column("username", sa.String(length=255), nullable=True),
        sa.Column("password_hash", sa.Text(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("account_id"),
        sa.UniqueConstraint("phone", name="uq_auth_account_phone"),
        sa.UniqueConstraint("username", name="uq_auth_account_username"),
    )
    op.create_table(
        "auth_activation_code",
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("used_at", sa.BigInteger(), nullable=True),
        sa.Column("account_id", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("code_hash"),
    )
    op.create_table(
        "auth_attempt",
        sa.Column(
            "pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("pk"),
    )
    with op.batch_alter_table("auth_attempt", schema=None) as batch_op:
        batch_op.create_index("ix_auth_attempt_at", ["at"], unique=False)
        batch_op.create_index("ix_auth_attempt_key_at", ["key", "at"], unique=False)

    op.create_table(
        "auth_client",
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("client_type", sa.String(length=32), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=True),
        sa.Column("redirect_uris", sa.Text(), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("grant_types", sa.Text(), nullable=False),
        sa.Column("jwks", sa.Text(), nullable=True),
        sa.Column("jwks_uri", sa.String(length=1024), nullable=True),
        sa.Column("launch_uri", sa.String(length=1024), nullable=True),
        sa.Column("origins", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("client_id"),
    )
    op.create_table(
        "auth_code",
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("grant_id", sa.String(length=64), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("redirect_uri", sa.String(length=1024), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("code_challenge", sa.String(length=128), nullable=False),
        sa.Column("nonce", sa.String(length=255), nullable=True),
        sa.Column("auth_time", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("used_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("code_hash"),
    )
    with op.batch_alter_table("auth_code", schema=None) as batch_op:
        batch_op.create_index("ix_auth_code_expires", ["expires_at"], unique=False)

    op.create_table(
        "auth_grant",
        sa.Column("grant_id", sa.String(length=64), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=True),
        sa.Column("role", sa.String(length=32), nullable=True),
        sa.Column("fhir_user", sa.String(length=255), nullable=True),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("context", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("refresh_expires_at", sa.BigInteger(), nullable=True),
        sa.Column("revoked_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("grant_id"),
    )
    with op.batch_alter_table("auth_grant", schema=None) as batch_op:
        batch_op.create_index("ix_auth_grant_client", ["client_id"], unique=False)
        batch_op.create_index("ix_auth_grant_subject", ["subject"], unique=False)

    op.create_table(
        "auth_jti",
        sa.Column("issuer", sa.String(length=64), nullable=False),
        sa.Column("jti", sa.String(length=255), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("issuer", "jti", name="pk_auth_jti"),
    )
    with op.batch_alter_table("auth_jti", schema=None) as batch_op:
        batch_op.create_index("ix_auth_jti_expires", ["expires_at"], unique=False)

    op.create_table(
        "auth_launch",
        sa.Column("launch_hash", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=True),
        sa.Column("context", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("used_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("launch_hash"),
    )
    op.create_table(
        "auth_login_flow",
        sa.Column("flow_hash", sa.String(length=64), nullable=False),
        sa.Column("request", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("flow_hash"),
    )
    with op.batch_alter_table("auth_login_flow", schema=None) as batch_op:
        batch_op.create_index("ix_auth_login_flow_expires", ["expires_at"], unique=False)

    op.create_table(
        "auth_signing_key",
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("alg", sa.String(length=16), nullable=False),
        sa.Column("private_jwk", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("retired_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("kid"),
    )
    op.create_table(
        "auth_token",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("grant_id", sa.String(length=64), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("issued_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("used_at", sa.BigInteger(), nullable=True),
        sa.Column("revoked_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    with op.batch_alter_table("auth_token", schema=None) as batch_op:
        batch_op.create_index("ix_auth_token_expires", ["expires_at"], unique=False)
        batch_op.create_index("ix_auth_token_grant", ["grant_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("auth_token", schema=None) as batch_op:
        batch_op.drop_index("ix_auth_token_grant")
        batch_op.drop_index("ix_auth_token_expires")

    op.drop_table("auth_token")
    op.drop_table("auth_signing_key")
    with op.batch_alter_table("auth_login_flow", schema=None) as batch_op:
        batch_op.drop_index("ix_auth_login_flow_expires")

    op.drop_table("auth_login_flow")
    op.drop_table("auth_launch")
    with op.batch_alter_table("auth_jti", schema=None) as batch_op:
        batch_op.drop_index("ix_auth_jti_expires")

    op.drop_table("auth_jti")
    with op.batch_alter_table("auth_grant", schema=None) as batch_op:
        batch_op.drop_index("ix_auth_grant_subject")
        batch_op.drop_index("ix_auth_grant_client")

    op.drop_table("auth_grant")
    with op.batch_alter_table("auth_code", schema=None) as batch_op:
        batch_op.drop_index("ix_auth_code_expires")

    op.drop_table("auth_code")
    op.drop_table("auth_client")
    with op.batch_alter_table("auth_attempt", schema=None) as batch_op:
        batch_op.drop_index("ix_auth_attempt_key_at")
        batch_op.drop_index("ix_auth_attempt_at")

    op.drop_table("auth_attempt")
    op.drop_table("auth_activation_code")
    op.drop_table("auth_account")
