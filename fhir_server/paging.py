"""Opaque, tamper-proof paging cursors.

A cursor carries the keyset position of the last entry served (never an OFFSET), signed
with the installation's secret so a client cannot forge a position it was not given.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import orjson

from fhir_server.errors import bad_request

_MAC_BYTES = 16


def encode_cursor(position: dict[str, Any], secret: bytes) -> str:
    payload = orjson.dumps(position, option=orjson.OPT_SORT_KEYS)
    mac = hmac.new(secret, payload, hashlib.sha256).digest()[:_MAC_BYTES]
    return base64.urlsafe_b64encode(mac + payload).decode().rstrip("=")


def decode_cursor(token: str, secret: bytes) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (ValueError, TypeError) as exc:
        raise bad_request("The paging cursor is not valid") from exc
    mac, payload = raw[:_MAC_BYTES], raw[_MAC_BYTES:]
    expected = hmac.new(secret, payload, hashlib.sha256).digest()[:_MAC_BYTES]
    if not hmac.compare_digest(mac, expected):
        raise bad_request("The paging cursor is not valid (was it altered?)")
    position = orjson.loads(payload)
    if not isinstance(position, dict):
        raise bad_request("The paging cursor is not valid")
    return position
