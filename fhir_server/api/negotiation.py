"""Which wire format a request speaks and wants (FHIR R4 http.html#mime-type, #general).

Input by Content-Type; output by ``_format`` first, then Accept, JSON by default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import orjson

from fhir_server.errors import FhirError, bad_request, error
from fhir_server.formats.fhir_json import dump_fhir_json, parse_fhir_json
from fhir_server.formats.limits import StructureLimits, check_json
from fhir_server.formats.xml import parse_xml, render_xml

Format = Literal["json", "xml"]

JSON_TYPES = ("application/fhir+json", "application/json", "application/json+fhir")
XML_TYPES = ("application/fhir+xml", "application/xml", "text/xml", "application/xml+fhir")
JSON_PATCH = "application/json-patch+json"
FORM = "application/x-www-form-urlencoded"

_FORMAT_PARAM = {
    "json": "json",
    "xml": "xml",
    **{t: "json" for t in JSON_TYPES},
    **{t: "xml" for t in XML_TYPES},
}
MEDIA_TYPE = {
    "json": "application/fhir+json; charset=utf-8",
    "xml": "application/fhir+xml; charset=utf-8",
}


@dataclass(frozen=True, slots=True)
class Preferences:
    """The parts of the request that shape the response, parsed once."""

    format: Format = "json"
    pretty: bool = False
    return_: str = "representation"  # Prefer: return=minimal | representation | OperationOutcome
    strict: bool = False  # Prefer: handling=strict


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def output_format(format_param: str | None, accept: str | None) -> Format:
    if format_param:
        chosen = _FORMAT_PARAM.get(format_param.strip().lower().replace(" ", "+"))
        if chosen is None:
            raise error(406, "not-supported", f"_format={format_param!r} is not supported")
        return chosen  # type: ignore[return-value]
    for part in (accept or "").split(","):
        kind = media_type(part)
        if kind in XML_TYPES:
            return "xml"
        if kind in JSON_TYPES or kind in ("*/*", "application/*"):
            return "json"
    return "json"


def preferences(query: dict[str, str], headers: Any) -> Preferences:
    prefer = {}
    for part in (headers.get("prefer") or "").split(";"):
        for item in part.split(","):
            key, _, value = item.strip().partition("=")
            if key:
                prefer[key.lower()] = value.strip().strip('"')
    return_ = prefer.get("return", "representation")
    if return_ not in ("minimal", "representation", "OperationOutcome"):
        return_ = "representation"
    return Preferences(
        format=output_format(query.get("_format"), headers.get("accept")),
        pretty=query.get("_pretty", "").lower() == "true",
        return_=return_,
        strict=prefer.get("handling") == "strict",
    )


def parse_resource_body(
    body: bytes, content_type: str | None, limits: StructureLimits | None = None
) -> Any:
    """The request body as a JSON value, whichever FHIR format it came in. ``limits``:
    its cost limits and the characters R4 forbids in strings (fhir_server.formats.limits)."""
    kind = media_type(content_type)
    if not body.strip():
        raise bad_request("The request has no body")
    if kind in XML_TYPES:
        return parse_xml(body, limits=limits)
    if kind in JSON_TYPES or kind in ("", JSON_PATCH, "text/plain"):
        value = parse_json(body)
        if limits is not None:
            check_json(value, body, limits)
        return value
    raise FhirError(
        415, error(415, "not-supported", f"Content-Type {kind!r} is not supported").issues
    )


def parse_json(body: bytes) -> Any:
    # Decimals keep their written precision (formats/fhir_json.py, json.html#primitive).
    try:
        return parse_fhir_json(body)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"The body is not valid JSON: {exc}", code="structure") from exc


def render(body: bytes, prefs: Preferences) -> bytes:
    """Stored JSON bytes in the format the client asked for; untouched on the fast path."""
    if prefs.format == "xml":
        return render_xml(parse_fhir_json(body))
    if prefs.pretty:
        return dump_fhir_json(parse_fhir_json(body), pretty=True)
    return body


def render_value(value: dict[str, Any], prefs: Preferences) -> bytes:
    if prefs.format == "xml":
        return render_xml(value)
    return dump_fhir_json(value, pretty=prefs.pretty)
