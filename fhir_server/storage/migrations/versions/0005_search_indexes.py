"""search indexes: composites answered from the index; extended statistics for sp_token

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21 06:20:00

What docs/BENCHMARKS.md ("Search", "Not done, and why") asked for:

- ``ix_sp_token_value`` gains ``grp`` after ``res_pk``: the first component of a composite
  (``code-value-quantity#0``) is found by (rtype, param, code, system) and joined to the
  other components on (res_pk, grp); without grp in the index every row was a heap read.
- ``ix_sp_quantity_res`` becomes (res_pk, param, grp, lo, hi): the quantity component is
  probed per candidate through res_pk and tested on exactly these columns.
- PostgreSQL only: multi-column MCV statistics on sp_token (rtype, param, code). The three
  are strongly correlated (a code belongs to one parameter of one type), and the planner,
  multiplying their separate frequencies, estimated ``Patient.gender=female`` at 1 row
  (3,006 real) on the benchmark; with these statistics at target 1000 it estimated 3,006.
  The search SQL no longer depends on that estimate (plans are fenced, see
  fhir_server.storage.search_sql), but a planner that knows the real sizes picks join
  orders inside each fenced part better. Other index tables get none: their lookups are
  ranges on values (dates, quantities, strings) where the equality MCV list says little,
  and none was measured to help.

Cost on a populated PostgreSQL database: CREATE INDEX (plain: CONCURRENTLY cannot run in
Alembic's transaction) holds a SHARE lock on sp_token and sp_quantity until the migration
commits, so writes of resources wait for the index builds (reads go on); the new index is
built before the old one is dropped, so the ACCESS EXCLUSIVE lock of DROP INDEX, which
would stop reads too, is held only from the end of the build to the commit. The builds
take as long as building those two indexes does (bench/search_dataset.py rebuilds all
of them after its load); on an empty database the migration is instant. ANALYZE
sp_token (SHARE UPDATE EXCLUSIVE: reads and writes go on) fills the new statistics now,
since autovacuum would only analyse the table again after a tenth of it changed.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TOKEN_VALUE_BEFORE = ["rtype", "param", "code", "system", "res_pk"]
TOKEN_VALUE_AFTER = [*TOKEN_VALUE_BEFORE, "grp"]
QUANTITY_RES_BEFORE = ["res_pk"]
QUANTITY_RES_AFTER = ["res_pk", "param", "grp", "lo", "hi"]

# fhir_server/storage/schema.py creates the same object for databases made from the metadata.
STATISTICS = "st_sp_token_rtype_param_code"
STATISTICS_TARGET = 1000


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def _replace_index(name: str, table: str, columns: list[str]) -> None:
    if _postgres():
        # Build first, drop last: see the module docstring for the locks.
        op.create_index(f"{name}_0005", table, columns, unique=False)
        op.drop_index(name, table_name=table)
        op.execute(sa.text(f'ALTER INDEX "{name}_0005" RENAME TO "{name}"'))
    else:
        # SQLite cannot rename an index; its write transaction locks the whole file anyway.
        op.drop_index(name, table_name=table)
        op.create_index(name, table, columns, unique=False)


def upgrade() -> None:
    _replace_index("ix_sp_token_value", "sp_token", TOKEN_VALUE_AFTER)
    _replace_index("ix_sp_quantity_res", "sp_quantity", QUANTITY_RES_AFTER)
    if _postgres():
        op.execute(
            sa.text(f"CREATE STATISTICS {STATISTICS} (mcv) ON rtype, param, code FROM sp_token")
        )
        op.execute(sa.text(f"ALTER STATISTICS {STATISTICS} SET STATISTICS {STATISTICS_TARGET}"))
        op.execute(sa.text("ANALYZE sp_token"))


def downgrade() -> None:
    if _postgres():
        op.execute(sa.text(f"DROP STATISTICS IF EXISTS {STATISTICS}"))
    _replace_index("ix_sp_quantity_res", "sp_quantity", QUANTITY_RES_BEFORE)
    _replace_index("ix_sp_token_value", "sp_token", TOKEN_VALUE_BEFORE)
