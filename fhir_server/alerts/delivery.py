"""Delivering an alert: a signed webhook, and an SMS for urgent and emergency ones.

The webhook body is JSON with the minimum needed to act (who, how to reach them, which
answer, when, what the Task is) and no more. It is signed like most webhook providers do
(Stripe, GitHub): ``X-Selfback-Timestamp: <unix seconds>`` and
``X-Selfback-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>``; the
receiver recomputes the HMAC over the raw body and refuses a timestamp older than a few
minutes (replay). ``X-Selfback-Delivery`` is the Communication id: delivery is at least
once (a crash after sending and before recording sends again), so a receiver drops
repeats by that key.

Sending happens outside any database transaction (events.worker runs ``send`` first and
records the outcome in a transaction of its own), so a slow receiver never holds a lock.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from fhir_server.alerts.task import AlertFacts
from fhir_server.auth.sms import SmsError, SmsSender

SIGNATURE_HEADER = "X-Selfback-Signature"
TIMESTAMP_HEADER = "X-Selfback-Timestamp"
DELIVERY_HEADER = "X-Selfback-Delivery"
REPLAY_WINDOW_SECONDS = 300


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(
    secret: str,
    headers: dict[str, str],
    body: bytes,
    *,
    now: float | None = None,
    window: int = REPLAY_WINDOW_SECONDS,
) -> bool:
    """What a receiver does: the signature matches and the timestamp is recent."""
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        timestamp = int(lowered.get(TIMESTAMP_HEADER.lower(), ""))
    except ValueError:
        return False
    now = time.time() if now is None else now
    if abs(now - timestamp) > window:
        return False
    expected = sign(secret, timestamp, body)
    return hmac.compare_digest(expected, lowered.get(SIGNATURE_HEADER.lower(), ""))


def webhook_payload(
    communication: dict[str, Any], facts: AlertFacts, task_id: str
) -> dict[str, Any]:
    message = next(
        (p["contentString"] for p in communication.get("payload") or [] if p.get("contentString")),
        "",
    )
    return {
        "type": "safety-alert",
        "communication": f"Communication/{communication['id']}",
        "task": f"Task/{task_id}",
        "urgency": facts.urgency,
        "recipient": [r.get("reference") for r in communication.get("recipient") or []],
        "patient": {
            "reference": facts.patient_ref,
            "name": facts.patient_name,
            "identifier": facts.patient_identifier,
            "phone": facts.patient_phone,
        },
        "answer": facts.answer,
        "answeredAt": facts.answered_at,
        "message": message,
    }


def sms_text(facts: AlertFacts, task_id: str) -> str:
    """Short enough for two SMS segments; the Task holds the rest."""
    return (
        f"SelfBack {facts.urgency.upper()} alert: {facts.answer[:120]}. "
        f"{facts.patient_name or facts.patient_identifier}, tel {facts.patient_phone or '-'}. "
        f"Task/{task_id}"
    )


class DeliveryError(Exception):
    """One channel could not hand the alert over (retried)."""


@dataclass(frozen=True)
class AlertChannels:
    """The channels the deployer configured (Settings.alert_*)."""

    webhook_url: str
    webhook_secret: str
    sms: SmsSender | None  # None: alerts never go by SMS
    timeout: float = 10.0

    def names_for(self, urgency: str, sms_to: str) -> list[str]:
        names = ["webhook"] if self.webhook_url else []
        if self.sms is not None and urgency in ("emergency", "urgent") and sms_to:
            names.append("sms")
        return names

    def post_webhook(self, delivery_id: str, payload: dict[str, Any]) -> None:
        body = orjson.dumps(payload)
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(self.webhook_secret, timestamp, body),
            DELIVERY_HEADER: delivery_id,
        }
        try:
            answer = httpx.post(
                self.webhook_url, content=body, headers=headers, timeout=self.timeout
            )
        except httpx.HTTPError as exc:
            raise DeliveryError(f"webhook unreachable: {type(exc).__name__}") from exc
        if not 200 <= answer.status_code < 300:
            raise DeliveryError(f"webhook answered {answer.status_code}")

    def send_sms(self, to: str, text: str) -> None:
        assert self.sms is not None
        try:
            self.sms.send(to, text)
        except SmsError as exc:
            raise DeliveryError(str(exc)) from exc


def backoff_seconds(attempt: int, base: float, cap: float) -> float:
    """Capped exponential back-off after failed attempt ``attempt`` (1, 2, ...)."""
    return float(min(base * 2 ** (attempt - 1), cap))
