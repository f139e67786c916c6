"""The weekly plan schedule, kept as outbox rows (no table of its own).

A programme CarePlan, once written, gets one ``weekly-plan`` event due at 00:00 UTC of its
first plan-week boundary (the programme start, or the current week's start when the
programme began in the past). Handling that event plans the week if no plan exists for it
yet (a check-in may have planned it already) and inserts the next week's event. The events
are keyed (programme CarePlan id, week number): the outbox keeps every row, so a week's
event is inserted once and handled once, across restarts and several workers.
"""

from __future__ import annotations

from datetime import date, timedelta

from fhir_server.events.outbox import has_pending, schedule
from fhir_server.planning.weeks import first_scheduled_week, start_of_day_us, week_number
from fhir_server.storage.repository import WriteSession

WEEKLY_PLAN = "weekly-plan"


def schedule_week(
    session: WriteSession, programme_plan_id: str, programme_start: date, week: int, *, now: int
) -> bool:
    """Insert the event for plan week ``week`` of a programme plan (once ever)."""
    session.lock(f"{WEEKLY_PLAN}/{programme_plan_id}")
    boundary = programme_start + timedelta(days=7 * (week - 1))
    return schedule(
        session.conn,
        topic=WEEKLY_PLAN,
        rtype="CarePlan",
        res_id=programme_plan_id,
        version=week,
        at=start_of_day_us(boundary),
        now=now,
    )


def start_schedule(
    session: WriteSession, programme_plan_id: str, programme_start: date, today: date, *, now: int
) -> bool:
    """Start the weekly events of a programme plan unless they are running already."""
    session.lock(f"{WEEKLY_PLAN}/{programme_plan_id}")
    if has_pending(session.conn, topic=WEEKLY_PLAN, rtype="CarePlan", res_id=programme_plan_id):
        return False
    first = first_scheduled_week(programme_start, today)
    week = week_number(programme_start, first)
    return schedule_week(session, programme_plan_id, programme_start, week, now=now)
