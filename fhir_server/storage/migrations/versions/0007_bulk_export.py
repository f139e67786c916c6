"""bulk export: the $export job table

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-21 09:30:00

One new table, ``bulk_export_job`` (fhir_server/export/tables.py): a row per Bulk Data
``$export`` kick-off (https://hl7.org/fhir/uv/bulkdata/STU2/export.html) holding what was
asked, the scopes it runs under, its progress and, when done, its manifest. Jobs live in
the database so that a status URL answers from any server process and after a restart
(docs/BULK_EXPORT.md). The NDJSON files themselves are in the data folder
(``exports/<job id>/``), not in the database.

Cost: creating an empty table and two indexes; no existing row is read or rewritten. The
downgrade drops the table and with it every job; the files of finished jobs stay in the
data folder until removed by hand.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bulk_export_job",
        sa.Column("job_id", sa.String(length=64), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("group_id", sa.String(length=64), nullable=True),
        sa.Column("request", sa.Text(), nullable=False),
        sa.Column("parameters", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("transaction_time", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("completed_at", sa.BigInteger(), nullable=True),
        sa.Column("expires_at", sa.BigInteger(), nullable=True),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("claimed_until", sa.BigInteger(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("progress", sa.String(length=100), nullable=True),
        sa.Column("manifest", sa.Text(), nullable=True),
        sa.Column("failure", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("job_id"),
    )
    op.create_index(
        "ix_bulk_export_job_client", "bulk_export_job", ["client_id", "status"], unique=False
    )
    op.create_index(
        "ix_bulk_export_job_due", "bulk_export_job", ["status", "claimed_until"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_bulk_export_job_due", table_name="bulk_export_job")
    op.drop_index("ix_bulk_export_job_client", table_name="bulk_export_job")
    op.drop_table("bulk_export_job")
