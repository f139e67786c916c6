"""Tables, as SQLAlchemy Core metadata shared by SQLite and PostgreSQL.

Layout (fhir-server-anchors.md section 6.2): ``resource`` holds the current version of
each resource as the canonical JSON bytes we serve; ``resource_history`` holds every
version ever written (append-only); one typed index table per search-parameter kind holds
the values extracted on write, in the same transaction.
"""

from __future__ import annotations

from sqlalchemy import (
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
)

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


def _index_table(name: str, *columns: Column, value_index: tuple[str, ...]) -> Table:
    """An index table: (res_pk, rtype, param) + the value columns of one parameter kind."""
    return Table(
        name,
        metadata,
        Column("res_pk", BigInteger, nullable=False),
        Column("rtype", String(64), nullable=False),
        Column("param", String(64), nullable=False),
        *columns,
        Index(f"ix_{name}_value", "rtype", "param", *value_index, "res_pk"),
        Index(f"ix_{name}_res", "res_pk"),
    )


# --- search index tables -------------------------------------------------------------
# The value columns below are owned by fhir_server.search (extraction and SQL). Extraction
# yields rows keyed by these table names; storage adds res_pk/rtype and inserts them.

sp_string = _index_table(
    "sp_string",
    Column("value_norm", String(255), nullable=False),  # lower-cased, accents removed
    Column("value_exact", Text, nullable=False),
    value_index=("value_norm",),
)

sp_token = _index_table(
    "sp_token",
    Column("system", String(255), nullable=True),
    Column("code", String(255), nullable=True),
    Column("text_norm", String(255), nullable=True),  # display / text, for :text
    value_index=("code", "system"),
)

sp_date = _index_table(
    "sp_date",
    # Inclusive microsecond bounds (UTC) of the period the value denotes.
    Column("lo", BigInteger, nullable=False),
    Column("hi", BigInteger, nullable=False),
    value_index=("lo", "hi"),
)

sp_number = _index_table(
    "sp_number",
    Column("value", Float(53), nullable=False),
    Column("lo", Float(53), nullable=False),
    Column("hi", Float(53), nullable=False),
    value_index=("value",),
)

sp_quantity = _index_table(
    "sp_quantity",
    Column("system", String(255), nullable=True),
    Column("code", String(255), nullable=True),
    Column("value", Float(53), nullable=False),
    Column("lo", Float(53), nullable=False),
    Column("hi", Float(53), nullable=False),
    # UCUM-canonical form where the unit converts; null otherwise.
    Column("canon_code", String(255), nullable=True),
    Column("canon_value", Float(53), nullable=True),
    value_index=("code", "value"),
)

sp_reference = _index_table(
    "sp_reference",
    Column("target_type", String(64), nullable=True),
    Column("target_id", String(255), nullable=True),
    Column("target_version", String(64), nullable=True),
    Column("url", Text, nullable=True),  # absolute or canonical references
    value_index=("target_id", "target_type"),
)

sp_uri = _index_table(
    "sp_uri",
    Column("value", Text, nullable=False),
    value_index=("value",),
)

INDEX_TABLES: dict[str, Table] = {
    t.name: t for t in (sp_string, sp_token, sp_date, sp_number, sp_quantity, sp_reference, sp_uri)
}
