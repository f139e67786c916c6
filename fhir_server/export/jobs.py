"""Reading and writing bulk export job rows. Storage only: no HTTP, no NDJSON here.

A job moves accepted -> in-progress -> completed | failed. A server process claims a job
for ``lease`` microseconds and renews the claim while it works (``renew``); when its
process dies the claim runs out and any process takes the job up again from the start
(docs/BULK_EXPORT.md, "Jobs"); a process that shuts down hands its job back at once
(``release``). Cancellation is the row's deletion: the worker notices at
its next renewal (no row) and stops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import and_, delete, func, insert, or_, select, update

from fhir_server.export.tables import bulk_export_job as job_table
from fhir_server.storage.database import Database

ACCEPTED = "accepted"
IN_PROGRESS = "in-progress"
COMPLETED = "completed"
FAILED = "failed"
UNFINISHED = (ACCEPTED, IN_PROGRESS)


@dataclass(frozen=True, slots=True)
class ExportJob:
    job_id: str
    client_id: str
    scope: str
    level: str
    group_id: str | None
    request: str
    parameters: dict[str, Any]
    status: str
    transaction_time: int
    created_at: int
    completed_at: int | None = None
    expires_at: int | None = None
    attempts: int = 0
    progress: str | None = None
    manifest: dict[str, Any] | None = None
    failure: str | None = None


def _job(row: Any) -> ExportJob:
    return ExportJob(
        job_id=row.job_id,
        client_id=row.client_id,
        scope=row.scope,
        level=row.level,
        group_id=row.group_id,
        request=row.request,
        parameters=orjson.loads(row.parameters),
        status=row.status,
        transaction_time=row.transaction_time,
        created_at=row.created_at,
        completed_at=row.completed_at,
        expires_at=row.expires_at,
        attempts=row.attempts,
        progress=row.progress,
        manifest=orjson.loads(row.manifest) if row.manifest else None,
        failure=row.failure,
    )


class ExportJobs:
    """The job table of one database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, job: ExportJob) -> None:
        with self.db.writer.begin() as conn:
            conn.execute(
                insert(job_table).values(
                    job_id=job.job_id,
                    client_id=job.client_id,
                    scope=job.scope,
                    level=job.level,
                    group_id=job.group_id,
                    request=job.request,
                    parameters=orjson.dumps(job.parameters).decode(),
                    status=job.status,
                    transaction_time=job.transaction_time,
                    created_at=job.created_at,
                    attempts=0,
                    progress=job.progress,
                )
            )

    def get(self, job_id: str) -> ExportJob | None:
        with self.db.reader.connect() as conn:
            row = conn.execute(select(job_table).where(job_table.c.job_id == job_id)).first()
        return _job(row) if row is not None else None

    def unfinished(self, client_id: str) -> int:
        """How many jobs of the client are waiting or running."""
        with self.db.reader.connect() as conn:
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(job_table)
                    .where(job_table.c.client_id == client_id, job_table.c.status.in_(UNFINISHED))
                ).scalar_one()
            )

    def remove(self, job_id: str) -> bool:
        """Delete the job (a cancellation, or an expiry); False when there was none."""
        with self.db.writer.begin() as conn:
            return conn.execute(delete(job_table).where(job_table.c.job_id == job_id)).rowcount > 0

    def claim(self, worker: str, now: int, lease: int) -> ExportJob | None:
        """The oldest job nobody holds (new, or its holder's claim ran out), now held by
        ``worker``; None when there is none. The claim is one conditional UPDATE, so two
        processes can never both hold a job."""
        due = and_(
            job_table.c.status.in_(UNFINISHED),
            or_(job_table.c.claimed_until.is_(None), job_table.c.claimed_until < now),
        )
        with self.db.reader.connect() as conn:
            candidates = (
                conn.execute(
                    select(job_table.c.job_id).where(due).order_by(job_table.c.created_at).limit(5)
                )
                .scalars()
                .all()
            )
        for job_id in candidates:
            with self.db.writer.begin() as conn:
                taken = conn.execute(
                    update(job_table)
                    .where(job_table.c.job_id == job_id, due)
                    .values(
                        status=IN_PROGRESS,
                        claimed_by=worker,
                        claimed_until=now + lease,
                        attempts=job_table.c.attempts + 1,
                        progress="Started",
                    )
                ).rowcount
            if taken:
                return self.get(job_id)
        return None

    def renew(self, job_id: str, worker: str, until: int, progress: str) -> bool:
        """Extend ``worker``'s claim and note the progress; False when the job is gone
        (cancelled) or no longer ``worker``'s."""
        with self.db.writer.begin() as conn:
            return (
                conn.execute(
                    update(job_table)
                    .where(job_table.c.job_id == job_id, job_table.c.claimed_by == worker)
                    .values(claimed_until=until, progress=progress[:99])
                ).rowcount
                > 0
            )

    def release(self, job_id: str, worker: str) -> None:
        """Hand the job back unfinished (its process is shutting down): any process,
        this one after its restart included, takes it up at once, and the interruption
        does not count as an attempt."""
        with self.db.writer.begin() as conn:
            conn.execute(
                update(job_table)
                .where(job_table.c.job_id == job_id, job_table.c.claimed_by == worker)
                .values(
                    status=ACCEPTED,
                    claimed_by=None,
                    claimed_until=None,
                    attempts=job_table.c.attempts - 1,
                    progress="Waiting to start again (the server restarted)",
                )
            )

    def finish(
        self,
        job_id: str,
        worker: str,
        *,
        now: int,
        expires_at: int,
        manifest: dict[str, Any] | None = None,
        failure: str | None = None,
    ) -> bool:
        """Record the outcome (completed with a manifest, or failed with the reason);
        False when the job was cancelled meanwhile."""
        with self.db.writer.begin() as conn:
            return (
                conn.execute(
                    update(job_table)
                    .where(job_table.c.job_id == job_id, job_table.c.claimed_by == worker)
                    .values(
                        status=FAILED if failure is not None else COMPLETED,
                        completed_at=now,
                        expires_at=expires_at,
                        claimed_until=None,
                        progress=None,
                        manifest=orjson.dumps(manifest).decode() if manifest else None,
                        failure=failure,
                    )
                ).rowcount
                > 0
            )

    def expired(self, now: int) -> list[str]:
        """Finished jobs whose files are past their ``Expires``."""
        with self.db.reader.connect() as conn:
            return list(
                conn.execute(
                    select(job_table.c.job_id).where(
                        job_table.c.expires_at.is_not(None), job_table.c.expires_at < now
                    )
                )
                .scalars()
                .all()
            )
