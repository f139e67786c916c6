"""Event handlers: ``HANDLERS`` by the resource type whose writes they react to
(``resource-written`` events), ``TOPIC_HANDLERS`` by the topic of scheduled or chained
events (the weekly plan schedule, planning after scoring). ``handlers_for(settings)`` adds
the safety-alert handlers, which need the deployment's delivery channels."""

from typing import Any

from fhir_server.alerts.delivery import AlertChannels
from fhir_server.auth.sms import sms_sender
from fhir_server.config import Settings
from fhir_server.events.handlers.questionnaire_scoring import score_questionnaire_response
from fhir_server.events.handlers.safety_alerts import AlertPolicy, make_alert_handlers
from fhir_server.events.handlers.weekly_planning import (
    PLAN_TRIGGER,
    WEEKLY_PLAN,
    enqueue_planning,
    plan_after_response,
    plan_scheduled_week,
    start_programme_schedule,
)
from fhir_server.events.outbox import OutboxEvent
from fhir_server.events.worker import Handler, SendingHandler
from fhir_server.storage.repository import WriteSession


def score_then_queue_planning(session: WriteSession, event: OutboxEvent, now: int) -> str | None:
    """Score the response, then (same transaction) queue planning from it."""
    notes = (
        score_questionnaire_response(session, event, now),
        enqueue_planning(session, event, now),
    )
    return "; ".join(n for n in notes if n) or None


HANDLERS: dict[str, Handler] = {
    "QuestionnaireResponse": score_then_queue_planning,
    "CarePlan": start_programme_schedule,
}

TOPIC_HANDLERS: dict[str, Handler] = {
    PLAN_TRIGGER: plan_after_response,
    WEEKLY_PLAN: plan_scheduled_week,
}


def alert_policy(settings: Settings) -> AlertPolicy:
    channels = AlertChannels(
        webhook_url=settings.alert_webhook_url,
        webhook_secret=settings.alert_webhook_secret,
        sms=sms_sender(settings) if settings.alert_sms else None,
    )
    return AlertPolicy(
        channels=channels,
        retry_base_seconds=settings.alert_retry_base_seconds,
        retry_cap_seconds=settings.alert_retry_cap_seconds,
        retry_max_age_seconds=settings.alert_retry_max_age_seconds,
        escalation_seconds=settings.alert_escalation_seconds,
    )


def handlers_for(
    settings: Settings,
) -> tuple[dict[str, Handler], dict[str, Handler | SendingHandler]]:
    """Every handler of the running server: HANDLERS and TOPIC_HANDLERS plus the safety
    alerts (a Communication written -> Task + delivery; delivery; escalation)."""
    on_communication, alert_topics = make_alert_handlers(alert_policy(settings))
    topics: dict[str, Any] = {**TOPIC_HANDLERS, **alert_topics}
    return {**HANDLERS, "Communication": on_communication}, topics
