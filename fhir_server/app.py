"""The ASGI application: routes, error rendering, and start-up (migrate, load content)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from fhir_server.api.routes import ROUTES, error_response
from fhir_server.config import Settings
from fhir_server.content import load_programme_content
from fhir_server.errors import FhirError, error
from fhir_server.server_state import ServerState
from fhir_server.storage.database import open_database
from fhir_server.storage.migrate import upgrade
from fhir_server.storage.repository import Repository

log = logging.getLogger("selfback")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = (settings or Settings.from_env()).resolved()
    db = open_database(settings.database_url)
    upgrade(db)
    repository = Repository(db)
    if settings.load_content:
        counts = load_programme_content(repository, settings.base_url or "http://localhost/fhir")
        log.info("programme content: %s", counts)
    state = ServerState(settings, repository)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        db.dispose()

    app = FastAPI(
        title="SelfBack FHIR server",
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
        lifespan=lifespan,
    )
    app.state.fhir = state
    for path, methods, handler in ROUTES:
        app.add_api_route(path, handler, methods=methods, include_in_schema=True)

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
