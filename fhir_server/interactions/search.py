"""search at type and system level (FHIR R4 http.html#search, search.html).

Parse the parameters, read one page through the search engine, and write a ``searchset``
Bundle around the stored resource bytes: matches (``search.mode = match``), included
resources (``include``) and, when parameters were ignored or a limit applied, an
OperationOutcome (``outcome``, search.html#errors). Links: ``self`` (the parameters as
understood), ``next``/``previous`` (the same plus a signed keyset ``_cursor``).
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlencode

import orjson
from sqlalchemy import Connection

from fhir_server.errors import operation_outcome
from fhir_server.formats import select_elements, summarize
from fhir_server.interactions.bundle_json import bundle_bytes, entry_bytes
from fhir_server.search import SearchQuery, parse_search
from fhir_server.storage.search_sql import FoundResource, execute_search
from fhir_server.versioning import now_us

# Fallback cursor key when the caller passes none: valid for this process's lifetime.
_PROCESS_SECRET = secrets.token_bytes(32)


def search_bundle(
    conn: Connection,
    rtype: str | None,
    params: list[tuple[str, str]],
    *,
    base_url: str,
    strict: bool,
    secret: bytes | None = None,
    now: int | None = None,
) -> bytes:
    """The searchset Bundle for one page of ``rtype?params`` (``rtype`` None: system).

    ``strict`` is the client's ``Prefer: handling=strict``; ``secret`` signs the paging
    cursors -- pass Settings.secret_key so cursors survive restarts and work across
    server processes; without it a key made for this process is used.
    """
    secret = secret or _PROCESS_SECRET
    moment = now if now is not None else now_us()
    base = base_url.rstrip("/")
    query = parse_search(rtype, params, strict=strict, now_us=moment, base_url=base)
    result = execute_search(conn, query, base_url=base, page_cursor=query.cursor, secret=secret)

    entries = [_entry(base, found, "match", query) for found in result.matches]
    entries += [_entry(base, found, "include", query) for found in result.includes]
    issues = query.warnings + result.warnings
    if issues:
        outcome = orjson.dumps(operation_outcome(issues))
        entries.append(entry_bytes({"search": {"mode": "outcome"}}, outcome))

    here = f"{base}/{rtype}" if rtype else base
    links = [("self", _link(here, query.canonical))]
    if result.next_cursor:
        links.append(("next", _link(here, [*query.canonical, ("_cursor", result.next_cursor)])))
    if result.previous_cursor:
        links.append(
            ("previous", _link(here, [*query.canonical, ("_cursor", result.previous_cursor)]))
        )
    if query.cursor:
        links.append(("first", _link(here, query.canonical)))
    return bundle_bytes("searchset", entries, now=moment, links=links, total=result.total)


def _link(here: str, params: list[tuple[str, str]]) -> str:
    return here + ("?" + urlencode(params) if params else "")


def _entry(base: str, found: FoundResource, mode: str, query: SearchQuery) -> bytes:
    body = found.body
    if mode == "match" and (query.elements or query.summary in ("true", "text", "data")):
        # search.html#summary / #elements: prune only when asked; the hot path splices
        # the stored bytes unchanged.
        resource: dict[str, Any] = orjson.loads(body)
        if query.elements:
            resource = select_elements(resource, list(query.elements))
        else:
            resource = summarize(resource, str(query.summary))
        body = orjson.dumps(resource)
    return entry_bytes(
        {"fullUrl": f"{base}/{found.rtype}/{found.id}", "search": {"mode": mode}}, body
    )
