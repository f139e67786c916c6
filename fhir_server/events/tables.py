"""The outbox table (on the shared metadata, so migrations see it)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, String, Table, Text

from fhir_server.storage.schema import PK, metadata

outbox = Table(
    "outbox",
    metadata,
    Column("id", PK, primary_key=True, autoincrement=True),
    Column("topic", String(64), nullable=False),
    Column("rtype", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("created", BigInteger, nullable=False),  # µs since the epoch, UTC
    # Not before this instant (retry back-off); a claim holds the row until claimed_until.
    Column("available_at", BigInteger, nullable=False),
    Column("claimed_by", String(64), nullable=True),
    Column("claimed_until", BigInteger, nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("done_at", BigInteger, nullable=True),
    Column("last_error", Text, nullable=True),
    Index("ix_outbox_pending", "done_at", "available_at", "id"),
)
