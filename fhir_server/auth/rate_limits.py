"""Counting events in a time window: SMS sends, wrong codes, wrong passwords.

Counts live in the database (``auth_attempt``), so every server process sees the same
numbers and a lock-out holds behind a load balancer. A key names what is counted, e.g.
``sms:phone:+4512345678`` or ``login-fail:ip:10.0.0.7``.
"""

from __future__ import annotations

import time

from sqlalchemy import delete, func, insert, select

from fhir_server.auth.tables import auth_attempt
from fhir_server.storage.database import Database

_KEEP_SECONDS = 24 * 3600


class RateLimits:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._purged_at = 0.0

    def record(self, key: str, now: int | None = None) -> None:
        now = int(time.time()) if now is None else now
        with self.db.writer.begin() as conn:
            conn.execute(insert(auth_attempt).values(key=key[:255], at=now))
        self._purge(now)

    def count(self, key: str, window: int, now: int | None = None) -> int:
        now = int(time.time()) if now is None else now
        t = auth_attempt
        with self.db.reader.connect() as conn:
            return int(
                conn.execute(
                    select(func.count()).where(t.c.key == key[:255], t.c.at > now - window)
                ).scalar_one()
            )

    def last(self, key: str) -> int | None:
        t = auth_attempt
        with self.db.reader.connect() as conn:
            return conn.execute(select(func.max(t.c.at)).where(t.c.key == key[:255])).scalar()

    def exceeded(self, key: str, limit: int, window: int, now: int | None = None) -> bool:
        return self.count(key, window, now) >= limit

    def _purge(self, now: int) -> None:
        # At most once a minute per process: the table only needs the last day.
        if time.monotonic() - self._purged_at < 60:
            return
        self._purged_at = time.monotonic()
        with self.db.writer.begin() as conn:
            conn.execute(delete(auth_attempt).where(auth_attempt.c.at < now - _KEEP_SECONDS))
