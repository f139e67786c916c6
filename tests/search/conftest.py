"""The fixed search resources (search_db.py) in a fresh database: SQLite, and PostgreSQL
when it is reachable (SELFBACK_TEST_POSTGRES, default the local trust-auth server)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from search_db import drop_postgres, load, postgres_url
from sqlalchemy import Engine, create_engine

from fhir_server.storage.database import open_database


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def search_engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    """The fixed resources loaded into a fresh SQLite file or PostgreSQL database."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("search") / "search.sqlite"
        eng = create_engine(f"sqlite:///{path}")
        load(eng)
        yield eng
        eng.dispose()
        return
    url = postgres_url()
    if url is None:
        pytest.skip("PostgreSQL is not reachable")
    # The server's own engine settings (fhir_server.storage.database), not defaults.
    eng = open_database(url).writer
    try:
        load(eng)
        yield eng
    finally:
        eng.dispose()
        drop_postgres(url)
