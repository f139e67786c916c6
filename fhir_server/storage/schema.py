"""Tables, as SQLAlchemy Core metadata shared by SQLite and PostgreSQL.

Layout (fhir-server-anchors.md section 6.2): ``resource`` holds the current version of
each resource as the canonical JSON bytes we serve; ``resource_history`` holds every
version ever written (append-only); one typed index table per search-parameter kind holds
the values extracted on write, in the same transaction.
"""

from __future__ import annotations

from sqlalchemy import (
    DDL,
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    event,
)
from sqlalchemy.types import TypeEngine

metadata = MetaData()

# SQLite only aliases rowid (and so auto-increments) for a column typed exactly INTEGER.
PK = BigInteger().with_variant(Integer(), "sqlite")

resource = Table(
    "resource",
    metadata,
    Column("pk", PK, primary_key=True, autoincrement=True),
    Column("rtype", String(64), nullable=False),
    Column("id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    # Microseconds since the Unix epoch, UTC: the same instant as meta.lastUpdated.
    Column("last_updated", BigInteger, nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("body", LargeBinary, nullable=False),
    UniqueConstraint("rtype", "id", name="uq_resource_rtype_id"),
    Index("ix_resource_rtype_updated", "rtype", "last_updated", "pk"),
)

resource_history = Table(
    "resource_history",
    metadata,
    Column("hpk", PK, primary_key=True, autoincrement=True),
    Column("res_pk", BigInteger, nullable=False),
    Column("rtype", String(64), nullable=False),
    Column("id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("last_updated", BigInteger, nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    # The HTTP verb that made this version (history bundles report it in entry.request).
    Column("method", String(8), nullable=False),
    Column("body", LargeBinary, nullable=False),
    UniqueConstraint("rtype", "id", "version", name="uq_history_rtype_id_version"),
    Index("ix_history_updated", "last_updated", "hpk"),
    Index("ix_history_rtype_updated", "rtype", "last_updated", "hpk"),
)


def _index_table(
    name: str,
    *columns: Column,
    value_index: tuple[str, ...],
    value_index_tail: tuple[str, ...] = (),
    res_index_tail: tuple[str, ...] = (),
) -> Table:
    """An index table: (res_pk, rtype, param) + the value columns of one parameter kind.

    ``*_tail``: columns carried after ``res_pk`` in the value index and the res_pk index,
    so the lookups that read them are answered from the index alone (migration 0005)."""
    return Table(
        name,
        metadata,
        Column("res_pk", BigInteger, nullable=False),
        Column("rtype", String(64), nullable=False),
        Column("param", String(64), nullable=False),
        *columns,
        Index(f"ix_{name}_value", "rtype", "param", *value_index, "res_pk", *value_index_tail),
        Index(f"ix_{name}_res", "res_pk", *res_index_tail),
    )


# --- search index tables -------------------------------------------------------------
# The value columns below are owned by fhir_server.search (extraction and SQL). Extraction
# yields rows keyed by these table names; storage adds res_pk/rtype and inserts them.
#
# Every table has ``grp``: null for ordinary rows; for the components of a composite
# parameter (search.html#composite) the ordinal of the element they were read from, so a
# search can require all components to come from the same element. Component rows are
# stored under the parameter code followed by ``#<component index>``, e.g.
# ``component-code-value-quantity#1``. Reference identifiers (``subject:identifier``,
# search.html#reference) are sp_token rows under ``<code>:identifier``; Identifier types for
# ``:of-type`` (search.html#token) rows under ``<code>:of-type`` with code ``type|value``.
#
# Long values are cut to the column width on write and on search alike (see
# fhir_server.search.extraction), so equality and prefix tests stay exact on what is kept.

GRP = Integer


def _bytewise(length: int) -> TypeEngine[str]:
    """A string column that sorts by code point on PostgreSQL too ("C" collation), so
    prefix searches become index range scans, [v, successor(v)), on both databases."""
    return String(length).with_variant(String(length, collation="C"), "postgresql")


sp_string = _index_table(
    "sp_string",
    Column("value_norm", _bytewise(255), nullable=False),  # lower-cased, accents removed
    Column("value_exact", Text, nullable=False),
    Column("grp", GRP, nullable=True),
    value_index=("value_norm",),
)

sp_token = _index_table(
    "sp_token",
    Column("system", String(1024), nullable=True),
    Column("code", String(1024), nullable=True),
    Column("text_norm", _bytewise(255), nullable=True),  # display / text, for :text
    Column("grp", GRP, nullable=True),
    value_index=("code", "system"),
    # grp after res_pk: the first component of a composite (code-value-quantity#0) is
    # read by (rtype, param, code, system) and joined to the others on (res_pk, grp), all
    # from the index (it read the heap for grp: the _has benchmark query, 50-89 ms p95 on
    # PostgreSQL). After res_pk, so an equality lookup still yields rows in res_pk order
    # (search_sql.index_driven relies on it).
    value_index_tail=("grp",),
)
Index(
    "ix_sp_token_system", sp_token.c.rtype, sp_token.c.param, sp_token.c.system, sp_token.c.res_pk
)
# PostgreSQL: (rtype, param, code) are correlated, so the planner needs their joint
# frequencies (migration 0005 says why and makes the same object on migrated databases).
for _ddl in (
    "CREATE STATISTICS st_sp_token_rtype_param_code (mcv) ON rtype, param, code FROM sp_token",
    "ALTER STATISTICS st_sp_token_rtype_param_code SET STATISTICS 1000",
):
    event.listen(sp_token, "after_create", DDL(_ddl).execute_if(dialect="postgresql"))

sp_date = _index_table(
    "sp_date",
    # Inclusive microsecond bounds (UTC) of the period the value denotes; open Period
    # ends are fhir_server.search.dates.MIN_US / MAX_US.
    Column("lo", BigInteger, nullable=False),
    Column("hi", BigInteger, nullable=False),
    Column("grp", GRP, nullable=True),
    value_index=("lo", "hi"),
)
# gt/sa tests lead with hi, lt/eb with lo (fhir-server-anchors.md 3.2, item 2).
Index(
    "ix_sp_date_hi", sp_date.c.rtype, sp_date.c.param, sp_date.c.hi, sp_date.c.lo, sp_date.c.res_pk
)

sp_number = _index_table(
    "sp_number",
    # A single value has lo = hi = value; a Range has value null and its bounds.
    Column("value", Float(53), nullable=True),
    Column("lo", Float(53), nullable=False),
    Column("hi", Float(53), nullable=False),
    Column("grp", GRP, nullable=True),
    value_index=("lo", "hi"),
)

sp_quantity = _index_table(
    "sp_quantity",
    Column("system", String(255), nullable=True),
    Column("code", String(255), nullable=True),
    Column("unit", String(255), nullable=True),  # Quantity.unit, matched by `||unit`
    Column("value", Float(53), nullable=True),
    Column("lo", Float(53), nullable=False),
    Column("hi", Float(53), nullable=False),
    # UCUM-canonical form where the unit converts (fhir_server.search.units); null otherwise.
    Column("canon_code", String(64), nullable=True),
    Column("canon_lo", Float(53), nullable=True),
    Column("canon_hi", Float(53), nullable=True),
    Column("grp", GRP, nullable=True),
    value_index=("code", "lo"),
    # The res_pk index also holds (param, grp, lo, hi): the quantity component of a
    # composite is probed per candidate by res_pk and tested on exactly these, so the
    # probe never reads the heap; deletes by res_pk use its prefix as before.
    res_index_tail=("param", "grp", "lo", "hi"),
)
Index(
    "ix_sp_quantity_canon",
    sp_quantity.c.rtype,
    sp_quantity.c.param,
    sp_quantity.c.canon_code,
    sp_quantity.c.canon_lo,
    sp_quantity.c.res_pk,
)

sp_reference = _index_table(
    "sp_reference",
    Column("target_type", String(64), nullable=True),
    Column("target_id", String(64), nullable=True),
    Column("target_version", String(64), nullable=True),
    # Absolute, urn: or canonical references (canonical without its |version); null for
    # a relative reference to this server.
    Column("url", String(1024), nullable=True),
    Column("grp", GRP, nullable=True),
    value_index=("target_id", "target_type"),
)
# Reverse direction (``_has``, ``_revinclude``) and canonical references.
Index(
    "ix_sp_reference_target",
    sp_reference.c.target_type,
    sp_reference.c.target_id,
    sp_reference.c.param,
    sp_reference.c.res_pk,
)
Index("ix_sp_reference_url", sp_reference.c.rtype, sp_reference.c.param, sp_reference.c.url)

sp_uri = _index_table(
    "sp_uri",
    Column("value", _bytewise(1024), nullable=False),
    Column("grp", GRP, nullable=True),
    value_index=("value",),
)

INDEX_TABLES: dict[str, Table] = {
    t.name: t for t in (sp_string, sp_token, sp_date, sp_number, sp_quantity, sp_reference, sp_uri)
}
