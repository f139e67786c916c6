"""Assembling Bundle JSON around stored resource bytes without re-serialising them.

Stored bodies are already canonical JSON (fhir-server-anchors.md 6.1: never build a model
on the read path), so a Bundle is written as bytes with each body spliced in.
"""

from __future__ import annotations

from typing import Any

from fhir_server.formats.fhir_json import dump_fhir_json
from fhir_server.versioning import instant, new_id


def entry_bytes(fields: dict[str, Any], resource: bytes | None = None) -> bytes:
    """One Bundle.entry: ``fullUrl`` first, then ``resource`` (stored bytes), then the rest."""
    head: dict[str, Any] = {}
    if "fullUrl" in fields:
        head["fullUrl"] = fields["fullUrl"]
    rest = {k: v for k, v in fields.items() if k != "fullUrl"}
    parts = [dump_fhir_json(head)[:-1]]  # '{"fullUrl":"…"' without the closing brace
    if resource:
        parts.append(b"," if head else b"")
        parts.append(b'"resource":' + resource)
    if rest:
        parts.append(b"," if (head or resource) else b"")
        parts.append(dump_fhir_json(rest)[1:-1])
    parts.append(b"}")
    return b"".join(parts)


def bundle_bytes(
    bundle_type: str,
    entries: list[bytes],
    *,
    now: int,
    links: list[tuple[str, str]] = (),  # type: ignore[assignment]
    total: int | None = None,
) -> bytes:
    head: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": new_id(),
        "meta": {"lastUpdated": instant(now)},
        "type": bundle_type,
    }
    if total is not None:
        head["total"] = total
    if links:
        head["link"] = [{"relation": rel, "url": url} for rel, url in links]
    if not entries:
        return dump_fhir_json(head)
    return dump_fhir_json(head)[:-1] + b',"entry":[' + b",".join(entries) + b"]}"
