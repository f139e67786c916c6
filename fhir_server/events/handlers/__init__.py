"""Event handlers: ``HANDLERS`` by the resource type whose writes they react to
(``resource-written`` events), ``TOPIC_HANDLERS`` by the topic of scheduled or chained
events (the weekly plan schedule, planning after scoring)."""

from fhir_server.events.handlers.questionnaire_scoring import score_questionnaire_response
from fhir_server.events.handlers.weekly_planning import (
    PLAN_TRIGGER,
    WEEKLY_PLAN,
    enqueue_planning,
    plan_after_response,
    plan_scheduled_week,
    start_programme_schedule,
)
from fhir_server.events.outbox import OutboxEvent
from fhir_server.events.worker import Handler
from fhir_server.storage.repository import WriteSession


def score_then_queue_planning(session: WriteSession, event: OutboxEvent, now: int) -> str | None:
    """Score the response, then (same transaction) queue planning from it."""
    notes = (score_questionnaire_response(session, event, now), enqueue_planning(session, event, now))
    return "; ".join(n for n in notes if n) or None


HANDLERS: dict[str, Handler] = {
    "QuestionnaireResponse": score_then_queue_planning,
    "CarePlan": start_programme_schedule,
}

TOPIC_HANDLERS: dict[str, Handler] = {
    PLAN_TRIGGER: plan_after_response,
    WEEKLY_PLAN: plan_scheduled_week,
}
