"""search at type, system and compartment level (FHIR R4 http.html#search, search.html).

Parse the parameters with the registry in force (the R4 core parameters plus the custom
SearchParameters stored on this server), read one page through the search engine, and
write a ``searchset`` Bundle around the stored resource bytes: matches
(``search.mode = match``), included resources (``include``) and, when parameters were
ignored or a limit applied, an OperationOutcome (``outcome``, search.html#errors). Links:
``self`` (the parameters as understood), ``next``/``previous`` (the same plus a signed
keyset ``_cursor``).

``_explain=true|analyze`` adds the SQL and the database's plan to that OperationOutcome,
only when the server allows it (``SELFBACK_SEARCH_EXPLAIN=1``) and the caller is an
admin or a backend client with a ``system/`` write scope (the route decides, docs/AUTH.md):
it shows the schema and the query shapes.
"""

from __future__ import annotations

import os
import secrets
from typing import Any
from urllib.parse import urlencode

import orjson
from sqlalchemy import Connection

from fhir_server.errors import Issue, operation_outcome
from fhir_server.formats import select_elements, summarize
from fhir_server.formats.fhir_json import dump_fhir_json, parse_fhir_json
from fhir_server.interactions.bundle_json import bundle_bytes, entry_bytes
from fhir_server.search import Registry, SearchQuery, parse_search
from fhir_server.search.restriction import SearchAccess
from fhir_server.search.terminology import resolve_terminology
from fhir_server.storage.search_sql import FoundResource, execute_search, live_registry
from fhir_server.storage.terminology import SearchCodes
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
    compartment: tuple[str, str] | None = None,
    explain: bool | None = None,
    access: SearchAccess | None = None,
    registry: Registry | None = None,
) -> bytes:
    """The searchset Bundle for one page of ``rtype?params`` (``rtype`` None: system).

    ``strict`` is the client's ``Prefer: handling=strict``; ``secret`` signs the paging
    cursors -- pass Settings.secret_key so cursors survive restarts and work across
    server processes; without it a key made for this process is used. ``compartment``
    (owner type, id) makes it ``[Compartment]/[id]/[rtype or *]``. ``explain`` allows
    ``_explain`` (default: the SELFBACK_SEARCH_EXPLAIN setting). ``access``: what the
    token may see (fhir_server.search.restriction), added to the query before the SQL
    is generated; None for no restriction. ``registry``: the search parameters in force
    (Repository.search_registry, checked at most every few hundred ms); None checks the
    database on ``conn`` now (a search inside a write transaction).
    """
    secret = secret or _PROCESS_SECRET
    moment = now if now is not None else now_us()
    base = base_url.rstrip("/")
    reg = registry if registry is not None else live_registry(conn)
    query = parse_search(
        rtype,
        params,
        strict=strict,
        now_us=moment,
        base_url=base,
        reg=reg,
        compartment=compartment,
        explain=explain_allowed() if explain is None else explain,
    )
    # token :in/:not-in/:above/:below -> code sets (fhir_server.search.terminology)
    query = resolve_terminology(query, SearchCodes(conn))
    if access is not None:
        query = access.apply(query, reg=reg, now_us=moment, base_url=base)
    result = execute_search(conn, query, base_url=base, page_cursor=query.cursor, secret=secret)

    entries = [_entry(base, found, "match", query) for found in result.matches]
    entries += [_entry(base, found, "include", query) for found in result.includes]
    issues = query.warnings + result.warnings
    issues += [
        Issue("informational", f"_explain {what}:\n{sql}\n\nplan:\n{plan}", "information")
        for what, sql, plan in result.explained
    ]
    if issues:
        outcome = orjson.dumps(operation_outcome(issues))
        entries.append(entry_bytes({"search": {"mode": "outcome"}}, outcome))

    here = _here(base, rtype, compartment)
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


def explain_allowed() -> bool:
    """Whether ``_explain`` is answered: the server setting SELFBACK_SEARCH_EXPLAIN=1.

    Read here rather than from Settings so the search room stays self-contained. An
    opt-in on top of the access check: the route also requires an admin or a system/
    write scope (fhir_server.api.access)."""
    return os.environ.get("SELFBACK_SEARCH_EXPLAIN", "") in ("1", "true", "yes")


def _here(base: str, rtype: str | None, compartment: tuple[str, str] | None) -> str:
    if compartment is not None:
        return f"{base}/{compartment[0]}/{compartment[1]}/{rtype or '*'}"
    return f"{base}/{rtype}" if rtype else base


def _link(here: str, params: list[tuple[str, str]]) -> str:
    return here + ("?" + urlencode(params) if params else "")


def _entry(base: str, found: FoundResource, mode: str, query: SearchQuery) -> bytes:
    body = found.body
    if mode == "match" and (query.elements or query.summary in ("true", "text", "data")):
        # search.html#summary / #elements: prune only when asked; the hot path splices
        # the stored bytes unchanged.
        resource: dict[str, Any] = parse_fhir_json(body)
        if query.elements:
            resource = select_elements(resource, list(query.elements))
        else:
            resource = summarize(resource, str(query.summary))
        body = dump_fhir_json(resource)
    return entry_bytes(
        {"fullUrl": f"{base}/{found.rtype}/{found.id}", "search": {"mode": mode}}, body
    )
