"""The FHIR REST routes: HTTP in, interaction call, HTTP out.

Routes parse what HTTP carries (path, headers, body, format) and render what the
interaction returns; they never touch SQL. Reads run on the event loop (a primary-key
lookup of stored bytes is faster than a thread hop); writes run in the thread pool
because they may wait for the database's write lock.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from fhir_server import conformance
from fhir_server.access.decision import Deny
from fhir_server.api.access import Gate, StoredView, authenticate, require
from fhir_server.api.limits import body_limit, search_limits, structure_limits
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
from fhir_server.errors import (
    FhirError,
    Issue,
    bad_request,
    error,
    gone,
    not_found,
    operation_outcome,
)
from fhir_server.formats.fhir_json import parse_fhir_json
from fhir_server.formats.limits import check_json
from fhir_server.formats.summary import select_elements, summarize
from fhir_server.interactions import create as create_room
from fhir_server.interactions import delete as delete_room
from fhir_server.interactions import patch as patch_room
from fhir_server.interactions import read as read_room
from fhir_server.interactions import reindex as reindex_room
from fhir_server.interactions import update as update_room
from fhir_server.interactions.access import run_as
from fhir_server.interactions.history import history_bundle
from fhir_server.interactions.outcome import WriteOutcome
from fhir_server.interactions.search import explain_allowed, search_bundle
from fhir_server.interactions.transaction import BundleOptions, process_bundle
from fhir_server.operations import OperationCall, find_operation, parameters_of
from fhir_server.operations.registry import OPERATIONS
from fhir_server.search.limits import check_search
from fhir_server.server_state import ServerState
from fhir_server.storage.repository import StoredResource, WriteSession
from fhir_server.validation import validate_resource
from fhir_server.versioning import check_id, etag, http_date, now_us, parse_etag, parse_http_date

Handler = Callable[[Request], Awaitable[Response]]
T = TypeVar("T")


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


async def read_body(request: Request, gate: Gate) -> bytes:
    """The body, refused with 413 once it passes the size allowed to the token's role
    (fhir_server/api/limits.py): by its Content-Length before a byte is read, else as
    soon as the bytes read pass it."""
    limit = body_limit(gate.claims, state(request).settings)
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


async def resource_body(request: Request, gate: Gate) -> Any:
    """The body parsed, within the structure limits; a large one is parsed in the thread
    pool, so it does not hold up the requests waiting on the event loop."""
    body = await read_body(request, gate)
    content_type = request.headers.get("content-type")
    limits = structure_limits(state(request).settings)
    if len(body) > _PARSE_ON_LOOP_BYTES:
        return await run_in_threadpool(parse_resource_body, body, content_type, limits)
    return parse_resource_body(body, content_type, limits)


_PARSE_ON_LOOP_BYTES = 64 * 1024


async def validated_body(request: Request, gate: Gate, rtype: str) -> dict[str, Any]:
    """The body parsed and validated as a ``rtype``; a large one in the thread pool, where
    validation (about 18 µs per value) cannot hold up the event loop."""
    body = await read_body(request, gate)
    content_type = request.headers.get("content-type")
    limits = structure_limits(state(request).settings)

    def parsed() -> dict[str, Any]:
        resource = parse_resource_body(body, content_type, limits)
        return validate_resource(resource, expected_type=rtype)

    if len(body) > _PARSE_ON_LOOP_BYTES:
        return await run_in_threadpool(parsed)
    return parsed()


async def form_params(request: Request, gate: Gate) -> list[tuple[str, str]]:
    """An application/x-www-form-urlencoded body as pairs, within the token's body limit."""
    body = await read_body(request, gate)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise bad_request("The form is not UTF-8") from exc
    return parse_qsl(text, keep_blank_values=True)


def if_match(request: Request) -> int | None:
    value = request.headers.get("if-match")
    return parse_etag(value) if value else None


def write_response(
    outcome: WriteOutcome, request: Request, prefs: Preferences, warnings: list[Issue] | None = None
) -> Response:
    """http.html#create/#update: Location, ETag, Last-Modified; body per Prefer.
    ``warnings``: write-time validation warnings (fhir_server.conformance), listed in the
    OperationOutcome that ``Prefer: return=OperationOutcome`` asks for."""
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
                ),
                *(warnings or []),
            ]
        )
        return fhir_response(render_value(body, prefs), prefs, outcome.status, headers)
    return fhir_response(render(stored.body, prefs), prefs, outcome.status, headers)


async def run_write(
    request: Request, gate: Gate, work: Callable[[WriteSession], WriteOutcome]
) -> Response:
    """Run a write with the token's access in force: the rooms ask the gate about
    conditional criteria, the target and the new content (interactions/access.py)."""
    prefs = prefs_of(request)
    outcome, warnings = await run_in_threadpool(
        run_as,
        gate,
        looked_up,
        gate,
        state(request).repository.write,
        conformance.with_warnings(work),
    )
    response = write_response(outcome, request, prefs, warnings)
    for value in conformance.header_values(warnings):  # validation warnings, as HAPI does
        response.headers.append(conformance.RESPONSE_HEADER, value)
    return response


def looked_up(gate: Gate, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` after the clinician's Consents are looked up (once per request, in
    the worker thread, before any write transaction takes its lock); then, its writes
    committed, the gate settles what follows from them (tokens revoked when a Consent
    was withdrawn, docs/AUTH.md)."""
    gate.consent  # noqa: B018 - a lookup with a cache, wanted for its effect
    result = fn(*args)
    gate.settle()
    return result


def admitted(
    gate: Gate, interaction: str, rtype: str, id: str, stored: StoredResource | None
) -> StoredResource:
    """The stored resource if the token may ``interaction`` it: 403 when no scope covers
    the type, 404 -- the very answer a missing resource gets -- when it may not see this
    one, 410 for a deletion only when it could have seen what was deleted."""
    gate.precheck(interaction, rtype)
    missing = not_found(f"{rtype}/{id} is not known")
    if stored is None:
        gate.record(interaction, 404, rtype, "not found", resource_id=id)
        raise missing
    if stored.deleted:
        repo = gate.state.repository
        before = repo.vread(rtype, id, stored.version - 1) if stored.version > 1 else None
        if not gate.visible_deleted(stored, before):
            gate.record(interaction, 404, rtype, "deleted, not visible", resource_id=id)
            raise missing
        gate.record(interaction, 410, rtype, "deleted", resource_id=id)
        raise gone(f"{rtype}/{id} was deleted")
    gate.admit(interaction, stored, missing)
    return stored


def precheck_put(gate: Gate, rtype: str, *, chosen_id: bool) -> None:
    """A PUT updates or, onto nothing, creates: refused up front only when neither can
    happen (Gate.precheck_put; the rooms decide which it is)."""
    gate.precheck_put(rtype, chosen_id=chosen_id)


# -- instance level ------------------------------------------------------------------------


async def read(request: Request) -> Response:
    gate = authenticate(request, "read", request.path_params["rtype"])
    rtype = resource_type(request)
    prefs = prefs_of(request)
    id = check_id(request.path_params["id"])
    stored = admitted(gate, "read", rtype, id, state(request).repository.read(rtype, id))
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
    resource = parse_fhir_json(body)
    if summary and summary != "false":
        if summary == "count":
            raise error(400, "not-supported", "_summary=count applies to searches, not reads")
        resource = summarize(resource, summary)
    elif elements:
        resource = select_elements(resource, [e.strip() for e in elements.split(",") if e.strip()])
    return render_value(resource, prefs)


async def vread(request: Request) -> Response:
    gate = authenticate(request, "vread", request.path_params["rtype"])
    rtype = resource_type(request)
    prefs = prefs_of(request)
    p = request.path_params
    gate.precheck("vread", rtype)
    missing = not_found(f"{rtype}/{p['id']} has no version {p['vid']}")
    repo = state(request).repository
    try:
        stored = read_room.vread(repo, rtype, p["id"], p["vid"])
    except FhirError as exc:
        if exc.status == 410:  # a deletion: answer 410 only to who could see the resource
            current = repo.read(rtype, p["id"])
            before = repo.vread(rtype, p["id"], int(p["vid"]) - 1) if int(p["vid"]) > 1 else None
            if current is None or not gate.visible_deleted(current, before):
                exc = missing
        gate.record("vread", exc.status, rtype, str(exc), resource_id=p["id"])
        raise exc from None
    gate.admit("vread", stored, missing)
    return fhir_response(shaped(stored.body, request, prefs), prefs, 200, version_headers(stored))


async def update(request: Request) -> Response:
    gate = authenticate(request, "update", request.path_params["rtype"])
    rtype = resource_type(request)
    precheck_put(gate, rtype, chosen_id=True)
    id = check_id(request.path_params["id"])
    resource = await validated_body(request, gate, rtype)
    expected = if_match(request)
    now = now_us()
    return await run_write(
        request,
        gate,
        lambda s: update_room.update(
            s, rtype, id, resource, now=now, if_match=expected, validated=True
        ),
    )


async def delete(request: Request) -> Response:
    gate = authenticate(request, "delete", request.path_params["rtype"])
    rtype = resource_type(request)
    gate.precheck("delete", rtype)
    id = request.path_params["id"]
    expected = if_match(request)
    now = now_us()
    return await run_write(
        request, gate, lambda s: delete_room.delete(s, rtype, id, now=now, if_match=expected)
    )


async def patch(request: Request) -> Response:
    gate = authenticate(request, "patch", request.path_params["rtype"])
    rtype = resource_type(request)
    gate.precheck("patch", rtype)
    document, kind = await patch_document(request, gate)
    expected = if_match(request)
    now = now_us()
    id = request.path_params.get("id")
    if id is None:
        criteria = request.url.query
        return await run_write(
            request,
            gate,
            lambda s: patch_room.conditional_patch(s, rtype, criteria, document, kind, now=now),
        )
    return await run_write(
        request,
        gate,
        lambda s: patch_room.patch(s, rtype, id, document, kind, now=now, if_match=expected),
    )


async def patch_document(request: Request, gate: Gate) -> tuple[Any, patch_room.PatchKind]:
    kind = media_type(request.headers.get("content-type"))
    body = await read_body(request, gate)
    limits = structure_limits(state(request).settings)
    if kind == JSON_PATCH:
        operations = parse_json(body)
        check_json(operations, body, limits)
        return operations, "json-patch"
    document = parse_resource_body(body, kind, limits)
    if isinstance(document, dict) and document.get("resourceType") == "Parameters":
        return document, "fhirpath-patch"
    raise error(
        415,
        "not-supported",
        "PATCH takes application/json-patch+json, or a FHIRPath Patch Parameters resource",
    )


async def instance_history(request: Request) -> Response:
    gate = authenticate(request, "history-instance", request.path_params["rtype"])
    rtype = resource_type(request)
    id = request.path_params["id"]
    check_id(id)
    gate.precheck("history-instance", rtype)
    repo = state(request).repository
    current = repo.read(rtype, id)
    missing = not_found(f"{rtype}/{id} is not known")
    if current is None:
        gate.record("history-instance", 404, rtype, "not found", resource_id=id)
        raise missing
    if current.deleted:
        before = repo.vread(rtype, id, current.version - 1) if current.version > 1 else None
        if not gate.visible_deleted(current, before):
            gate.record("history-instance", 404, rtype, "deleted, not visible", resource_id=id)
            raise missing
    else:
        gate.admit("history-instance", current, missing, record=False)
    return await history(request, gate, "history-instance", rtype, id)


# -- type level ----------------------------------------------------------------------------


async def create(request: Request) -> Response:
    gate = authenticate(request, "create", request.path_params["rtype"])
    rtype = resource_type(request)
    gate.precheck("create", rtype)
    resource = await validated_body(request, gate, rtype)
    condition = request.headers.get("if-none-exist")
    now = now_us()
    return await run_write(
        request,
        gate,
        lambda s: create_room.create(
            s, rtype, resource, now=now, if_none_exist=condition, validated=True
        ),
    )


async def conditional_update(request: Request) -> Response:
    gate = authenticate(request, "update", request.path_params["rtype"])
    rtype = resource_type(request)
    precheck_put(gate, rtype, chosen_id=False)
    resource = await validated_body(request, gate, rtype)
    if resource.get("id") is not None:
        # A body id is the client's choice of id should the criteria match nothing.
        precheck_put(gate, rtype, chosen_id=True)
    criteria = request.url.query
    expected = if_match(request)
    now = now_us()
    return await run_write(
        request,
        gate,
        lambda s: update_room.conditional_update(
            s, rtype, criteria, resource, now=now, if_match=expected, validated=True
        ),
    )


async def conditional_delete(request: Request) -> Response:
    gate = authenticate(request, "delete", request.path_params["rtype"])
    rtype = resource_type(request)
    gate.precheck("delete", rtype)
    criteria = request.url.query
    now = now_us()
    return await run_write(
        request, gate, lambda s: delete_room.conditional_delete(s, rtype, criteria, now=now)
    )


async def type_history(request: Request) -> Response:
    gate = authenticate(request, "history-type", request.path_params["rtype"])
    return await history(request, gate, "history-type", resource_type(request), None)


async def search_type(request: Request) -> Response:
    gate = authenticate(request, "search-type", request.path_params["rtype"])
    return await search(request, gate, resource_type(request), query_pairs(request))


async def search_type_post(request: Request) -> Response:
    """POST [type]/_search with form-encoded parameters (http.html#search)."""
    gate = authenticate(request, "search-type", request.path_params["rtype"])
    rtype = resource_type(request)
    if media_type(request.headers.get("content-type")) != FORM:
        raise error(415, "not-supported", f"POST {rtype}/_search takes {FORM}")
    params = query_pairs(request) + await form_params(request, gate)
    return await search(request, gate, rtype, params)


# -- system level --------------------------------------------------------------------------


async def system_history(request: Request) -> Response:
    gate = authenticate(request, "history-system")
    return await history(request, gate, "history-system", None, None)


async def system_search(request: Request) -> Response:
    gate = authenticate(request, "search-system")
    return await search(request, gate, None, query_pairs(request))


async def transaction(request: Request) -> Response:
    """batch and transaction: every entry is decided on its own -- the rooms ask the gate
    (interactions/access.py) and a search entry gets the same restriction as a search. In
    a transaction the first refused entry fails the whole Bundle with its status (nothing
    is written); in a batch that entry answers with its own status."""
    gate = authenticate(request, "batch")
    prefs = prefs_of(request)
    bundle = await resource_body(request, gate)
    kind = bundle.get("type") if isinstance(bundle, dict) else None
    action = "transaction" if kind == "transaction" else "batch"
    repo = state(request).repository

    def entry_search(session: WriteSession, rtype: str, query: str) -> bytes:
        params = parse_qsl(query, keep_blank_values=True)
        check_search(params, search_limits(state(request).settings))
        return search_bundle(
            session.search_connection(),
            rtype,
            params,
            base_url=base_url(request),
            strict=prefs.strict,
            secret=state(request).settings.secret_key,
            explain=False,
            access=gate.search_access("search-type", rtype, params),
        )

    options = BundleOptions(
        base_url=base_url(request),
        now=now_us(),
        return_minimal=prefs.return_ == "minimal",
        search=entry_search,
    )
    gate.collect_writes()  # one AuditEvent for the Bundle's writes, not one per entry
    try:
        body = await run_in_threadpool(
            run_as, gate, looked_up, gate, process_bundle, repo, bundle, options
        )
    except FhirError as exc:
        gate.record_writes(action, exc.status, str(exc))
        raise
    gate.record_writes(action, 200)
    return fhir_response(render(body, prefs), prefs)


async def capabilities(request: Request) -> Response:
    # No token needed: SMART discovery starts here (SAL-06; the CapabilityStatement is public).
    prefs = prefs_of(request)
    statement = state(request).capability_statement(base_url(request))
    return fhir_response(render(statement, prefs), prefs)


# -- shared -----------------------------------------------------------------------------------


async def history(
    request: Request, gate: Gate, interaction: str, rtype: str | None, id: str | None
) -> Response:
    prefs = prefs_of(request)
    fhir = state(request)
    if interaction == "history-instance":
        assert rtype is not None
        admit = gate.history_admission("history-type", rtype)
    else:
        admit = gate.history_admission(interaction, rtype)
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
        admit=admit,
    )
    gate.record(interaction, 200, rtype, resource_id=id, query=request.url.query or None)
    return fhir_response(render(body, prefs), prefs)


async def search(
    request: Request,
    gate: Gate,
    rtype: str | None,
    params: list[tuple[str, str]],
    compartment: tuple[str, str] | None = None,
) -> Response:
    """A search with the token's restriction pushed into its SQL (search/restriction.py)."""
    check_search(params, search_limits(state(request).settings))
    prefs = prefs_of(request)
    repo = state(request).repository
    interaction = "search-type" if rtype else "search-system"
    access = gate.search_access(interaction, rtype, params)
    # _explain shows SQL and plans: an opt-in of the installation AND an admin or a
    # system/ client that may write (docs/AUTH.md).
    explain = gate.may_explain and explain_allowed()

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
                registry=repo.search_registry(conn),
                explain=explain,
                access=access,
            )

    # A search may count a million rows: off the event loop, unlike a primary-key read.
    body = await run_in_threadpool(page)
    query = "&".join(f"{k}={v}" for k, v in params)[:2000] or None
    gate.record(interaction, 200, rtype, query=query)
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
    """GET [Compartment]/[id]/[type] and [Compartment]/[id]/* (http.html#search): the
    token's restriction applies as on any search, so another patient's compartment
    answers an empty Bundle."""
    gate = authenticate(request, "search-type")
    compartment, rtype = compartment_of(request)
    return await search(request, gate, rtype, query_pairs(request), compartment)


async def search_compartment_post(request: Request) -> Response:
    """POST [Compartment]/[id]/[type]/_search, form-encoded (http.html#search)."""
    gate = authenticate(request, "search-type")
    compartment, rtype = compartment_of(request)
    if media_type(request.headers.get("content-type")) != FORM:
        raise error(415, "not-supported", f"POST {request.url.path} takes {FORM}")
    params = query_pairs(request) + await form_params(request, gate)
    return await search(request, gate, rtype, params, compartment)


async def reindex_system(request: Request) -> Response:
    return await reindex(request, None)


async def reindex_type(request: Request) -> Response:
    return await reindex(request, resource_type(request))


async def reindex(request: Request, rtype: str | None) -> Response:
    """POST [base]/$reindex, [base]/[type]/$reindex (interactions/reindex.py): admins and
    system/ clients with a write scope only (it rewrites every index row)."""
    gate = authenticate(request, "operation", rtype)
    require(gate.may_administer, gate, "operation", rtype, "$reindex is for administrators")
    gate.record("operation", 200, rtype, operation="reindex")
    prefs = prefs_of(request)
    batch = reindex_room.batch_size(request.query_params.get("batchSize"))
    repo = state(request).repository
    outcome = await run_in_threadpool(reindex_room.reindex, repo, rtype, batch=batch)
    return fhir_response(render_value(outcome, prefs), prefs)


# -- operations (operations.html) ----------------------------------------------------------


async def operation(request: Request) -> Response:
    """[base]/$op, [base]/[type]/$op, [base]/[type]/[id]/$op, dispatched by name.

    Access: an instance-level operation needs ``read`` on its target (404 as for a read),
    and ``update`` too when the operation changes state; a type-level one needs some scope
    on the type; a system-level one that changes state needs an admin or a system/ write
    scope. Whatever an operation writes is decided like any write (write.py)."""
    gate = authenticate(request, "operation", request.path_params.get("rtype"))
    prefs = prefs_of(request)
    p = request.path_params
    rtype = resource_type(request) if "rtype" in p else None
    id = check_id(p["id"]) if "id" in p else None
    parameters: list[tuple[str, Any]] = [
        (k, v) for k, v in query_pairs(request) if k not in ("_format", "_pretty")
    ]
    resource = None
    if request.method == "POST":
        raw = await read_body(request, gate)
        if raw.strip():
            body_parameters, resource = parameters_of(
                parse_resource_body(
                    raw,
                    request.headers.get("content-type"),
                    structure_limits(state(request).settings),
                )
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
    if found.server_writes is not None:
        authorize_server_writes(gate, found.server_writes, call)
    else:
        authorize_operation(gate, found.changes_state, call)
    # An operation whose writes are the server's own runs without the caller's access
    # context; every other one writes as the caller, decided like any write.
    access = None if found.server_writes is not None else gate
    try:
        result = await run_in_threadpool(
            run_as, access, looked_up, gate, found.run, state(request).repository, call
        )
    except FhirError as exc:
        gate.record("operation", exc.status, rtype, str(exc), operation=call.name)
        raise
    gate.record("operation", result.status, rtype, resource_id=id, operation=call.name)
    body = result.body if isinstance(result.body, bytes) else None
    rendered = render(body, prefs) if body is not None else render_value(result.body, prefs)  # type: ignore[arg-type]
    return fhir_response(rendered, prefs, result.status)


def authorize_server_writes(gate: Gate, requires: tuple[str, str], call: OperationCall) -> None:
    """An operation that writes on the server's authority (``Operation.server_writes``):
    the caller may read the target (404 exactly as a read, so nothing tells an
    unreachable patient from an unknown one) and holds ``requires`` -- e.g. ``c`` on
    CarePlan for ``$plan-week`` -- else 403 naming it. Never a 404 for a resource the
    server itself makes."""
    letter, rtype = requires
    if call.level == "instance":
        assert call.rtype is not None and call.id is not None
        admitted(gate, "read", call.rtype, call.id, gate.state.repository.read(call.rtype, call.id))
    require(
        any(s.allows(rtype, letter) for s in gate.claims.scopes.resources),
        gate,
        "operation",
        call.rtype,
        f"${call.name} needs a scope with {letter!r} on {rtype}",
    )


def authorize_operation(gate: Gate, changes_state: bool, call: OperationCall) -> None:
    rtype, name = call.rtype, call.name
    if call.level == "instance":
        assert rtype is not None and call.id is not None
        stored = admitted(gate, "read", rtype, call.id, gate.state.repository.read(rtype, call.id))
        if changes_state:
            decision = gate.decide("update", rtype, StoredView(stored))
            if isinstance(decision, Deny):
                gate.record("operation", 403, rtype, decision.reason, operation=name)
                raise gate.forbidden(decision.reason)
    elif call.level == "type":
        assert rtype is not None
        require(
            any(s.allows(rtype, p) for s in gate.claims.scopes.resources for p in "cruds"),
            gate,
            "operation",
            rtype,
            f"${name} needs a scope on {rtype}",
        )
    elif changes_state:
        require(gate.may_administer, gate, "operation", None, f"${name} is for administrators")
    else:
        require(
            bool(gate.claims.scopes.resources), gate, "operation", None, f"${name} needs a scope"
        )


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
