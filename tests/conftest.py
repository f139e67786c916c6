"""Shared fixtures: a database per test run (SQLite or PostgreSQL, chosen by
SELFBACK_TEST_DB) and the real server started over HTTP against it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = (ROOT / ".." / "shared").resolve()
TEST_DB = os.environ.get("SELFBACK_TEST_DB", "sqlite")
POSTGRES_ADMIN = os.environ.get(
    "SELFBACK_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)

needs_shared = pytest.mark.skipif(not SHARED.exists(), reason="../shared reference data is absent")

# Fixtures that touch a database; tests using them form the PostgreSQL pass (-m db).
_DB_FIXTURES = {"database_url", "server", "fhir", "cli_database", "own_database"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _DB_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.db)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "db: uses a database (run again on PostgreSQL)")


def fresh_database_url(tmp_path: Path, label: str) -> str:
    """A new, empty database of the kind this run tests."""
    if TEST_DB == "sqlite":
        return f"sqlite:///{tmp_path / (label + '.sqlite')}"
    import psycopg

    name = f"selfback_{label}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN.rsplit("/", 1)[0]
    return f"{base}/{name}"


def drop_database(url: str) -> None:
    if TEST_DB == "sqlite":
        return
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = fresh_database_url(tmp_path_factory.mktemp("db"), "session")
    yield url
    drop_database(url)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RunningServer:
    def __init__(self, url: str, process: subprocess.Popen[bytes], log: Path) -> None:
        self.url = url
        self.process = process
        self.log = log

    @property
    def fhir(self) -> str:
        return self.url + "/fhir"


def start_server(database_url: str, data_dir: Path, **env: str) -> RunningServer:
    """A real server on 127.0.0.1. The REST tests run it with ``SELFBACK_AUTH=none`` (every
    request an admin; loopback only, docs/AUTH.md); the authorization tests pass
    ``SELFBACK_AUTH="smart"``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = data_dir / "server.log"
    environment = {
        **os.environ,
        "SELFBACK_AUTH": "none",
        "SELFBACK_DATABASE_URL": database_url,
        "SELFBACK_DATA_DIR": str(data_dir),
        **env,
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "fhir_server.asgi:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=environment,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return RunningServer(url, process, log)
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"server did not start: {log.read_text()}")


def stop_server(server: RunningServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(10)
    except subprocess.TimeoutExpired:
        server.process.kill()


@pytest.fixture(scope="session")
def server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        database_url,
        tmp_path_factory.mktemp("server"),
        SELFBACK_MAX_BODY_BYTES=str(2 * 1024 * 1024),
    )
    yield running
    stop_server(running)


@pytest.fixture
def fhir(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.fhir, timeout=120) as client:
        yield client
