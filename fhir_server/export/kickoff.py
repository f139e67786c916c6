"""A ``$export`` kick-off request, checked and parsed (Bulk Data Access IG 2.0,
https://hl7.org/fhir/uv/bulkdata/STU2/export.html#bulk-data-kick-off-request).

Pure code: headers and parameters in, an :class:`ExportRequest` or a 400 out. Parameters
come from the query string (GET) or a Parameters body (POST), as the operations room
parses them: (name, string) or (name, Parameters.parameter element).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qsl

from fhir_server.errors import FhirError, Issue, bad_request
from fhir_server.search.dates import instant_us
from fhir_server.search.parsing import RESULT_PARAMS, TRANSPORT_PARAMS, parse_search
from fhir_server.search.query import Node
from fhir_server.search.registry import Registry

Level = Literal["system", "patient", "group"]

# export.html#query-parameters, _outputFormat: servers SHALL accept the full media type
# and both abbreviations; all three mean the same NDJSON of FHIR JSON resources.
NDJSON = "application/fhir+ndjson"
OUTPUT_FORMATS = frozenset({NDJSON, "application/ndjson", "ndjson"})
# Parameters of the IG this server does not implement (export.html#query-parameters):
# refused with 400, or ignored under ``Prefer: handling=lenient`` (BDS-11).
UNSUPPORTED = frozenset(
    {
        "_elements",
        "patient",
        "includeAssociatedData",
        "_until",  # Bulk Data 3.0
        "organizeOutputBy",  # Bulk Data 3.0
        "allowPartialManifests",  # Bulk Data 3.0
    }
)
SUPPORTED = frozenset({"_outputFormat", "_since", "_type", "_typeFilter"})
# Parameters a type filter may not carry: it selects resources, it does not shape a page
# (export.html#_typefilter-query-parameter: no _include, no _sort).
_NOT_IN_TYPE_FILTER = RESULT_PARAMS | TRANSPORT_PARAMS | {"_explain"}

# FHIR R4 datatypes.html#instant
INSTANT = re.compile(
    r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)-(0[1-9]|1[0-2])-"
    r"(0[1-9]|[1-2][0-9]|3[0-1])T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)"
    r"(\.[0-9]+)?(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
)


@dataclass(frozen=True, slots=True)
class ExportRequest:
    """What a kick-off asks for. ``types`` empty: every type the level covers."""

    level: Level
    group_id: str | None = None
    types: tuple[str, ...] = ()
    since_us: int | None = None
    # (type, query) pairs, the query percent-encoded as it came ("status=final")
    type_filters: tuple[tuple[str, str], ...] = ()
    output_format: str = NDJSON
    ignored: tuple[str, ...] = ()  # unsupported parameters passed over (handling=lenient)


def prefer_tokens(prefer: str | None) -> dict[str, str]:
    """``Prefer: respond-async, handling=lenient`` as {"respond-async": "", "handling":
    "lenient"} (RFC 7240: preferences separated by commas, parameters by semicolons)."""
    out: dict[str, str] = {}
    for item in (prefer or "").split(","):
        for part in item.split(";"):
            key, _, value = part.strip().partition("=")
            if key:
                out[key.strip().lower()] = value.strip().strip('"').lower()
    return out


def check_headers(accept: str | None, prefer: str | None) -> None:
    """export.html#headers: ``Accept: application/fhir+json`` (the format of the
    OperationOutcome a kick-off may answer with) and ``Prefer: respond-async`` (the
    asynchronous pattern, async.html) are required; 400 with the reason otherwise."""
    issues: list[Issue] = []
    accepted = [part.split(";")[0].strip().lower() for part in (accept or "").split(",")]
    if "application/fhir+json" not in accepted:
        issues.append(
            Issue(
                "invalid",
                "A kick-off needs 'Accept: application/fhir+json' (Bulk Data export.html#headers)",
            )
        )
    if "respond-async" not in prefer_tokens(prefer):
        issues.append(
            Issue(
                "invalid",
                "A kick-off needs 'Prefer: respond-async' (Bulk Data export.html#headers)",
            )
        )
    if issues:
        raise FhirError(400, issues)


def is_lenient(prefer: str | None) -> bool:
    return prefer_tokens(prefer).get("handling") == "lenient"


def parse_kickoff(
    level: Level,
    parameters: Iterable[tuple[str, Any]],
    *,
    known_types: Collection[str],
    group_id: str | None = None,
    lenient: bool = False,
) -> ExportRequest:
    """The request's parameters, checked: a bad value is a 400 naming the parameter."""
    types: list[str] = []
    filters: list[tuple[str, str]] = []
    since: int | None = None
    output_format = NDJSON
    ignored: list[str] = []
    for name, raw in parameters:
        if name in UNSUPPORTED or name not in SUPPORTED:
            if lenient:
                ignored.append(name)
                continue
            what = "is not supported" if name in UNSUPPORTED else "is not a parameter of $export"
            raise bad_request(
                f"{name} {what} (Prefer: handling=lenient ignores it)", name, code="not-supported"
            )
        value = _string(name, raw)
        if name == "_outputFormat":
            # A '+' sent unencoded in a URL arrives as a space: application/fhir ndjson.
            if value.strip().replace(" ", "+") not in OUTPUT_FORMATS:
                raise bad_request(
                    f"_outputFormat {value!r} is not supported; use one of "
                    + ", ".join(sorted(OUTPUT_FORMATS)),
                    name,
                    code="not-supported",
                )
            output_format = NDJSON
        elif name == "_since":
            since = parse_since(value)
        elif name == "_type":
            types.extend(parse_types(value, known_types))
        else:
            filters.extend(parse_type_filters(value, known_types))
    types = list(dict.fromkeys(types))
    if types:
        outside = sorted({t for t, _ in filters} - set(types))
        if outside:
            raise bad_request(
                f"_typeFilter names {', '.join(outside)}, which _type leaves out", "_typeFilter"
            )
    return ExportRequest(
        level=level,
        group_id=group_id,
        types=tuple(types),
        since_us=since,
        type_filters=tuple(dict.fromkeys(filters)),
        output_format=output_format,
        ignored=tuple(ignored),
    )


def _string(name: str, raw: Any) -> str:
    """A query value as is; a Parameters.parameter element by its value[x]."""
    if isinstance(raw, str):
        return raw
    if isinstance(raw, dict):
        for key, value in raw.items():
            if key.startswith("value") and isinstance(value, str):
                return value
    raise bad_request(f"{name} needs a string value (valueString, valueInstant...)", name)


def parse_since(value: str) -> int:
    """_since is a FHIR instant (export.html#query-parameters). A '+' offset sent unencoded
    in a URL arrives as a space; it is read back as the '+' it was."""
    text = value.strip()
    if " " in text and "+" not in text:
        text = text.replace(" ", "+")
    if not INSTANT.fullmatch(text):
        raise bad_request(
            f"_since {value!r} is not a FHIR instant (e.g. 2026-11-14T09:00:00Z)", "_since"
        )
    return instant_us(text)


def parse_types(value: str, known_types: Collection[str]) -> list[str]:
    out = []
    for part in value.split(","):
        rtype = part.strip()
        if not rtype:
            continue
        if rtype not in known_types:
            raise bad_request(
                f"_type: {rtype!r} is not a resource type this server serves", "_type"
            )
        out.append(rtype)
    return out


def parse_type_filters(value: str, known_types: Collection[str]) -> list[tuple[str, str]]:
    """``Observation%3Fstatus%3Dfinal,Patient%3Fgender%3Dfemale`` (after the URL's own
    decoding: ``Observation?status=final,...``): comma-separated, each a type and a search
    query whose own commas stay percent-encoded (export.html#_typefilter-query-parameter)."""
    out = []
    for part in value.split(","):
        text = part.strip()
        if not text:
            continue
        rtype, sep, query = text.partition("?")
        if not sep or not query:
            raise bad_request(f"_typeFilter {text!r} is not Type?query", "_typeFilter")
        if rtype not in known_types:
            raise bad_request(f"_typeFilter: {rtype!r} is not a resource type", "_typeFilter")
        out.append((rtype, query))
    return out


def type_filter_nodes(
    filters: Iterable[tuple[str, str]], *, reg: Registry, now_us: int
) -> dict[str, tuple[tuple[Node, ...], ...]]:
    """Each type's filters as alternatives of search criteria, parsed strictly with the
    registry in force: a resource is exported when it matches any one of its type's
    filters (export.html: several filters on one type are OR-ed). A query the search
    engine cannot run -- unknown parameter, bad value, a result parameter -- is a 400."""
    out: dict[str, list[tuple[Node, ...]]] = {}
    for rtype, query in filters:
        pairs = parse_qsl(query, keep_blank_values=True)
        for name, _ in pairs:
            if name.split(":")[0] in _NOT_IN_TYPE_FILTER:
                raise bad_request(
                    f"_typeFilter {rtype}?{query}: {name} is not allowed in a type filter",
                    "_typeFilter",
                )
        try:
            parsed = parse_search(rtype, pairs, strict=True, now_us=now_us, reg=reg)
        except FhirError as exc:
            raise FhirError(
                400,
                [
                    Issue(i.code, f"_typeFilter {rtype}?{query}: {i.diagnostics}", "error")
                    for i in exc.issues
                ],
            ) from None
        if not parsed.criteria:
            raise bad_request(f"_typeFilter {rtype}?{query} selects nothing", "_typeFilter")
        out.setdefault(rtype, []).append(parsed.criteria)
    return {rtype: tuple(alternatives) for rtype, alternatives in out.items()}
