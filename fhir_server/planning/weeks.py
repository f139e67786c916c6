"""Plan weeks: which week a run plans, and when the next scheduled run is due. Pure.

Plan weeks are anchored on the programme start, as the engine counts them
(``week_number``): week *k* starts on ``start + 7(k - 1)``. Data a patient reports during
week *k* (the weekly check-in, exercise feedback) feed the plan of week *k + 1*: the engine
counts a weekly report only when it is dated before the plan's ``as_of``.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, date, datetime, timedelta

WEEK = timedelta(days=7)


def week_start(programme_start: date, day: date) -> date:
    """The start of the plan week holding ``day`` (the programme start before it)."""
    if day <= programme_start:
        return programme_start
    return programme_start + WEEK * ((day - programme_start).days // 7)


def week_number(programme_start: date, start: date) -> int:
    return (start - programme_start).days // 7 + 1


def target_week(programme_start: date, day: date, planned: Collection[date]) -> date:
    """The week a trigger dated ``day`` plans.

    - the week holding ``day`` has a plan: the next week (a check-in during week *k* plans
      week *k + 1*; later feedback in week *k* re-plans it from the newer data);
    - it has none, but a later week has (data that arrive late): that later week, re-planned;
    - neither: the week holding ``day`` (the first plan, made once the baseline is in).
    """
    current = week_start(programme_start, day)
    if current in planned:
        return current + WEEK
    later = sorted(w for w in planned if w > current)
    return later[0] if later else current


def first_scheduled_week(programme_start: date, today: date) -> date:
    """The first boundary the schedule runs at for a newly enrolled patient: the programme
    start, or the current week's start when the programme started in the past (weeks that
    are over are not planned after the fact)."""
    return max(programme_start, week_start(programme_start, today))


def start_of_day_us(day: date) -> int:
    """00:00 UTC of ``day`` in microseconds since the epoch (the outbox's clock)."""
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 1_000_000


def day_of_us(instant_us: int) -> date:
    return datetime.fromtimestamp(instant_us / 1_000_000, UTC).date()
