"""Reading and writing outbox rows. Storage only: no handler logic here."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, and_, bindparam, insert, or_, select, update

from fhir_server.events.tables import outbox

RESOURCE_WRITTEN = "resource-written"


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    id: int
    topic: str
    rtype: str
    res_id: str
    version: int
    attempts: int


def event_row(rtype: str, id: str, version: int, now: int) -> dict[str, object]:
    return {
        "topic": RESOURCE_WRITTEN,
        "rtype": rtype,
        "res_id": id,
        "version": version,
        "created": now,
        "available_at": now,
        "claimed_by": None,
        "claimed_until": None,
        "attempts": 0,
        "done_at": None,
        "last_error": None,
    }


INSERT_EVENTS = insert(outbox)


def _due(now: int) -> object:
    return and_(
        outbox.c.done_at.is_(None),
        outbox.c.available_at <= now,
        or_(outbox.c.claimed_until.is_(None), outbox.c.claimed_until < now),
    )


def has_due(conn: Connection, now: int) -> bool:
    """A cheap read-only look, so an idle worker never takes the write lock."""
    return conn.execute(select(outbox.c.id).where(_due(now)).limit(1)).first() is not None


def claim(conn: Connection, worker: str, now: int, lease_us: int, limit: int) -> list[OutboxEvent]:
    """Claim up to ``limit`` due events for ``worker`` until ``now + lease_us``.

    PostgreSQL: ``FOR UPDATE SKIP LOCKED`` lets several workers claim disjoint rows at
    once; SQLite: the write transaction (BEGIN IMMEDIATE) already excludes other claims.
    """
    stmt = select(outbox).where(_due(now)).order_by(outbox.c.id).limit(limit)
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    rows = conn.execute(stmt).all()
    if not rows:
        return []
    conn.execute(
        update(outbox)
        .where(outbox.c.id.in_([r.id for r in rows]))
        .values(claimed_by=worker, claimed_until=now + lease_us)
    )
    return [OutboxEvent(r.id, r.topic, r.rtype, r.res_id, r.version, r.attempts) for r in rows]


_MARK_DONE = (
    update(outbox)
    .where(outbox.c.id == bindparam("b_id"))
    .values(done_at=bindparam("b_now"), claimed_until=None)
)


def mark_done(conn: Connection, event_id: int, now: int, note: str | None = None) -> None:
    conn.execute(_MARK_DONE, {"b_id": event_id, "b_now": now})
    if note:
        conn.execute(update(outbox).where(outbox.c.id == event_id).values(last_error=note))


def mark_failed(
    conn: Connection, event: OutboxEvent, now: int, error: str, retry_at: int | None
) -> None:
    """Record a failed attempt: try again at ``retry_at``, or give up (done, with the
    error kept) when it is None."""
    values: dict[str, object] = {
        "attempts": event.attempts + 1,
        "last_error": error[:2000],
        "claimed_by": None,
        "claimed_until": None,
    }
    if retry_at is None:
        values["done_at"] = now
    else:
        values["available_at"] = retry_at
    conn.execute(update(outbox).where(outbox.c.id == event.id).values(**values))


def claim_owners(conn: Connection, now: int) -> list[str]:
    """The workers holding unexpired claims on events not yet done."""
    rows = conn.execute(
        select(outbox.c.claimed_by)
        .where(
            outbox.c.done_at.is_(None),
            outbox.c.claimed_by.is_not(None),
            outbox.c.claimed_until >= now,
        )
        .distinct()
    ).all()
    return [str(r[0]) for r in rows]


def release_claims(conn: Connection, owner: str) -> int:
    """Make the claims of ``owner`` (a dead worker) due again at once."""
    result = conn.execute(
        update(outbox)
        .where(outbox.c.claimed_by == owner, outbox.c.done_at.is_(None))
        .values(claimed_by=None, claimed_until=None)
    )
    return int(result.rowcount or 0)


def pending_count(conn: Connection) -> int:
    from sqlalchemy import func

    return int(
        conn.execute(
            select(func.count()).select_from(outbox).where(outbox.c.done_at.is_(None))
        ).scalar_one()
    )


def schedule(
    conn: Connection, *, topic: str, rtype: str, res_id: str, version: int, at: int, now: int
) -> bool:
    """Insert a ``topic`` event for (rtype, res_id, version) due at ``at``, unless one was
    ever inserted: scheduled work is keyed by what it is about, so it is inserted once and
    runs once however often the scheduling code runs. Answers whether a row was added.
    The caller serialises schedulers of the same key (a lock in its transaction)."""
    exists = conn.execute(
        select(outbox.c.id)
        .where(
            outbox.c.topic == topic,
            outbox.c.rtype == rtype,
            outbox.c.res_id == res_id,
            outbox.c.version == version,
        )
        .limit(1)
    ).first()
    if exists is not None:
        return False
    row = {**event_row(rtype, res_id, version, now), "topic": topic, "available_at": at}
    conn.execute(INSERT_EVENTS, [row])
    return True


def has_pending(conn: Connection, *, topic: str, rtype: str, res_id: str) -> bool:
    """Whether a ``topic`` event about (rtype, res_id) is still to be handled."""
    return (
        conn.execute(
            select(outbox.c.id)
            .where(
                outbox.c.topic == topic,
                outbox.c.rtype == rtype,
                outbox.c.res_id == res_id,
                outbox.c.done_at.is_(None),
            )
            .limit(1)
        ).first()
        is not None
    )
