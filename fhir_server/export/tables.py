"""The bulk export job table (on the shared metadata, so migrations see it).

One row per ``$export`` kick-off (Bulk Data Access IG 2.0, export.html): what was asked,
under which scopes, how far the job is, and its manifest once done. The job lives in the
database, not in a process, so a status URL answers from any server process and after a
restart (docs/BULK_EXPORT.md, "Jobs"). Times are microseconds since the Unix epoch, UTC, as
``resource.last_updated`` is. Migration: storage/migrations/versions/0007_bulk_export.py.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, String, Table, Text

from fhir_server.storage.schema import metadata

bulk_export_job = Table(
    "bulk_export_job",
    metadata,
    Column("job_id", String(64), primary_key=True),  # random: the status URL is not guessable
    Column("client_id", String(64), nullable=False),  # only this client polls and downloads
    Column("scope", Text, nullable=False),  # the system/ scopes the job exports under
    Column("level", String(16), nullable=False),  # system | patient | group
    Column("group_id", String(64), nullable=True),
    Column("request", Text, nullable=False),  # the kick-off URL, for the manifest
    Column("parameters", Text, nullable=False),  # JSON: types, _since, _typeFilter, members
    # accepted | in-progress | completed | failed
    Column("status", String(16), nullable=False),
    Column("transaction_time", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("completed_at", BigInteger, nullable=True),
    Column("expires_at", BigInteger, nullable=True),
    # The process running the job holds it until claimed_until and renews that while it
    # works; a job whose claim ran out (its process died) is taken up again.
    Column("claimed_by", String(64), nullable=True),
    Column("claimed_until", BigInteger, nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("progress", String(100), nullable=True),  # the X-Progress header, under 100 chars
    Column("manifest", Text, nullable=True),  # JSON: output and error files with counts
    Column("failure", Text, nullable=True),  # why a failed job failed
    Index("ix_bulk_export_job_client", "client_id", "status"),
    Index("ix_bulk_export_job_due", "status", "claimed_until"),
)
