"""Bulk Data export over HTTP (https://hl7.org/fhir/uv/bulkdata/STU2/export.html): the
kick-off at system, Patient and Group level, the status URL and the file URLs.

HTTP in, a job row out; the work itself happens in the export worker (runner.py). Every
request is authenticated and decided by the one access decision (``decide``, interaction
``export``; ``read`` on the Group of a Group export) and recorded in the audit trail as
``action="export"``: the kick-off, each file download, a cancellation and every refusal.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from fhir_server.access.claims import Claims
from fhir_server.access.decision import Deny, decide
from fhir_server.api.access import Gate, StoredView, authenticate
from fhir_server.api.negotiation import parse_resource_body
from fhir_server.api.routes import base_url, read_body, state
from fhir_server.definitions import R4_RESOURCE_TYPES
from fhir_server.errors import FhirError, Issue, error, not_found, operation_outcome
from fhir_server.export.jobs import ACCEPTED, COMPLETED, FAILED, ExportJob, ExportJobs
from fhir_server.export.kickoff import (
    Level,
    check_headers,
    is_lenient,
    parse_kickoff,
    type_filter_nodes,
)
from fhir_server.export.manifest import (
    FILE_PATH,
    STATUS_PATH,
    file_folder,
    file_type,
    manifest,
    status_url,
)
from fhir_server.export.plan import export_claims, group_patients, level_types, refusals
from fhir_server.export.runner import job_folder, remove_files
from fhir_server.operations import parameters_of
from fhir_server.versioning import check_id, http_date, now_us

NDJSON_MEDIA_TYPE = "application/fhir+ndjson"
# [D] A client may have this many jobs waiting or running; one more is refused with 429
# and Retry-After (export.html#response---error-status: servers may limit concurrent jobs).
MAX_UNFINISHED_PER_CLIENT = 5
RETRY_BUSY_SECONDS = 30
RETRY_RUNNING_SECONDS = 1  # what a poll of a running job is told to wait
_JOB_ID = re.compile(r"[0-9a-f]{32}")
_FILE_NAME = re.compile(r"[A-Za-z]{1,64}-[0-9]{1,9}\.ndjson")
_TRANSPORT = frozenset({"_format", "_pretty"})


# -- kick-off (export.html#bulk-data-kick-off-request) -----------------------------------------


async def export_system(request: Request) -> Response:
    return await kick_off(request, "system")


async def export_patients(request: Request) -> Response:
    return await kick_off(request, "patient")


async def export_group(request: Request) -> Response:
    return await kick_off(request, "group", request.path_params["id"])


def _audit_type(level: Level) -> str | None:
    return {"system": None, "patient": "Patient", "group": "Group"}[level]


async def kick_off(request: Request, level: Level, group_id: str | None = None) -> Response:
    """export.html#bulk-data-kick-off-request. Errors are OperationOutcomes in JSON
    whatever the Accept header says: application/fhir+json is the one format the IG
    defines for them (export.html#headers)."""
    try:
        return await _kick_off(request, level, group_id)
    except FhirError as exc:
        return JSONResponse(
            exc.to_operation_outcome(),
            status_code=exc.status,
            headers=exc.headers,
            media_type="application/fhir+json",
        )


async def _kick_off(request: Request, level: Level, group_id: str | None) -> Response:
    audit_type = _audit_type(level)
    gate = authenticate(request, "export", audit_type)
    fhir = state(request)
    try:
        if group_id is not None:
            check_id(group_id)
        check_headers(request.headers.get("accept"), request.headers.get("prefer"))
        claims = _export_claims(gate, audit_type)
        parameters: list[tuple[str, Any]] = [
            (k, v) for k, v in request.query_params.multi_items() if k not in _TRANSPORT
        ]
        if request.method == "POST":
            raw = await read_body(request, gate)
            if raw.strip():
                body, resource = parameters_of(
                    parse_resource_body(raw, request.headers.get("content-type"))
                )
                if resource is not None:
                    raise error(400, "invalid", "$export takes a Parameters resource")
                parameters += body
        wanted = parse_kickoff(
            level,
            parameters,
            known_types=R4_RESOURCE_TYPES,
            group_id=group_id,
            lenient=is_lenient(request.headers.get("prefer")),
        )
        now = now_us()
        repo = fhir.repository
        with repo.reading() as conn:
            reg = repo.search_registry(conn)
        type_filter_nodes(wanted.type_filters, reg=reg, now_us=now)  # a bad filter: 400 now
        _check_types(gate, claims, level, wanted.types)
        patients: tuple[str, ...] = ()
        if group_id is not None:
            patients = _group_members(gate, claims, group_id)
        jobs = ExportJobs(repo.db)
        if await run_in_threadpool(jobs.unfinished, claims.client_id) >= (
            MAX_UNFINISHED_PER_CLIENT
        ):
            raise FhirError(
                429,
                [
                    Issue(
                        "throttled",
                        f"This client already has {MAX_UNFINISHED_PER_CLIENT} exports waiting "
                        "or running; retry when one has finished",
                    )
                ],
                {"Retry-After": str(RETRY_BUSY_SECONDS)},
            )
        job = ExportJob(
            job_id=uuid.uuid4().hex,
            client_id=claims.client_id,
            scope=str(claims.scopes),
            level=level,
            group_id=group_id,
            request=kick_off_url(request),
            parameters={
                "types": list(wanted.types),
                "since": wanted.since_us,
                "type_filters": [list(f) for f in wanted.type_filters],
                "patients": list(patients),
                "output_format": wanted.output_format,
            },
            status=ACCEPTED,
            transaction_time=now,
            created_at=now,
            progress="Waiting to start",
        )
        await run_in_threadpool(jobs.add, job)
    except FhirError as exc:
        if exc.status not in (403, 404):  # the decision's refusals are recorded where made
            gate.record("export", exc.status, audit_type, str(exc), query=_query(request))
        raise
    runner = getattr(fhir, "exports", None)
    if runner is not None:
        runner.wake()
    gate.record(
        "export",
        202,
        audit_type,
        f"export {job.job_id} accepted",
        resource_id=group_id,
        query=_query(request),
    )
    issues = [Issue("informational", f"Export {job.job_id} accepted", "information")]
    issues += [
        Issue("informational", f"{name} is not supported and was ignored", "warning")
        for name in wanted.ignored
    ]
    return JSONResponse(
        operation_outcome(issues),
        status_code=202,
        headers={"Content-Location": status_url(base_url(request), job.job_id)},
        media_type="application/fhir+json",
    )


def kick_off_url(request: Request) -> str:
    """The kick-off as the client addressed it, under the server's public base URL (the
    manifest's ``request``, BDS-14)."""
    path = request.url.path
    tail = path[path.index("/fhir") + len("/fhir") :] if "/fhir" in path else path
    query = request.url.query
    return base_url(request) + tail + (f"?{query}" if query else "")


def _query(request: Request) -> str | None:
    return request.url.query[:2000] or None


def _export_claims(gate: Gate, audit_type: str | None) -> Claims:
    """The token's system/ scopes, or a 403: bulk export is for backend services."""
    claims = export_claims(gate.claims.client_id, gate.claims.scopes)
    if not claims.scopes.resources:
        reason = (
            "Bulk export needs system/ scopes (SMART Backend Services); "
            "patient/ and user/ tokens cannot export"
        )
        gate.record("export", 403, audit_type, reason)
        raise gate.forbidden(reason)
    return claims


def _check_types(gate: Gate, claims: Claims, level: Level, requested: tuple[str, ...]) -> None:
    """403 when the scopes cover none of the types asked for (named, or those of the
    level). Some covered is enough: the others are left out and reported in the
    manifest's error file (plan.py)."""
    candidates = requested or level_types(level, R4_RESOURCE_TYPES)
    refused = refusals(claims, level, candidates)
    if len(refused) < len(candidates):
        return
    reason = (
        "; ".join(refused[t] for t in requested)
        if requested
        else f"no granted scope allows export of any type at {level} level"
    )
    gate.record("export", 403, _audit_type(level), reason)
    raise gate.forbidden(reason)


def _group_members(gate: Gate, claims: Claims, group_id: str) -> tuple[str, ...]:
    """The Group's Patient members; 404 as for a read when it does not exist (or is
    deleted) or the token may not read it (export.html#endpoint---group-of-patients)."""
    stored = gate.state.repository.read("Group", group_id)
    missing = not_found(f"Group/{group_id} is not known")
    if stored is None or stored.deleted:
        gate.record("export", 404, "Group", "not found", resource_id=group_id)
        raise missing
    view = StoredView(stored)
    decision = decide(claims, "read", "Group", view)
    if isinstance(decision, Deny):
        gate.record("export", decision.status, "Group", decision.reason, resource_id=group_id)
        raise gate.refuse(decision, missing)
    return group_patients(view)


# -- status (export.html#bulk-data-status-request) ---------------------------------------------


def _own_job(gate: Gate, job_id: str) -> ExportJob:
    """The job, if it is this client's: another client's job is as unknown as none. The
    token must still carry system/ scopes (403 otherwise), as at the kick-off."""
    _export_claims(gate, None)
    job = ExportJobs(gate.state.repository.db).get(job_id) if _JOB_ID.fullmatch(job_id) else None
    if job is None or job.client_id != gate.claims.client_id:
        gate.record("export", 404, None, f"no export {job_id} of this client")
        raise not_found(f"There is no export {job_id} (it expired, was cancelled or never was)")
    return job


async def export_status(request: Request) -> Response:
    gate = authenticate(request, "export")
    job = _own_job(gate, request.path_params["job_id"])
    if job.status == COMPLETED:
        headers = {"Expires": http_date(job.expires_at)} if job.expires_at else {}
        return JSONResponse(manifest(job, base_url(request)), headers=headers)
    if job.status == FAILED:
        # export.html#response---error-status: a 5xx with an OperationOutcome.
        outcome = operation_outcome([Issue("exception", job.failure or "The export failed")])
        return JSONResponse(outcome, status_code=500, media_type="application/fhir+json")
    progress = (job.progress or "Waiting to start")[:99]
    return Response(
        status_code=202,
        headers={"X-Progress": progress, "Retry-After": str(RETRY_RUNNING_SECONDS)},
    )


async def cancel_export(request: Request) -> Response:
    """export.html#bulk-data-delete-request: 202, the job and its files are gone."""
    gate = authenticate(request, "export")
    job = _own_job(gate, request.path_params["job_id"])
    fhir = state(request)
    await run_in_threadpool(ExportJobs(fhir.repository.db).remove, job.job_id)
    await run_in_threadpool(remove_files, fhir.settings.data_dir, job.job_id)
    gate.record("export", 202, None, f"export {job.job_id} cancelled")
    return Response(status_code=202)


# -- files (export.html#file-request) ------------------------------------------------------------


async def export_file(request: Request) -> Response:
    """One NDJSON file, to the client that started the job with a token that may still
    export its type (requiresAccessToken: true)."""
    gate = authenticate(request, "export")
    job = _own_job(gate, request.path_params["job_id"])
    name = request.path_params["name"]
    rtype = file_type(job, name) if job.status == COMPLETED else None
    path = job_folder(state(request).settings.data_dir, job.job_id) / file_folder(job) / name
    if rtype is None or not _FILE_NAME.fullmatch(name) or not path.is_file():
        gate.record("export", 404, None, f"no file {name} in export {job.job_id}")
        raise not_found(f"Export {job.job_id} has no file {name}")
    claims = _export_claims(gate, rtype)
    if rtype != "OperationOutcome":
        decision = decide(claims, "export", rtype)
        if isinstance(decision, Deny):
            gate.record("export", 403, rtype, decision.reason)
            raise gate.forbidden(decision.reason)
    gate.record("export", 200, rtype, f"export {job.job_id}, file {name}", query=f"file={name}")
    return FileResponse(path, media_type=NDJSON_MEDIA_TYPE)


# Before the generic operation routes (fhir_server/api/routes.py), which they would match.
EXPORT_ROUTES: list[tuple[str, list[str], Any]] = [
    ("/fhir/$export", ["GET", "POST"], export_system),
    ("/fhir/Patient/$export", ["GET", "POST"], export_patients),
    ("/fhir/Group/{id}/$export", ["GET", "POST"], export_group),
    (f"/fhir/{STATUS_PATH}/{{job_id}}", ["GET"], export_status),
    (f"/fhir/{STATUS_PATH}/{{job_id}}", ["DELETE"], cancel_export),
    (f"/fhir/{FILE_PATH}/{{job_id}}/{{name}}", ["GET"], export_file),
]
