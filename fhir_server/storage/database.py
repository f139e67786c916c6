"""Engines for SQLite (embedded default) and PostgreSQL (scale path).

SQLite runs in WAL mode so readers never wait for the writer. Write transactions start
with ``BEGIN IMMEDIATE``: the write lock is taken up front, so two writers can never both
read "no match" and then both insert (conditional create, FHIR R4 http.html#ccreate), and
no transaction fails late on a lock upgrade. PostgreSQL runs at READ COMMITTED and the
repository takes advisory locks where uniqueness must hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool


@dataclass(frozen=True, slots=True)
class Database:
    url: str
    reader: Engine
    writer: Engine

    @property
    def dialect(self) -> str:
        return self.writer.dialect.name

    def dispose(self) -> None:
        self.reader.dispose()
        self.writer.dispose()


def open_database(url: str, *, pool_size: int = 8) -> Database:
    if make_url(url).get_backend_name() == "sqlite":
        return _open_sqlite(url)
    kwargs: dict[str, Any] = {
        "pool_size": pool_size,
        "max_overflow": pool_size,
        "pool_pre_ping": False,
    }
    engine = create_engine(url, **kwargs)
    return Database(url, engine, engine)


def _open_sqlite(url: str) -> Database:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    reader = _sqlite_engine(url, begin="BEGIN")
    writer = _sqlite_engine(url, begin="BEGIN IMMEDIATE")
    return Database(url, reader, writer)


def _sqlite_engine(url: str, *, begin: str) -> Engine:
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 30},
        poolclass=NullPool if ":memory:" in url else None,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's own handling
        # would defer it), per the SQLAlchemy pysqlite "serializable isolation" recipe.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA temp_store=MEMORY")
        cursor.execute("PRAGMA cache_size=-65536")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql(begin)

    return engine
