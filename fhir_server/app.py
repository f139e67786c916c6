"""The ASGI application: routes, error rendering, and start-up (migrate, load content)."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from fhir_server.api.limits import request_line_refusal
from fhir_server.api.openapi import openapi_document
from fhir_server.api.refusals import RefusalLimiter
from fhir_server.api.routes import ROUTES, error_response
from fhir_server.audit import AuditProcess, AuditTrail, ServerIdentity
from fhir_server.audit.coalesce import CoalescingAudit
from fhir_server.config import Settings
from fhir_server.content import load_programme_content
from fhir_server.cors import Cors
from fhir_server.errors import FhirError, error
from fhir_server.events.handlers import handlers_for
from fhir_server.events.worker import OutboxWorker
from fhir_server.export.routes import EXPORT_ROUTES
from fhir_server.export.runner import ExportRunner
from fhir_server.server_state import ServerState
from fhir_server.storage.database import open_database, wal_checkpointer
from fhir_server.storage.migrate import upgrade
from fhir_server.storage.repository import Repository

log = logging.getLogger("selfback")


def create_app(settings: Settings | None = None) -> FhirFirst:
    settings = (settings or Settings.from_env()).resolved()
    db = open_database(settings.database_url)
    upgrade(db)
    handlers, topic_handlers = handlers_for(settings)
    repository = Repository(db, event_types=frozenset(handlers))
    worker = OutboxWorker(repository, handlers, topic_handlers=topic_handlers)
    repository.on_events = worker.wake
    if settings.load_content:
        counts = load_programme_content(repository, settings.base_url or "http://localhost/fhir")
        log.info("programme content: %s", counts)
    state = ServerState(settings, repository)
    # Bulk Data $export jobs run in this thread, off the request path (fhir_server/export,
    # docs/BULK_EXPORT.md); jobs live in the database, so any process may run them.
    exports = state.exports = ExportRunner(repository, settings.data_dir)
    if settings.auth == "none":
        log.warning(
            "\n%s\n  AUTHORIZATION IS OFF (--auth none / SELFBACK_AUTH=none): every request "
            "is served as an ADMIN.\n  For local experiments only; requests from other "
            "hosts than loopback are refused.\n%s",
            "!" * 78,
            "!" * 78,
        )
    if settings.audit:
        # The audit trail (fhir_server.audit, docs/AUTH.md "Audit"): records are queued by
        # the request and written in batches by a writer process (or a thread) started
        # below, so building and storing AuditEvents never holds this process's GIL.
        identity = ServerIdentity(site=settings.base_url or socket.gethostname())
        if settings.audit_writer == "process":
            state.audit = AuditProcess(settings.database_url, identity)
        else:
            state.audit = AuditTrail(repository, identity)
        # A flood of refusals makes a handful of AuditEvents, not one each
        # (fhir_server/audit/coalesce.py, docs/DEPLOYMENT.md "Limits").
        state.audit = CoalescingAudit(
            state.audit, window=settings.refusal_window, detail=settings.refusal_audit_detail
        )
    state.refusals = RefusalLimiter(settings.refusal_limit, settings.refusal_window)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        checkpointer = wal_checkpointer(db)
        if checkpointer is not None:
            checkpointer.start()
        if settings.events_worker:
            worker.start()
        state.audit.start()
        exports.start()
        yield
        exports.stop()
        state.audit.stop()  # drains the queue: what was recorded is written before exit
        worker.stop()
        if checkpointer is not None:
            checkpointer.stop()
        db.dispose()

    app = FastAPI(
        title="SelfBack FHIR server",
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
        lifespan=lifespan,
    )
    app.state.fhir = state
    # The FHIR routes are plain Starlette routes FastAPI's generator cannot see: the
    # document is built from their table (fhir_server/api/openapi.py).
    document = openapi_document()
    app.openapi = lambda: document  # type: ignore[method-assign]
    # --- SMART authorization server (fhir_server.auth, docs/AUTH.md): /auth/*,
    # /fhir/.well-known/*, POST /fhir/Patient/{id}/$activation-code; app.state.auth ---
    from fhir_server.auth.routes import mount_auth

    mount_auth(app, state)
    # Plain Starlette routes: every FHIR handler takes the Request and returns a Response,
    # so FastAPI's dependency resolution per request would be pure overhead.
    for path, methods, handler in [*EXPORT_ROUTES, *ROUTES]:  # $export before operations
        app.router.routes.append(Route(path, handler, methods=methods))

    @app.exception_handler(FhirError)
    async def _fhir_error(request: Request, exc: FhirError) -> Response:
        return error_response(exc, request)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> Response:
        code = "not-found" if exc.status_code == 404 else "not-supported"
        detail = f"{request.method} {request.url.path}: {exc.detail}"
        return error_response(error(exc.status_code, code, detail), request)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        # A bug of ours, never a client's fault: say so without leaking internals.
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(error(500, "exception", "Internal server error"), request)

    @app.get("/healthz", include_in_schema=False)
    async def _health() -> dict[str, str]:
        return {"status": "ok"}

    return FhirFirst(app, fhir_only_app(app))


def fhir_only_app(app: FastAPI) -> Starlette:
    """The ``/fhir`` routes again, in a plain Starlette app without FastAPI's per-request
    middleware (its telemetry, body-limit and exit-stack layers cost about as much CPU as
    a read by id itself; docs/BENCHMARKS.md). Same routes, same order, same handlers and
    the same state, so behaviour is identical; FastAPI keeps /auth, /docs and the
    lifespan."""
    routes = [r for r in app.router.routes if isinstance(r, Route) and _is_fhir(r.path)]
    fhir = Starlette(routes=routes, exception_handlers=dict(app.exception_handlers))
    fhir.state.fhir = app.state.fhir
    fhir.state.auth = app.state.auth
    return fhir


def _is_fhir(path: str) -> bool:
    return path == "/fhir" or path.startswith("/fhir/")


class FhirFirst:
    """ASGI: HTTP requests under ``/fhir`` go to the plain FHIR app, everything else
    (including the lifespan) to FastAPI. ``app.state`` etc. are FastAPI's. CORS wraps
    both (fhir_server/cors.py), so every /fhir and /auth path gets the same rules."""

    def __init__(self, app: FastAPI, fhir: Starlette) -> None:
        self.app = app
        self.fhir = fhir
        self.outer = Cors(self._route, app.state.auth.origins)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.outer(scope, receive, send)

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _is_fhir(scope["path"]):
            # URL length and forbidden characters, before any route (fhir_server/api/limits.py)
            refused = request_line_refusal(scope, self.app.state.fhir.settings)
            if refused is not None:
                await error_response(refused, Request(scope))(scope, receive, send)
                return
            await self.fhir(scope, receive, send)
        else:
            await self.app(scope, receive, send)
