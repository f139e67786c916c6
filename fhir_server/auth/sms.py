"""Sending SMS: an outbox file for development and tests, an HTTP webhook in production.

Chosen by ``Settings.sms_sender`` (env ``SELFBACK_SMS_SENDER``):

- ``outbox``: one JSON object per line in ``<data dir>/sms-outbox.jsonl``
  (``{"to": "+45...", "body": "...", "sent_at": "...Z"}``); nothing leaves the machine;
- ``webhook``: ``POST <SELFBACK_SMS_WEBHOOK_URL>`` with ``{"to": ..., "body": ...}`` as
  JSON; any 2xx is success. The SMS gateway (or a small adapter before it) sits there.

Spend is capped by the rate limits in fhir_server.auth.login, before a sender is called.
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import httpx
import orjson

from fhir_server.config import Settings

log = logging.getLogger("selfback.auth.sms")

OUTBOX_FILE = "sms-outbox.jsonl"


class SmsError(Exception):
    """The message could not be handed over."""


class SmsSender(Protocol):
    def send(self, to: str, body: str) -> None: ...


class OutboxSender:
    """Appends messages to a JSON-lines file (one write per line, so lines never mix)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def send(self, to: str, body: str) -> None:
        line = orjson.dumps(
            {"to": to, "body": body, "sent_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
        )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, line + b"\n")
            finally:
                os.close(fd)


class WebhookSender:
    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url
        self.timeout = timeout

    def send(self, to: str, body: str) -> None:
        try:
            response = httpx.post(self.url, json={"to": to, "body": body}, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise SmsError(f"SMS webhook unreachable: {type(exc).__name__}") from exc
        if not 200 <= response.status_code < 300:
            raise SmsError(f"SMS webhook answered {response.status_code}")


def sms_sender(settings: Settings) -> SmsSender:
    if settings.sms_sender == "webhook":
        if not settings.sms_webhook_url:
            raise ValueError("SELFBACK_SMS_SENDER=webhook needs SELFBACK_SMS_WEBHOOK_URL")
        return WebhookSender(settings.sms_webhook_url)
    if settings.sms_sender != "outbox":
        raise ValueError(f"unknown SMS sender {settings.sms_sender!r} (outbox or webhook)")
    return OutboxSender(Path(settings.data_dir) / OUTBOX_FILE)
