"""auth: single-use activation codes, voiding, clinician re-enrolment

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 21:45:00

Issue 10 item 5 (fhir_server/auth/accounts.py, docs/AUTH.md "Patients, first time"):
``auth_activation_code`` gains ``reenrol`` (the code was issued by a clinician to move the
patient's existing account to a new phone; a plain code never moves an account) and
``voided_at`` (a newer code for the same patient voided this unused one), and an index on
``patient_id`` so issuing a code finds the patient's earlier codes without a scan.

Cost: ``voided_at`` is nullable without a default (catalogue only). ``reenrol`` is NOT NULL
with a constant server default ``false``: PostgreSQL 11+ stores the default in the
catalogue and rewrites no row; SQLite's ADD COLUMN with a constant default rewrites
nothing either. Codes issued before the upgrade read as plain (``false``), which is what
they were. The downgrade drops the index and both columns (batch mode for old SQLite).
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "auth_activation_code",
        sa.Column("reenrol", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column("auth_activation_code", sa.Column("voided_at", sa.BigInteger(), nullable=True))
    op.create_index("ix_auth_activation_code_patient", "auth_activation_code", ["patient_id"])


def downgrade() -> None:
    op.drop_index("ix_auth_activation_code_patient", table_name="auth_activation_code")
    with op.batch_alter_table("auth_activation_code") as batch:
        batch.drop_column("voided_at")
        batch.drop_column("reenrol")
