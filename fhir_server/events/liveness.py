"""Whether the worker that holds an outbox claim is still alive (issue 10 item 7).

A claim lasts ``lease_seconds`` (120 s) so a slow handler is not taken over; a worker
killed with SIGKILL leaves its claims behind, and without this a restarted server would
wait out the lease. At start-up a worker reclaims the claims of *dead* owners only --
never of a live worker in another process, which would then handle the same event twice.

Liveness is something the operating system or the database ends with the process, so no
heartbeat has to be written and no clock compared:

- PostgreSQL: each worker holds a session advisory lock keyed by its name on a connection
  of its own for its lifetime; PostgreSQL releases it when the session ends (the process
  died, its socket closed). An owner whose lock ``pg_try_advisory_lock`` can take is dead.
  (A heartbeat column would also work but writes a row every few seconds per process and
  needs a threshold; advisory locks are what PostgreSQL offers for exactly this.)
- SQLite (one machine): each worker holds an exclusive ``flock`` on
  ``<database>.workers/<name>.lock``; the kernel drops it when the process dies.

Known limit: if a PostgreSQL worker's lock session is cut while the process lives (the
database restarted), another server starting in that window may take its claims over; the
handlers are idempotent in their event, so the effect is a repeated delivery, not a loss.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path

from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url

from fhir_server.storage.database import Database


def _key(worker: str) -> int:
    digest = hashlib.sha256(f"selfback-outbox-worker:{worker}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class Liveness:
    def __init__(self, db: Database, worker: str) -> None:
        self.db = db
        self.worker = worker
        self._conn: Connection | None = None
        self._fd: int | None = None
        database = make_url(db.url).database if db.dialect == "sqlite" else None
        self._dir = Path(database + ".workers") if database and database != ":memory:" else None

    def hold(self) -> None:
        """Hold this worker's proof of life until the process ends (or ``release``)."""
        if self.db.dialect == "postgresql":
            self._conn = self.db.writer.connect()
            self._conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _key(self.worker)})
            self._conn.commit()
        elif self._dir is not None:
            self._dir.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self._dir / f"{self.worker}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def is_dead(self, other: str) -> bool:
        if other == self.worker:
            return False
        if self.db.dialect == "postgresql":
            with self.db.writer.connect() as conn:
                taken = conn.execute(
                    text("SELECT pg_try_advisory_lock(:k)"), {"k": _key(other)}
                ).scalar_one()
                if taken:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _key(other)})
                conn.commit()
                return bool(taken)
        if self._dir is None:
            return True  # an in-memory database lives in this process only
        path = self._dir / f"{other}.lock"
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        finally:
            os.close(fd)  # closing drops the lock we may have taken
        path.unlink(missing_ok=True)
        return True

    def sweep(self) -> None:
        """SQLite: remove the lock files of workers that died holding no claim (a live
        worker's file is locked and stays)."""
        if self._dir is None or not self._dir.is_dir():
            return
        for path in self._dir.glob("*.lock"):
            self.is_dead(path.stem)

    def release(self) -> None:
        if self._conn is not None:
            self._conn.close()  # ends the session's advisory lock
            self._conn = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            if self._dir is not None:
                (self._dir / f"{self.worker}.lock").unlink(missing_ok=True)
