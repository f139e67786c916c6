"""Safety alerts: each clinician Communication the plan engine makes becomes a Task on the
owner's worklist, is delivered (signed webhook, SMS for urgent ones) with retries, and an
emergency one not accepted in time is escalated to the organisation (docs/ALERTS.md).

``task`` builds the Task and the alert's summary (pure); ``delivery`` signs and sends
(I/O at the edge); the outbox handlers live in fhir_server.events.handlers.safety_alerts.
"""

from fhir_server.alerts.delivery import AlertChannels, sign, verify
from fhir_server.alerts.task import (
    SAFETY_TAG,
    AlertFacts,
    alert_facts,
    build_task,
    is_engine_alert,
    task_id_for,
    urgency_of,
    with_safety_tag,
)

__all__ = [
    "SAFETY_TAG",
    "AlertChannels",
    "AlertFacts",
    "alert_facts",
    "build_task",
    "is_engine_alert",
    "sign",
    "task_id_for",
    "urgency_of",
    "verify",
    "with_safety_tag",
]
