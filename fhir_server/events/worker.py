"""The outbox worker: claims due events, runs their handlers, marks them done.

One worker thread per server process. With several processes the claims keep them apart
(row locks with SKIP LOCKED on PostgreSQL; the single writer on SQLite), so every event is
handled by one worker. A handler's writes and the "done" mark commit together; a handler
that fails is retried with back-off and, after ``max_attempts``, left done with its error
kept for an operator to read -- it never blocks the events behind it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from fhir_server.events.outbox import (
    RESOURCE_WRITTEN,
    OutboxEvent,
    claim,
    has_due,
    mark_done,
    mark_failed,
)
from fhir_server.polling import PollingWorker
from fhir_server.storage.repository import Repository, WriteSession
from fhir_server.versioning import now_us

log = logging.getLogger("selfback.events")

# handler(session, event, now) -> a note to keep with the event (or None). Handlers must
# be deterministic in the event (re-running one writes the same resources).
Handler = Callable[[WriteSession, OutboxEvent, int], str | None]


class OutboxWorker(PollingWorker):
    def __init__(
        self,
        repo: Repository,
        handlers: dict[str, Handler],
        *,
        poll_seconds: float = 0.5,
        lease_seconds: float = 120.0,
        batch: int = 20,
        max_attempts: int = 5,
        topic_handlers: dict[str, Handler] | None = None,
    ) -> None:
        super().__init__("worker", poll_seconds)
        self.repo = repo
        self.handlers = handlers
        # Events of other topics than resource-written (scheduled work), by topic.
        self.topic_handlers = topic_handlers or {}
        self.lease_us = int(lease_seconds * 1_000_000)
        self.batch = batch
        self.max_attempts = max_attempts

    @property
    def topics(self) -> frozenset[str]:
        """The resource types whose writes this worker wants events for."""
        return frozenset(self.handlers)

    def run_once(self, now: int | None = None) -> int:
        """Handle what is due now; answers how many events were handled."""
        now = now_us() if now is None else now
        with self.repo.db.reader.connect() as conn:
            if not has_due(conn, now):
                return 0
        events = self.repo.write(lambda s: claim(s.conn, self.name, now, self.lease_us, self.batch))
        for event in events:
            self._handle(event, now)
        return len(events)

    def _handle(self, event: OutboxEvent, now: int) -> None:
        if event.topic == RESOURCE_WRITTEN:
            handler = self.handlers.get(event.rtype)
        else:
            handler = self.topic_handlers.get(event.topic)
        if handler is None:
            self.repo.write(lambda s: mark_done(s.conn, event.id, now, "no handler"))
            return

        def work(session: WriteSession) -> None:
            note = handler(session, event, now)
            mark_done(session.conn, event.id, now, note)

        try:
            self.repo.write(work)
        # A handler's failure of any kind must not stop the worker or lose the event:
        # it is recorded on the event and retried (deliberately broad).
        except Exception as exc:
            attempts = event.attempts + 1
            retry_at = None if attempts >= self.max_attempts else now + _backoff_us(attempts)
            message = f"{type(exc).__name__}: {exc}"
            log.warning(
                "event %s (%s/%s) failed, attempt %s: %s",
                event.id,
                event.rtype,
                event.res_id,
                attempts,
                message,
            )
            self.repo.write(lambda s: mark_failed(s.conn, event, now, message, retry_at))


def _backoff_us(attempts: int) -> int:
    """1 s, 4 s, 16 s, 64 s ... capped at 10 minutes."""
    return min(4 ** (attempts - 1), 600) * 1_000_000
