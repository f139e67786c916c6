"""The FHIR REST routes: HTTP in, interaction call, HTTP out.

Routes parse what HTTP carries (path, headers, body, format) and render what the
interaction returns; they never touch SQL. Reads run on the event loop (a primary-key
lookup of stored bytes is faster than a thread hop); writes run in the thread pool
because they may wait for the database's write lock.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from fhir_server.api.negotiation import (
    FORM,
    JSON_PATCH,
    MEDIA_TYPE,
    Preferences,
    media_type,
    parse_json,
    parse_resource_body,
    preferences,
    render,
    render_value,
)
from fhir_server.definitions import R4_RESOURCE_TYPES
from fhir_server.errors import FhirError, Issue, error, not_found, operation_outcome
from fhir_server.formats.summary import select_elements, summarize
from fhir_server.interactions import create as create_room
from fhir_server.interactions import delete as delete_room
from fhir_server.interactions import patch as patch_room
from fhir_server.interactions import read as read_room
from fhir_server.interactions import reindex as reindex_room
from fhir_server.interactions import update as update_room
from fhir_server.interactions.history import history_bundle
from fhir_server.interactions.outcome import WriteOutcome
from fhir_server.interactions.search import search_bundle
from fhir_server.interactions.transaction import BundleOptions, process_bundle
from fhir_server.operations import OperationCall, find_operation, parameters_of
from fhir_server.operations.registry import OPERATIONS
from fhir_server.server_state import ServerState
from fhir_server.storage.repository import StoredResource, WriteSession
from fhir_server.validation import validate_resource
from fhir_server.versioning import check_id, etag, http_date, now_us, parse_etag, parse_http_date

Handler = Callable[[Request], Awaitable[Response]]


# -- helpers -----------------------------------------------------------------------------


def state(request: Request) -> ServerState:
    return request.app.state.fhir  # type: ignore[no-any-return]


def prefs_of(request: Request) -> Preferences:
    return preferences(dict(request.query_params), request.headers)


def base_url(request: Request) -> str:
    configured = state(request).settings.base_url
    if configured:
        return configured.rstrip("/")
    return str(request.base_url).rstrip("/") + "/fhir"


def resource_type(request: Request) -> str:
    rtype = request.path_params["rtype"]
    if rtype not in R4_RESOURCE_TYPES:
        raise error(404, "not-supported", f"Resource type {rtype!r} is not supported")
    return rtype


def fhir_response(
    body: bytes | None, prefs: Preferences, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        content=b"" if body is None else body,
        status_code=status,
        headers=headers,
        media_type=MEDIA_TYPE[prefs.format] if body is not None else None,
    )


def version_headers(stored: StoredResource) -> dict[str, str]:
    return {"ETag": etag(stored.version), "Last-Modified": http_date(stored.last_updated)}


def query_pairs(request: Request) -> list[tuple[str, str]]:
    return list(request.query_params.multi_items())


async def read_body(request: Request) -> bytes:
    """The body, refused with 413 once it passes the configured size (before it is all read)."""
    limit = state(request).settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise error(413, "too-costly", f"The body is larger than the {limit}-byte limit")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise error(413, "too-costly", f"The body is larger than the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


async def resource_body(request: Request) -> Any:
    return parse_resource_body(await read_body(request), request.headers.get("content-type"))


def if_match(request: Request) -> int | None:
    value = request.headers.get("if-match")
    return parse_etag(value) if value else None


def write_response(outcome: WriteOutcome, request: Request, prefs: Preferences) -> Response:
    """http.html#create/#update: Location, ETag, Last-Modified; body per Prefer."""
    stored = outcome.stored
    if stored is None:
        return Response(status_code=outcome.status)
    headers = version_headers(stored)
    if outcome.status in (200, 201) and not stored.deleted:
        headers["Location"] = (
            f"{base_url(request)}/{stored.rtype}/{stored.id}/_history/{stored.version}"
        )
    if outcome.status == 204 or stored.deleted:
        return Response(status_code=outcome.status, headers=headers)
    if prefs.return_ == "minimal":
        return Response(status_code=outcome.status, headers=headers)
    if prefs.return_ == "OperationOutcome":
        verb = "created" if outcome.status == 201 else "updated"
        body = operation_outcome(
            [
                Issue(
                    "informational",
                    f"{stored.rtype}/{stored.id} {verb} at version {stored.version}",
                    "information",
                )
            ]
        )
        return fhir_response(render_value(body, prefs), prefs, outcome.status, headers)
    return fhir_response(render(stored.body, prefs), prefs, outcome.status, headers)


async def run_write(request: Request, work: Callable[[WriteSession], WriteOutcome]) -> Response:
    prefs = prefs_of(request)
    outcome = await run_in_threadpool(state(request).repository.write, work)
    return write_response(outcome, request, prefs)


# -- instance level ------------------------------------------------------------------------


async def read(request: Request) -> Response:
    rtype = resource_type(request)
    prefs = prefs_of(request)
    stored = read_room.read(state(request).repository, rtype, request.path_params["id"])
    headers = version_headers(stored)
    # http.html#cread: conditional read answers 304 when the client's copy is current.
    none_match = request.headers.get("if-none-match")
    if none_match and none_match.strip() in (etag(stored.version), f'"{stored.version}"', "*"):
        return Response(status_code=304, headers=headers)
    modified_since = request.headers.get("if-modified-since")
    if modified_since and not none_match:
        since = parse_http_date(modified_since)
        if since is not None and stored.last_updated // 1_000_000 <= since // 1_000_000:
            return Response(status_code=304, headers=headers)
    return fhir_response(shaped(stored.body, request, prefs), prefs, 200, headers)


def shaped(body: bytes, request: Request, prefs: Preferences) -> bytes:
    """_summary and _elements on a read (search.html#summary, #elements)."""
    summary = request.query_params.get("_summary")
    elements = request.query_params.get("_elements")
    if not summary and not elements:
        return render(body, prefs)
    resource = orjson.loads(body)
    if summary and summary != "false":
        if summary == "count":
            raise error(400, "not-supported", "_summary=count applies to searches, not reads")
        resource = summarize(resource, summary)
    elif elements:
        resource = select_elements(resource, [e.strip() for e in elements.split(",") if e.strip()])
    return render_value(resource, prefs)


async def vread(request: Request) -> Response:
    rtype = resource_type(request)
    prefs = prefs_of(request)
    p = request.path_params
    stored = read_room.vread(state(request).repository, rtype, p["id"], p["vid"])
    return fhir_response(shaped(stored.body, request, prefs), prefs, 200, version_headers(stored))


async def update(request: Request) -> Response:
    rtype = resource_type(request)
    id = check_id(request.path_params["id"])
    resource = validate_resource(await resource_body(request), expected_type=rtype)
    expected = if_match(request)
    now = now_us()
    return await run_write(
        request,
        lambda s: update_room.update(
            s, rtype, id, resource, now=now, if_match=expected, validated=True
        ),
    )


async def delete(request: Request) -> Response:
    rtype = resource_type(request)
    id = request.path_params["id"]
    expected = if_match(request)
    now = now_us()
    return await run_write(
        request, lambda s: delete_room.delete(s, rtype, id, now=now, if_match=expected)
    )


async def patch(request: Request) -> Response:
    rtype = resource_type(request)
    document, kind = await patch_document(request)
    expected = if_match(request)
    now = now_us()
    id = request.path_params.get("id")
    if id is None:
        criteria = request.url.query
        return await run_write(
            request,
            lambda s: patch_room.conditional_patch(s, rtype, criteria, document, kind, now=now),
        )
    return await run_write(
        request,
        lambda s: patch_room.patch(s, rtype, id, document, kind, now=now, if_match=expected),
    )


async def patch_document(request: Request) -> tuple[Any, patch_room.PatchKind]:
    kind = media_type(request.headers.get("content-type"))
    body = await read_body(request)
    if kind == JSON_PATCH:
        return parse_json(body), "json-patch"
    document = parse_resource_body(body, kind)
    if isinstance(document, dict) and document.get("resourceType") == "Parameters":
        return document, "fhirpath-patch"
    raise error(
        415,
        "not-supported",
        "PATCH takes application/json-patch+json, or a FHIRPath Patch Parameters resource",
    )


async def instance_history(request: Request) -> Response:
    rtype = resource_type(request)
    id = request.path_params["id"]
    check_id(id)
    if state(request).repository.read(rtype, id) is None:
        raise not_found(f"{rtype}/{id} is not known")
    return await history(request, rtype, id)


# -- type level ----------------------------------------------------------------------------


async def create(request: Request) -> Response:
    rtype = resource_type(request)
    resource = validate_resource(await resource_body(request), expected_type=rtype)
    condition = request.headers.get("if-none-exist")
    now = now_us()
    return await run_write(
        request,
        lambda s: create_room.create(
            s, rtype, resource, now=now, if_none_exist=condition, validated=True
        ),
    )


async def conditional_update(request: Request) -> Response:
    rtype = resource_type(request)
    resource = validate_resource(await resource_body(request), expected_type=rtype)
    criteria = request.url.query
    expected = if_match(request)
    now = now_us()
    return await run_write(
        request,
        lambda s: update_room.conditional_update(
            s, rtype, criteria, resource, now=now, if_match=expected, validated=True
        ),
    )


async def conditional_delete(request: Request) -> Response:
    rtype = resource_type(request)
    criteria = request.url.query
    now = now_us()
    return await run_write(
        request, lambda s: delete_room.conditional_delete(s, rtype, criteria, now=now)
    )


async def type_history(request: Request) -> Response:
    return await history(request, resource_type(request), None)


async def search_type(request: Request) -> Response:
    return await search(request, resource_type(request), query_pairs(request))


async def search_type_post(request: Request) -> Response:
    """POST [type]/_search with form-encoded parameters (http.html#search)."""
    rtype = resource_type(request)
    if media_type(request.headers.get("content-type")) != FORM:
        raise error(415, "not-supported", f"POST {rtype}/_search takes {FORM}")
    form = await request.form()
    params = query_pairs(request) + [(k, str(v)) for k, v in form.multi_items()]
    return await search(request, rtype, params)


# -- system level --------------------------------------------------------------------------


async def system_history(request: Request) -> Response:
    return await history(request, None, None)


async def system_search(request: Request) -> Response:
    return await search(request, None, query_pairs(request))


async def transaction(request: Request) -> Response:
    prefs = prefs_of(request)
    bundle = await resource_body(request)
    repo = state(request).repository
    options = BundleOptions(
        base_url=base_url(request),
        now=now_us(),
        return_minimal=prefs.return_ == "minimal",
        search=lambda session, rtype, query: search_bundle(
            session.search_connection(),
            rtype,
            parse_qsl(query, keep_blank_values=True),
            base_url=base_url(request),
            strict=prefs.strict,
            secret=state(request).settings.secret_key,
        ),
    )
    body = await run_in_threadpool(process_bundle, repo, bundle, options)
    return fhir_response(render(body, prefs), prefs)


async def capabilities(request: Request) -> Response:
    prefs = prefs_of(request)
    statement = state(request).capability_statement(base_url(request))
    return fhir_response(render(statement, prefs), prefs)


# -- shared -----------------------------------------------------------------------------------


async def history(request: Request, rtype: str | None, id: str | None) -> Response:
    prefs = prefs_of(request)
    fhir = state(request)
    body = history_bundle(
        fhir.repository,
        query_pairs(request),
        rtype=rtype,
        id=id,
        base_url=base_url(request),
        secret=fhir.settings.secret_key,
        now=now_us(),
        default_count=fhir.settings.default_page_size,
        max_count=fhir.settings.max_page_size,
    )
    return fhir_response(render(body, prefs), prefs)


async def search(
    request: Request,
    rtype: str | None,
    params: list[tuple[str, str]],
    compartment: tuple[str, str] | None = None,
) -> Response:
    prefs = prefs_of(request)
    repo = state(request).repository

    def page() -> bytes:
        with repo.reading() as conn:
            return search_bundle(
                conn,
                rtype,
                params,
                base_url=base_url(request),
                strict=prefs.strict,
                secret=state(request).settings.secret_key,
                compartment=compartment,
            )

    # A search may count a million rows: off the event loop, unlike a primary-key read.
    body = await run_in_threadpool(page)
    return fhir_response(render(body, prefs), prefs)


# -- search: compartments, $reindex (search.html, compartmentdefinition.html) ---------------


def compartment_of(request: Request) -> tuple[tuple[str, str], str | None]:
    """(owner type, id) and the searched type (None for ``*``) of a compartment path."""
    p = request.path_params
    owner, rtype = p["compartment"], p["ctype"]
    if owner not in R4_RESOURCE_TYPES or (rtype != "*" and rtype not in R4_RESOURCE_TYPES):
        raise error(404, "not-supported", f"{request.url.path}: unknown resource type")
    return (owner, check_id(p["cid"])), None if rtype == "*" else rtype


async def search_compartment(request: Request) -> Response:
    """GET [Compartment]/[id]/[type] and [Compartment]/[id]/* (http.html#search)."""
    compartment, rtype = compartment_of(request)
    return await search(request, rtype, query_pairs(request), compartment)


async def search_compartment_post(request: Request) -> Response:
    """POST [Compartment]/[id]/[type]/_search, form-encoded (http.html#search)."""
    compartment, rtype = compartment_of(request)
    if media_type(request.headers.get("content-type")) != FORM:
        raise error(415, "not-supported", f"POST {request.url.path} takes {FORM}")
    form = await request.form()
    params = query_pairs(request) + [(k, str(v)) for k, v in form.multi_items()]
    return await search(request, rtype, params, compartment)


async def reindex_system(request: Request) -> Response:
    return await reindex(request, None)


async def reindex_type(request: Request) -> Response:
    return await reindex(request, resource_type(request))


async def reindex(request: Request, rtype: str | None) -> Response:
    """POST [base]/$reindex, [base]/[type]/$reindex (interactions/reindex.py); admin only
    once authorization exists."""
    prefs = prefs_of(request)
    batch = reindex_room.batch_size(request.query_params.get("batchSize"))
    repo = state(request).repository
    outcome = await run_in_threadpool(reindex_room.reindex, repo, rtype, batch=batch)
    return fhir_response(render_value(outcome, prefs), prefs)


# -- operations (operations.html) ----------------------------------------------------------


async def operation(request: Request) -> Response:
    """[base]/$op, [base]/[type]/$op, [base]/[type]/[id]/$op, dispatched by name."""
    prefs = prefs_of(request)
    p = request.path_params
    rtype = resource_type(request) if "rtype" in p else None
    id = check_id(p["id"]) if "id" in p else None
    parameters: list[tuple[str, Any]] = [
        (k, v) for k, v in query_pairs(request) if k not in ("_format", "_pretty")
    ]
    resource = None
    if request.method == "POST":
        raw = await read_body(request)
        if raw.strip():
            body_parameters, resource = parameters_of(
                parse_resource_body(raw, request.headers.get("content-type"))
            )
            parameters += body_parameters
    call = OperationCall(
        name=p["op"],
        level="instance" if id else "type" if rtype else "system",
        rtype=rtype,
        id=id,
        method=request.method,
        parameters=parameters,
        resource=resource,
        base_url=base_url(request),
        now=now_us(),
    )
    found = find_operation(OPERATIONS, call)
    result = await run_in_threadpool(found.run, state(request).repository, call)
    body = result.body if isinstance(result.body, bytes) else None
    rendered = render(body, prefs) if body is not None else render_value(result.body, prefs)  # type: ignore[arg-type]
    return fhir_response(rendered, prefs, result.status)


def error_response(exc: FhirError, request: Request) -> Response:
    try:
        prefs = prefs_of(request)
    except FhirError:
        prefs = Preferences()
    return fhir_response(
        render_value(exc.to_operation_outcome(), prefs), prefs, exc.status, exc.headers
    )


# The route table, most specific first (Starlette matches in order).
ROUTES: list[tuple[str, list[str], Handler]] = [
    ("/fhir/metadata", ["GET"], capabilities),
    ("/fhir/_history", ["GET"], system_history),
    ("/fhir", ["POST"], transaction),
    ("/fhir/", ["POST"], transaction),
    ("/fhir", ["GET"], system_search),
    ("/fhir/", ["GET"], system_search),
    ("/fhir/{rtype}/_history", ["GET"], type_history),
    ("/fhir/{rtype}/_search", ["POST"], search_type_post),
    ("/fhir/{rtype}/{id}/_history/{vid}", ["GET"], vread),
    ("/fhir/{rtype}/{id}/_history", ["GET"], instance_history),
    # search: $reindex and compartment search (after _history, before the instance routes)
    ("/fhir/$reindex", ["POST"], reindex_system),
    ("/fhir/{rtype}/$reindex", ["POST"], reindex_type),
    # operations by name; before the instance and compartment routes they would shadow
    ("/fhir/${op}", ["GET", "POST"], operation),
    ("/fhir/{rtype}/${op}", ["GET", "POST"], operation),
    ("/fhir/{rtype}/{id}/${op}", ["GET", "POST"], operation),
    ("/fhir/{compartment}/{cid}/{ctype}", ["GET"], search_compartment),
    ("/fhir/{compartment}/{cid}/{ctype}/_search", ["POST"], search_compartment_post),
    ("/fhir/{rtype}/{id}", ["GET"], read),
    ("/fhir/{rtype}/{id}", ["PUT"], update),
    ("/fhir/{rtype}/{id}", ["DELETE"], delete),
    ("/fhir/{rtype}/{id}", ["PATCH"], patch),
    ("/fhir/{rtype}", ["GET"], search_type),
    ("/fhir/{rtype}", ["POST"], create),
    ("/fhir/{rtype}", ["PUT"], conditional_update),
    ("/fhir/{rtype}", ["DELETE"], conditional_delete),
    ("/fhir/{rtype}", ["PATCH"], patch),
]
