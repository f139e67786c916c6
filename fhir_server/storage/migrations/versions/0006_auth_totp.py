"""auth: TOTP second factor for clinicians and admins

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-21 09:00:00

Two nullable columns on ``auth_account`` (fhir_server/auth/tables.py,
fhir_server/auth/totp.py): ``totp_secret``, the base32 shared secret of an account that
enrolled (NULL: no second factor, the sign-in is unchanged), and ``totp_last_step``, the
last RFC 6238 time step accepted, so a code is never accepted twice (RFC 6238 section 5.2).

Cost: adding a nullable column without a default is a change to the catalogue only, on
PostgreSQL and on SQLite; no row is rewritten and the table is locked only for that
instant. The downgrade drops both columns, and with them every enrolment.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("auth_account", sa.Column("totp_secret", sa.String(length=64), nullable=True))
    op.add_column("auth_account", sa.Column("totp_last_step", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    # batch mode: SQLite before 3.35 has no DROP COLUMN, so Alembic copies the table there.
    with op.batch_alter_table("auth_account") as batch:
        batch.drop_column("totp_last_step")
        batch.drop_column("totp_secret")
