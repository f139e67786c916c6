"""The one interface between the interactions and the database.

Nothing here knows about HTTP. Reads go through the reader engine; every write -- one
interaction or one whole Bundle -- runs inside :meth:`Repository.write`, which is one
database transaction: it commits as a whole or not at all.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import (
    Connection,
    and_,
    bindparam,
    delete,
    exists,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError

from fhir_server.errors import conflict
from fhir_server.events.outbox import INSERT_EVENTS, event_row
from fhir_server.search import Registry, SearchQuery
from fhir_server.storage.database import Database
from fhir_server.storage.schema import INDEX_TABLES, resource, resource_history
from fhir_server.storage.search_sql import (
    SEARCH_REGISTRY_TTL_S,
    SearchRegistryCache,
    matching_pks,
)

T = TypeVar("T")

IndexRows = dict[str, list[dict[str, object]]]

# PostgreSQL errors worth retrying the whole unit of work for: serialization failure,
# deadlock detected, unique violation from a racing insert of the same (type, id).
_RETRYABLE_SQLSTATES = {"40001", "40P01", "23505"}
_MAX_ATTEMPTS = 4


@dataclass(frozen=True, slots=True)
class StoredResource:
    """One stored version: the canonical JSON bytes and the facts kept beside them."""

    rtype: str
    id: str
    version: int
    last_updated: int  # microseconds since the epoch, UTC
    deleted: bool
    body: bytes
    method: str = ""
    pk: int = 0


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    rtype: str | None = None
    id: str | None = None
    since: int | None = None  # _since: versions updated at or after (µs)
    at: tuple[int, int] | None = None  # _at: versions current at some point in [lo, hi]
    count: int = 20
    # keyset position: (last_updated, hpk) of the last entry on the previous page
    after: tuple[int, int] | None = None


class Repository:
    """``event_types``: the resource types whose writes leave an outbox event (the types
    some handler reacts to); ``on_events`` is called after a commit that left any.
    ``search_registry_ttl`` and ``clock``: how often searches check the stored
    SearchParameters (search_sql.SearchRegistryCache)."""

    def __init__(
        self,
        db: Database,
        *,
        event_types: frozenset[str] = frozenset(),
        on_events: Callable[[], None] | None = None,
        search_registry_ttl: float = SEARCH_REGISTRY_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.event_types = event_types
        self.on_events = on_events
        self._search_registry = SearchRegistryCache(search_registry_ttl, clock)
        marker = "%s" if db.reader.dialect.paramstyle in ("format", "pyformat") else "?"
        self._read_sql = (
            "SELECT pk, version, last_updated, deleted, body FROM resource "
            f"WHERE rtype = {marker} AND id = {marker}"
        )

    # -- reads -----------------------------------------------------------------------

    def read(self, rtype: str, id: str) -> StoredResource | None:
        """The hot path (read by id): one prebuilt statement on a pooled DBAPI connection,
        skipping SQLAlchemy's statement execution layer, which cost more than the query."""
        raw = self.db.point.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute(self._read_sql, (rtype, id))
            row = cursor.fetchone()
            cursor.close()
        finally:
            raw.close()  # back to the pool
        if row is None:
            return None
        pk, version, last_updated, deleted, body = row
        return StoredResource(rtype, id, version, last_updated, bool(deleted), bytes(body), "", pk)

    def vread(self, rtype: str, id: str, version: int) -> StoredResource | None:
        with self.db.reader.connect() as conn:
            return _version(conn, rtype, id, version)

    def history(self, query: HistoryQuery) -> list[tuple[StoredResource, tuple[int, int]]]:
        """Versions newest first, each with its keyset position for the next page."""
        h = resource_history
        conditions = []
        if query.rtype:
            conditions.append(h.c.rtype == query.rtype)
        if query.id:
            conditions.append(h.c.id == query.id)
        if query.since is not None:
            conditions.append(h.c.last_updated >= query.since)
        if query.at is not None:
            lo, hi = query.at
            later = h.alias("later")
            # current at some point in [lo, hi]: written no later than hi, and not
            # replaced by a newer version before lo (FHIR R4 http.html#history, _at).
            conditions.append(h.c.last_updated <= hi)
            conditions.append(
                ~exists().where(
                    later.c.rtype == h.c.rtype,
                    later.c.id == h.c.id,
                    later.c.version > h.c.version,
                    later.c.last_updated < lo,
                )
            )
        if query.after is not None:
            lu, hpk = query.after
            conditions.append(
                or_(h.c.last_updated < lu, and_(h.c.last_updated == lu, h.c.hpk < hpk))
            )
        stmt = (
            select(*_HISTORY_COLUMNS, h.c.hpk)
            .where(*conditions)
            .order_by(h.c.last_updated.desc(), h.c.hpk.desc())
            .limit(query.count)
        )
        with self.db.reader.connect() as conn:
            rows = conn.execute(stmt).all()
        return [(_history_row(row), (row.last_updated, row.hpk)) for row in rows]

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A read connection for the search engine.

        PostgreSQL: from the autocommit engine, as for reads by id -- a search of one
        statement is one round trip, with no BEGIN and COMMIT around it; statements that
        must agree run inside ``database.snapshot`` (search_sql.execute_search does).
        SQLite: a read transaction, one snapshot from its first read (it costs no round
        trip there)."""
        if self.db.point_reader is not None:
            with self.db.point_reader.connect() as conn:
                yield conn
            return
        with self.db.reader.connect() as conn, conn.begin():
            yield conn

    def search_registry(self, conn: Connection) -> Registry:
        """The search parameters in force for a search on ``conn``: the R4 core and the
        active custom SearchParameters, checked at most every ``search_registry_ttl``
        seconds (search_sql.SearchRegistryCache states the bound)."""
        return self._search_registry.registry(conn)

    # -- writes ----------------------------------------------------------------------

    def write(self, work: Callable[[WriteSession], T]) -> T:
        """Run ``work`` in one transaction; retry it whole on a lost race (PostgreSQL).

        ``work`` must be safe to run again: it may only touch the database through the
        session it is given, and a retry starts from a rolled-back state.
        """
        attempt = 0
        while True:
            attempt += 1
            try:
                with self.db.writer.connect() as conn, conn.begin():
                    session = WriteSession(conn, self.event_types)
                    result = work(session)
                    session.flush()
                if session.search_parameters_written:
                    # Searches in this process use the new parameters from now on.
                    self._search_registry.changed()
                if session.events_written and self.on_events is not None:
                    self.on_events()
                return result
            except (DBAPIError, IntegrityError) as exc:
                if _sqlstate(exc) in _RETRYABLE_SQLSTATES and attempt < _MAX_ATTEMPTS:
                    continue
                if _sqlstate(exc) in _RETRYABLE_SQLSTATES or _sqlite_busy(exc):
                    # Lost to concurrent writers for good: nothing was written, and the
                    # client may simply try again (http.html: 409 Conflict).
                    raise conflict(
                        "The write conflicted with concurrent writes and was not applied; retry it"
                    ) from exc
                raise


class WriteSession:
    """What an interaction may do inside a write transaction.

    New versions are buffered and written in bulk (one multi-row INSERT per table) when
    the session next reads or when the transaction ends: a 300-entry transaction makes a
    handful of statements instead of a thousand. Every read flushes first, so the session
    always sees its own writes.
    """

    def __init__(self, conn: Connection, event_types: frozenset[str] = frozenset()) -> None:
        self.conn = conn
        self._postgres = conn.dialect.name == "postgresql"
        self._event_types = event_types
        self._events: list[dict[str, object]] = []
        self.events_written = 0
        # A SearchParameter was created, updated or deleted (Repository.write tells the
        # search registry cache after the commit).
        self.search_parameters_written = False
        self._new: list[tuple[dict[str, object], dict[str, object], IndexRows]] = []
        self._history: list[dict[str, object]] = []
        self._index: dict[str, list[dict[str, object]]] = {name: [] for name in INDEX_TABLES}

    def read(self, rtype: str, id: str) -> StoredResource | None:
        self.flush()
        return _current(self.conn, rtype, id)

    def vread(self, rtype: str, id: str, version: int) -> StoredResource | None:
        self.flush()
        return _version(self.conn, rtype, id, version)

    def current(self, rtype: str, id: str) -> StoredResource | None:
        """The current version (deleted or not), locked against concurrent writers."""
        self.lock(f"{rtype}/{id}")
        return self.read(rtype, id)

    def lock(self, key: str) -> None:
        """Serialise writers on ``key`` until this transaction ends.

        SQLite: the transaction already holds the database write lock (BEGIN IMMEDIATE).
        PostgreSQL: a transaction-scoped advisory lock on a 64-bit hash of the key, the
        design in fhir-server-anchors.md 6.3, so conditional creates with the same criteria
        cannot both insert and no global SERIALIZABLE isolation is needed.
        """
        if self._postgres:
            digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
            self.conn.execute(_ADVISORY_LOCK, {"k": int.from_bytes(digest, "big", signed=True)})

    def find(self, query: SearchQuery, limit: int) -> list[StoredResource]:
        """Current resources matching a parsed search, at most ``limit`` of them."""
        self.flush()
        return self.resources_by_pk(matching_pks(self.conn, query, limit))

    def search_connection(self) -> Connection:
        """The transaction's connection, for a search inside it (GET entries of a Bundle),
        with everything written so far visible."""
        self.flush()
        return self.conn

    def resources_by_pk(self, pks: Sequence[int]) -> list[StoredResource]:
        if not pks:
            return []
        self.flush()
        rows = self.conn.execute(select(*_CURRENT_COLUMNS).where(resource.c.pk.in_(pks))).all()
        return [_current_row(row) for row in rows]

    def put(
        self,
        *,
        rtype: str,
        id: str,
        version: int,
        last_updated: int,
        body: bytes,
        method: str,
        deleted: bool = False,
        index_rows: IndexRows | None = None,
        previous: StoredResource | None = None,
    ) -> StoredResource:
        """Write a new version: the current row, a history row and the index rows.

        A brand-new resource is buffered until :meth:`flush` (its ``pk`` is not known
        before then, so the returned value carries pk 0); a new version of an existing
        resource updates the current row at once and buffers the rest.
        """
        values = {
            "version": version,
            "last_updated": last_updated,
            "deleted": deleted,
            "body": body,
        }
        history = {"rtype": rtype, "id": id, "method": method, **values}
        if rtype == "SearchParameter":
            self.search_parameters_written = True
        if rtype in self._event_types and not deleted:
            self._events.append(event_row(rtype, id, version, last_updated))
        if previous is None:
            self._new.append(({"rtype": rtype, "id": id, **values}, history, index_rows or {}))
            return StoredResource(rtype, id, version, last_updated, deleted, body, method, 0)
        pk = previous.pk
        self.conn.execute(_UPDATE_CURRENT, {"b_pk": pk, **{f"b_{k}": v for k, v in values.items()}})
        for statement in _DELETE_INDEX_ROWS:
            self.conn.execute(statement, {"b_pk": pk})
        self._buffer(pk, history, index_rows or {})
        return StoredResource(rtype, id, version, last_updated, deleted, body, method, pk)

    def flush(self) -> None:
        """Write everything buffered: the new resources in one multi-row INSERT with
        RETURNING (their pks), then history and index rows through the driver's own
        executemany with prebuilt SQL -- per row, SQLAlchemy's parameter processing cost
        more than the insert (bench/profile_ingest.py)."""
        if self._new:
            new, self._new = self._new, []
            if self._postgres and len(new) >= _COPY_MIN_ROWS:
                pks = self._copy_new([row for row, _, _ in new])
            else:
                pks = self.conn.execute(_INSERT_CURRENT, [row for row, _, _ in new]).scalars().all()
            for pk, (_, history, index_rows) in zip(pks, new, strict=True):
                self._buffer(pk, history, index_rows)
        sql = _driver_sql(self.conn)
        if self._history:
            rows, self._history = self._history, []
            self._insert(sql.history, "resource_history", _HISTORY_INSERT, rows)
        for name, rows in self._index.items():
            if rows:
                self._index[name] = []
                self._insert(sql.index[name], name, _INDEX_INSERT[name], rows)
        if self._events:
            events, self._events = self._events, []
            self.conn.execute(INSERT_EVENTS, events)
            self.events_written += len(events)

    def _insert(
        self, sql: str, table: str, columns: Sequence[str], rows: list[tuple[object, ...]]
    ) -> None:
        """Many rows into one table: the driver's executemany, or on PostgreSQL, from
        ``_COPY_MIN_ROWS`` rows on, one COPY -- with executemany every row is a statement
        of its own for the server (the audit trail's batches: bench/audit_trail_profile.py)."""
        if self._postgres and len(rows) >= _COPY_MIN_ROWS:
            self._copy(table, columns, rows)
        else:
            self.conn.exec_driver_sql(sql, rows)

    def _copy(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
        statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
        dbapi = self.conn.dialect.dbapi
        try:
            cursor = self.conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            with cursor, cursor.copy(statement) as copy:
                for row in rows:
                    copy.write_row(row)
        except dbapi.Error as exc:  # type: ignore[union-attr]
            # As SQLAlchemy would raise it: Repository.write retries or answers 409 on it.
            raise DBAPIError.instance(
                statement, None, exc, dbapi.Error, dialect=self.conn.dialect
            ) from exc

    def _copy_new(self, rows: list[dict[str, object]]) -> list[int]:
        """New current rows by COPY (PostgreSQL), with pks drawn from the column's own
        sequence first (COPY returns nothing), ascending in buffer order as RETURNING
        with sort_by_parameter_order gives them."""
        pks = sorted(self.conn.exec_driver_sql(_RESERVE_PKS, (len(rows),)).scalars().all())
        self._copy(
            "resource",
            _CURRENT_INSERT,
            [
                (pk, *[row[c] for c in _CURRENT_INSERT[1:]])
                for pk, row in zip(pks, rows, strict=True)
            ],
        )
        return pks

    def _buffer(self, pk: int, history: dict[str, object], index_rows: IndexRows) -> None:
        self._history.append(tuple(pk if c == "res_pk" else history[c] for c in _HISTORY_INSERT))
        rtype = history["rtype"]
        for name, rows in index_rows.items():
            values = _INDEX_VALUE_COLUMNS[name]
            buffer = self._index[name]
            for row in rows:
                buffer.append((pk, rtype, *[row.get(c) for c in values]))


class _DriverSql:
    """INSERT statements in the driver's own parameter style, built once per dialect."""

    def __init__(self, paramstyle: str) -> None:
        mark = "%s" if paramstyle in ("format", "pyformat") else "?"

        def insert_sql(table: str, columns: Sequence[str]) -> str:
            return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join([mark] * len(columns))})"

        self.history = insert_sql("resource_history", _HISTORY_INSERT)
        self.index = {
            name: insert_sql(name, ("res_pk", "rtype", *_INDEX_VALUE_COLUMNS[name]))
            for name in INDEX_TABLES
        }


_DRIVER_SQL: dict[str, _DriverSql] = {}


def _driver_sql(conn: Connection) -> _DriverSql:
    style = conn.dialect.paramstyle
    if style not in _DRIVER_SQL:
        _DRIVER_SQL[style] = _DriverSql(style)
    return _DRIVER_SQL[style]


_HISTORY_INSERT = ("res_pk", "rtype", "id", "version", "last_updated", "deleted", "method", "body")
_CURRENT_INSERT = ("pk", "rtype", "id", "version", "last_updated", "deleted", "body")
# PostgreSQL: buffered rows of one table from which COPY replaces executemany.
_COPY_MIN_ROWS = 64
_RESERVE_PKS = (
    "SELECT nextval(pg_get_serial_sequence('resource', 'pk')) FROM generate_series(1, %s)"
)
# The value columns of each index table, in table order (after res_pk, rtype).
_INDEX_VALUE_COLUMNS = {
    name: tuple(c.name for c in table.columns if c.name not in ("res_pk", "rtype"))
    for name, table in INDEX_TABLES.items()
}
_INDEX_INSERT = {
    name: ("res_pk", "rtype", *columns) for name, columns in _INDEX_VALUE_COLUMNS.items()
}


# Statements built once; executing a prebuilt statement skips SQLAlchemy's construction
# and cache-key work, which dominated bulk writes when each row built its own.
_ADVISORY_LOCK = text("SELECT pg_advisory_xact_lock(:k)")
_INSERT_CURRENT = insert(resource).returning(resource.c.pk, sort_by_parameter_order=True)
_UPDATE_CURRENT = (
    update(resource)
    .where(resource.c.pk == bindparam("b_pk"))
    .values(
        version=bindparam("b_version"),
        last_updated=bindparam("b_last_updated"),
        deleted=bindparam("b_deleted"),
        body=bindparam("b_body"),
    )
)
_DELETE_INDEX_ROWS = [
    delete(t).where(t.c.res_pk == bindparam("b_pk")) for t in INDEX_TABLES.values()
]


_CURRENT_COLUMNS = (
    resource.c.pk,
    resource.c.rtype,
    resource.c.id,
    resource.c.version,
    resource.c.last_updated,
    resource.c.deleted,
    resource.c.body,
)
_HISTORY_COLUMNS = (
    resource_history.c.res_pk,
    resource_history.c.rtype,
    resource_history.c.id,
    resource_history.c.version,
    resource_history.c.last_updated,
    resource_history.c.deleted,
    resource_history.c.body,
    resource_history.c.method,
)


def _current(conn: Connection, rtype: str, id: str) -> StoredResource | None:
    stmt = select(*_CURRENT_COLUMNS).where(resource.c.rtype == rtype, resource.c.id == id)
    row = conn.execute(stmt).first()
    return _current_row(row) if row else None


def _version(conn: Connection, rtype: str, id: str, version: int) -> StoredResource | None:
    stmt = select(*_HISTORY_COLUMNS).where(
        resource_history.c.rtype == rtype,
        resource_history.c.id == id,
        resource_history.c.version == version,
    )
    row = conn.execute(stmt).first()
    return _history_row(row) if row else None


def _current_row(row: object) -> StoredResource:
    return StoredResource(
        row.rtype,  # type: ignore[attr-defined]
        row.id,  # type: ignore[attr-defined]
        row.version,  # type: ignore[attr-defined]
        row.last_updated,  # type: ignore[attr-defined]
        bool(row.deleted),  # type: ignore[attr-defined]
        bytes(row.body),  # type: ignore[attr-defined]
        "",
        row.pk,  # type: ignore[attr-defined]
    )


def _history_row(row: object) -> StoredResource:
    return StoredResource(
        row.rtype,  # type: ignore[attr-defined]
        row.id,  # type: ignore[attr-defined]
        row.version,  # type: ignore[attr-defined]
        row.last_updated,  # type: ignore[attr-defined]
        bool(row.deleted),  # type: ignore[attr-defined]
        bytes(row.body),  # type: ignore[attr-defined]
        row.method,  # type: ignore[attr-defined]
        row.res_pk,  # type: ignore[attr-defined]
    )


def _sqlite_busy(exc: DBAPIError) -> bool:
    """SQLite gave up waiting for the write lock (busy_timeout passed)."""
    return "database is locked" in str(getattr(exc, "orig", exc))


def _sqlstate(exc: DBAPIError) -> str | None:
    orig = getattr(exc, "orig", None)
    return getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
