"""The ASGI application: routes, error rendering, and start-up (migrate, load content)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fhir_server.api.routes import ROUTES, error_response
from fhir_server.config import Settings
from fhir_server.content import load_programme_content
from fhir_server.errors import FhirError, error
from fhir_server.events.handlers import HANDLERS
from fhir_server.events.worker import OutboxWorker
from fhir_server.server_state import ServerState
from fhir_server.storage.database import open_database, wal_checkpointer
from fhir_server.storage.migrate import upgrade
from fhir_server.storage.repository import Repository

log = logging.getLogger("selfback")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = (settings or Settings.from_env()).resolved()
    db = open_database(settings.database_url)
    upgrade(db)
    repository = Repository(db, event_types=frozenset(HANDLERS))
    worker = OutboxWorker(repository, HANDLERS)
    repository.on_events = worker.wake
    if settings.load_content:
        counts = load_programme_content(repository, settings.base_url or "http://localhost/fhir")
        log.info("programme content: %s", counts)
    state = ServerState(settings, repository)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        checkpointer = wal_checkpointer(db)
        if checkpointer is not None:
            checkpointer.start()
        if settings.events_worker:
            worker.start()
        yield
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
    # --- SMART authorization server (fhir_server.auth, docs/AUTH.md): /auth/*,
    # /fhir/.well-known/*, POST /fhir/Patient/{id}/$activation-code; app.state.auth ---
    from fhir_server.auth.routes import mount_auth

    mount_auth(app, state)
    # Plain Starlette routes: every FHIR handler takes the Request and returns a Response,
    # so FastAPI's dependency resolution per request would be pure overhead.
    for path, methods, handler in ROUTES:
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

    return app
