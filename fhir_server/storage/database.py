"""Engines for SQLite (embedded default) and PostgreSQL (scale path).

SQLite runs in WAL mode so readers never wait for the writer. Write transactions start
with ``BEGIN IMMEDIATE``: the write lock is taken up front, so two writers can never both
read "no match" and then both insert (conditional create, FHIR R4 http.html#ccreate), and
no transaction fails late on a lock upgrade. PostgreSQL runs at READ COMMITTED and the
repository takes advisory locks where uniqueness must hold.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool


@dataclass(frozen=True, slots=True)
class Database:
    url: str
    reader: Engine
    writer: Engine
    # Reads of one row by key (Repository.read); the reader itself where that costs nothing.
    point_reader: Engine | None = None

    @property
    def point(self) -> Engine:
        return self.point_reader or self.reader

    @property
    def dialect(self) -> str:
        return self.writer.dialect.name

    def dispose(self) -> None:
        self.reader.dispose()
        self.writer.dispose()
        if self.point_reader is not None:
            self.point_reader.dispose()


def open_database(url: str, *, pool_size: int = 8, busy_timeout_ms: int = 30_000) -> Database:
    """``busy_timeout_ms``: how long a SQLite writer waits for the write lock."""
    if make_url(url).get_backend_name() == "sqlite":
        return _open_sqlite(url, busy_timeout_ms)
    kwargs: dict[str, Any] = {
        "pool_size": pool_size,
        "max_overflow": pool_size,
        # psycopg prepares a statement server-side after five runs, and PostgreSQL may
        # then switch to a generic plan made without the values; for search that plan
        # drove the app's step-count query from the code (a million rows) instead of the
        # patient: 15-35 s instead of 4 ms (plan-cache skew, fhir-server-anchors.md 3.3).
        # Every statement is planned for its values instead.
        "connect_args": {"prepare_threshold": None},
        "pool_pre_ping": False,
    }
    engine = create_engine(url, **kwargs)
    # Single-statement reads by primary key need no transaction: in autocommit they skip
    # the BEGIN/ROLLBACK round trips a pooled connection would otherwise pay per read.
    point = create_engine(url, **kwargs, isolation_level="AUTOCOMMIT")
    return Database(url, engine, engine, point)


@contextmanager
def snapshot(conn: Connection) -> Iterator[None]:
    """Run the statements inside as reads of one state of the database (a search's page,
    its total and its includes).

    SQLite: the reader's transaction already is one (in WAL mode a read transaction sees
    the database as of its first read). PostgreSQL: a search connection is in autocommit
    (Repository.reading), where every statement sees the data as of its own start; here
    the statements share a REPEATABLE READ, READ ONLY transaction -- one snapshot for all
    of them, which, being read-only, never fails with a serialization error. (Under READ
    COMMITTED, as before, a row written between the page and the count could make them
    disagree.) A connection already inside a transaction (a Bundle's GET entries see its
    writes) is left as it is.
    """
    if conn.dialect.name != "postgresql" or not conn.connection.driver_connection.autocommit:
        yield
        return
    conn.exec_driver_sql("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
    try:
        yield
    except BaseException:
        # Best effort: should this fail too, the pool's reset on return rolls back.
        with suppress(DBAPIError):
            conn.exec_driver_sql("ROLLBACK")
        raise
    conn.exec_driver_sql("COMMIT")


def _open_sqlite(url: str, busy_timeout_ms: int) -> Database:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    reader = _sqlite_engine(url, begin="BEGIN", busy_timeout_ms=busy_timeout_ms)
    writer = _sqlite_engine(
        url,
        begin="BEGIN IMMEDIATE",
        busy_timeout_ms=busy_timeout_ms,
        wal_autocheckpoint=WRITER_AUTOCHECKPOINT_PAGES,
    )
    return Database(url, reader, writer)


# SQLite checkpoints the WAL inside whichever commit crosses the threshold (1,000 pages by
# default), so one writer in a thousand pays a checkpoint and its fsyncs while holding the
# write lock; bench/storage_limit.py measured insert+commit falling from 408 to 283 CPU-µs
# per resource without it. The writer's threshold is raised to a safety net and
# WalCheckpointer does the regular work off the commit path.
WRITER_AUTOCHECKPOINT_PAGES = 20_000


class WalCheckpointer:
    """A background thread that runs ``PRAGMA wal_checkpoint(PASSIVE)`` on its own
    connection every ``interval`` seconds (PASSIVE never waits for, or blocks, writers),
    and a TRUNCATE checkpoint when stopped."""

    def __init__(self, db: Database, interval: float = 1.0) -> None:
        import threading

        self._path = make_url(db.url).database or ""
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="wal-checkpointer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._checkpoint("TRUNCATE")

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self._checkpoint("PASSIVE")

    def _checkpoint(self, mode: str) -> None:
        import sqlite3

        try:
            with sqlite3.connect(self._path, timeout=5) as conn:
                conn.execute(f"PRAGMA wal_checkpoint({mode})")
            conn.close()
        except sqlite3.Error:
            # Busy or locked: the next round (or the writer's safety-net threshold) will do it.
            pass


def wal_checkpointer(db: Database) -> WalCheckpointer | None:
    """The checkpointer a process using ``db`` should run; None where none is needed."""
    if db.dialect != "sqlite" or ":memory:" in db.url:
        return None
    return WalCheckpointer(db)


def _sqlite_engine(
    url: str, *, begin: str, busy_timeout_ms: int, wal_autocheckpoint: int | None = None
) -> Engine:
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000},
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
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA temp_store=MEMORY")
        cursor.execute("PRAGMA cache_size=-65536")
        if wal_autocheckpoint is not None:
            cursor.execute(f"PRAGMA wal_autocheckpoint={int(wal_autocheckpoint)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql(begin)

    return engine
