"""Ids, versions and instants: how a resource is stamped before it is stored.

FHIR R4 resource.html#meta: the server owns ``meta.versionId`` and ``meta.lastUpdated``;
http.html#versioning: the ETag is the weak validator ``W/"<versionId>"``.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from functools import lru_cache
from typing import Any

from fhir_server.errors import bad_request
from fhir_server.formats.fhir_json import dump_fhir_json, parse_fhir_json

# FHIR R4 datatypes.html#id
ID_PATTERN = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_ETAG = re.compile(r'^\s*(?:W/)?"([^"]+)"\s*$')
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def new_id() -> str:
    return str(uuid.uuid4())


def check_id(id: str, where: str = "id") -> str:
    if not ID_PATTERN.fullmatch(id):
        raise bad_request(f"'{id}' is not a valid FHIR id ([A-Za-z0-9-.]{{1,64}})", where)
    return id


def now_us() -> int:
    return to_us(datetime.now(UTC))


def to_us(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


@lru_cache(maxsize=4096)
def instant(us: int) -> str:
    """An R4 ``instant`` in UTC with microseconds, e.g. 2026-11-21T03:45:12.123456Z."""
    seconds, micros = divmod(us, 1_000_000)
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{micros:06d}Z"


def http_date(us: int) -> str:
    return format_datetime(datetime.fromtimestamp(us // 1_000_000, UTC), usegmt=True)


def parse_http_date(value: str) -> int | None:
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return to_us(moment)


def etag(version: int) -> str:
    return f'W/"{version}"'


def parse_etag(value: str, header: str = "If-Match") -> int:
    match = _ETAG.match(value)
    if not match or not match.group(1).isdigit():
        raise bad_request(f'{header} must be a version ETag like W/"3", not {value!r}')
    return int(match.group(1))


def stamp(resource: dict[str, Any], id: str, version: int, last_updated: int) -> bytes:
    """The canonical bytes we store and serve: resourceType, id, meta first, then the rest
    in the client's order, with the server-owned meta fields set."""
    meta = dict(resource.get("meta") or {})
    meta["versionId"] = str(version)
    meta["lastUpdated"] = instant(last_updated)
    ordered: dict[str, Any] = {"resourceType": resource["resourceType"], "id": id, "meta": meta}
    for key, value in resource.items():
        if key not in ordered:
            ordered[key] = value
    return dump_fhir_json(ordered)


def same_content(stored_body: bytes, resource: dict[str, Any]) -> bool:
    """True when ``resource`` differs from the stored version only in server-owned meta
    (no-op update detection: such an update creates no new version)."""
    if not stored_body:
        return False
    before, after = _comparable(parse_fhir_json(stored_body)), _comparable(resource)
    # Python equality has 1.5 == Decimal("1.50") == 1.50 and 1 == 1.0; FHIR does not
    # (datatypes.html#decimal: precision is part of the value), so the written forms decide.
    return before == after and dump_fhir_json(before, sort_keys=True) == dump_fhir_json(
        after, sort_keys=True
    )


def _comparable(resource: dict[str, Any]) -> dict[str, Any]:
    meta = {
        k: v
        for k, v in (resource.get("meta") or {}).items()
        if k not in ("versionId", "lastUpdated")
    }
    out = {k: v for k, v in resource.items() if k != "meta"}
    if meta:
        out["meta"] = meta
    return out
