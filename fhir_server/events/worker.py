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
from functools import partial
from typing import Any

from fhir_server.events.liveness import Liveness
from fhir_server.events.outbox import (
    RESOURCE_WRITTEN,
    OutboxEvent,
    claim,
    claim_owners,
    has_due,
    mark_done,
    mark_failed,
    release_claims,
)
from fhir_server.polling import PollingWorker
from fhir_server.storage.repository import Repository, WriteSession
from fhir_server.versioning import now_us

log = logging.getLogger("selfback.events")

# handler(session, event, now) -> a note to keep with the event (or None). Handlers must
# be deterministic in the event (re-running one writes the same resources).
Handler = Callable[[WriteSession, OutboxEvent, int], str | None]


class SendingHandler:
    """A handler that talks to the outside world: ``send`` runs first, outside any
    database transaction (a slow receiver must not hold the write lock), and ``record``
    then writes its outcome together with the event's "done" mark. A crash between the two
    sends again on the next claim: such handlers deliver at least once."""

    def send(self, repo: Repository, event: OutboxEvent, now: int) -> Any:
        raise NotImplementedError

    def record(
        self, session: WriteSession, event: OutboxEvent, result: Any, now: int
    ) -> str | None:
        raise NotImplementedError


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
        topic_handlers: dict[str, Handler | SendingHandler] | None = None,
    ) -> None:
        super().__init__("worker", poll_seconds)
        self.repo = repo
        self.handlers = handlers
        # Events of other topics than resource-written (scheduled work), by topic.
        self.topic_handlers = topic_handlers or {}
        self.lease_us = int(lease_seconds * 1_000_000)
        self.batch = batch
        self.max_attempts = max_attempts

    def start(self) -> None:
        """Hold this worker's proof of life, take back the claims of dead workers (a server
        killed mid-event: handled within seconds of the restart, not after the lease), then
        start polling."""
        self.liveness = Liveness(self.repo.db, self.name)
        self.liveness.hold()
        self.reclaim_dead()
        self.liveness.sweep()
        super().start()

    def stop(self, timeout: float = 10.0) -> None:
        super().stop(timeout)
        liveness = getattr(self, "liveness", None)
        if liveness is not None:
            liveness.release()

    def reclaim_dead(self, now: int | None = None) -> int:
        """Release the unexpired claims whose owner is no longer alive; answers how many."""
        now = now_us() if now is None else now
        liveness = getattr(self, "liveness", None) or Liveness(self.repo.db, self.name)
        with self.repo.db.reader.connect() as conn:
            owners = claim_owners(conn, now)
        released = 0
        for owner in owners:
            if liveness.is_dead(owner):
                count = self.repo.write(partial(_release, owner=owner))
                log.warning("reclaimed %s outbox claim(s) of dead worker %s", count, owner)
                released += count
        return released

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
        handler: Handler | SendingHandler | None
        if event.topic == RESOURCE_WRITTEN:
            handler = self.handlers.get(event.rtype)
        else:
            handler = self.topic_handlers.get(event.topic)
        if handler is None:
            self.repo.write(lambda s: mark_done(s.conn, event.id, now, "no handler"))
            return

        def work(session: WriteSession) -> None:
            if isinstance(handler, SendingHandler):
                note = handler.record(session, event, sent, now)
            else:
                note = handler(session, event, now)
            mark_done(session.conn, event.id, now, note)

        try:
            sent = (
                handler.send(self.repo, event, now) if isinstance(handler, SendingHandler) else None
            )
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


def _release(session: WriteSession, owner: str) -> int:
    return release_claims(session.conn, owner)


def _backoff_us(attempts: int) -> int:
    """1 s, 4 s, 16 s, 64 s ... capped at 10 minutes."""
    return min(4 ** (attempts - 1), 600) * 1_000_000
