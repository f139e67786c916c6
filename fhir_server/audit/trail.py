"""The audit trail: records in, stored AuditEvent resources out, off the request path.

``record`` appends to a bounded in-memory queue and returns (an ``append`` and a length
check, well under a microsecond); a background thread wakes every ``interval`` seconds,
or as soon as ``batch_size`` records wait, turns the records into AuditEvents
(:func:`fhir_server.audit.balp.audit_event`) and stores each batch in **one**
``Repository.write`` transaction, through the same ``write_version`` every FHIR write
uses, so AuditEvents are ordinary resources: versioned, indexed, searchable. A record
that names a resource but not its patients (the request path does not parse what it
need not) gets them here, from the stored version, before the AuditEvent is built (one
query per resource type for the whole batch). The index rows come from the builder
(:func:`fhir_server.audit.balp.index_rows`, proven equal to extraction) while the
AuditEvent search parameters in force are the R4 core ones. On SQLite
every write transaction takes the single write lock, so one transaction per batch rather
than per request is what keeps auditing from halving write throughput.

Durability (docs/AUTH.md, "Audit"): a record waits in memory for up to ``interval``
seconds (or until ``batch_size`` accumulate) before it is committed. A crash of the
process loses what was waiting; a batch that was committed is never lost. Stopping the
server (lifespan shutdown) drains the queue first. A full queue (the database cannot keep
up) drops new records rather than slowing the request, counts them and logs an error;
the count is logged again on shutdown and kept in :attr:`AuditTrail.stats`.

The trail's own writes go straight to the repository, in an empty context: they pass no
access decision and leave no record, so auditing never audits itself. AuditEvent is not an event type any
outbox handler reacts to (``fhir_server.events.handlers``); :meth:`AuditTrail.start`
refuses a repository configured otherwise.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from typing import Any

import orjson
from sqlalchemy import bindparam, select

from fhir_server.access.compartment import PATIENT_COMPARTMENT
from fhir_server.access.decision import compartment_patients
from fhir_server.audit.balp import ServerIdentity, audit_event, index_rows, patients_in_query
from fhir_server.audit.records import AccessRecord
from fhir_server.interactions.write import write_version
from fhir_server.search import Registry, registry
from fhir_server.search.extraction import Rows
from fhir_server.storage.repository import Repository, WriteSession
from fhir_server.storage.schema import resource_history
from fhir_server.storage.search_sql import live_registry
from fhir_server.versioning import new_id, now_us

log = logging.getLogger("selfback.audit")

_LOOKUP_CHUNK = 200  # resources per lookup query
_KNOWN_MAX = 20_000  # versions whose patients are remembered
_VERSIONS_SQL = select(
    resource_history.c.id, resource_history.c.version, resource_history.c.body
).where(
    resource_history.c.rtype == bindparam("rtype"),
    resource_history.c.id.in_(bindparam("ids", expanding=True)),
    resource_history.c.version.in_(bindparam("versions", expanding=True)),
)

AUDIT_EVENT = "AuditEvent"


@dataclass(frozen=True, slots=True)
class TrailStats:
    queued: int
    written: int
    dropped: int
    failed: int


class RecordQueue:
    """The request side of a trail: a bounded in-memory queue that ``record`` appends to
    and a background worker drains (:class:`AuditTrail` writes it in a thread,
    :class:`~fhir_server.audit.process.AuditProcess` hands it to a writer process).
    ``wake_at``: how many waiting records wake the worker before its interval is up."""

    def __init__(self, max_queue: int, wake_at: int) -> None:
        self.max_queue = max_queue
        self._wake_at = wake_at
        self._queue: deque[AccessRecord] = deque()
        self._wake = threading.Event()
        self._dropped = 0
        self._last_drop_log = 0.0

    def record(self, record: AccessRecord) -> None:
        """Queue one record. Never blocks, never raises."""
        try:
            queue = self._queue
            if len(queue) >= self.max_queue:
                self._drop()
                return
            queue.append(record)  # deque.append is atomic under the GIL
            if len(queue) >= self._wake_at:
                self._wake.set()
        except Exception:  # noqa: BLE001 - the request must never fail for the audit trail
            self._dropped += 1

    def _drop(self) -> None:
        self._dropped += 1
        now = time.monotonic()
        if now - self._last_drop_log >= 10.0:  # at most one error line per 10 s
            self._last_drop_log = now
            log.error(
                "audit queue full (%d records): AuditEvents are being dropped; %d dropped so far",
                self.max_queue,
                self._dropped,
            )

    @property
    def stats(self) -> TrailStats:
        raise NotImplementedError

    def _log_stopped(self) -> None:
        stats = self.stats
        if stats.dropped or stats.failed or stats.queued:
            log.error(
                "audit trail stopped: %d written, %d dropped (queue full), "
                "%d lost to write failures, %d still queued",
                stats.written,
                stats.dropped,
                stats.failed,
                stats.queued,
            )
        else:
            log.info("audit trail stopped: %d AuditEvents written", stats.written)


class AuditTrail(RecordQueue):
    """The :class:`~fhir_server.audit.records.AuditSink` that stores AuditEvents.

    ``max_queue``: records held in memory at most; ``batch_size``: records per write
    transaction; ``interval``: seconds between writes when fewer than a batch wait;
    ``attempts``: how often a failing batch is tried before it is dropped (and counted).
    """

    def __init__(
        self,
        repository: Repository,
        server: ServerIdentity,
        *,
        max_queue: int = 100_000,
        batch_size: int = 500,
        interval: float = 0.2,
        attempts: int = 3,
    ) -> None:
        super().__init__(max_queue, wake_at=batch_size)
        self.repository = repository
        self.server = server
        self.batch_size = batch_size
        self.interval = interval
        self.attempts = attempts
        self._stopping = threading.Event()
        self._writing = threading.Lock()  # one writer at a time: the thread or flush()
        self._thread: threading.Thread | None = None
        self._written = 0
        self._failed = 0
        # (type, id, version) -> the patients that stored version names (_stored_patients)
        self._known_patients: dict[tuple[str, str, int | None], tuple[str, ...]] = {}

    def accept(self, records: list[AccessRecord]) -> None:
        """Take records handed over whole (the writer process,
        :mod:`fhir_server.audit.writer`); they are written by the next :meth:`flush`."""
        self._queue.extend(records)

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        if AUDIT_EVENT in self.repository.event_types:
            raise ValueError("AuditEvent writes must not leave outbox events")
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="audit-trail", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Write everything queued, then stop the thread."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.flush()
        self._log_stopped()

    @property
    def stats(self) -> TrailStats:
        return TrailStats(len(self._queue), self._written, self._dropped, self._failed)

    # -- the writer ------------------------------------------------------------------

    def flush(self) -> int:
        """Write everything queued now, in batches; the number written. Safe to call from
        any thread (tests, shutdown)."""
        total = 0
        with self._writing:
            while self._queue:
                total += self._write_batch()
        return total

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - the thread must outlive any one failure
                log.exception("audit trail: unexpected error while writing")

    def _write_batch(self) -> int:
        batch: list[AccessRecord] = []
        queue = self._queue
        while queue and len(batch) < self.batch_size:
            batch.append(queue.popleft())
        try:
            batch = self._patients_for(batch)
        except Exception:  # noqa: BLE001 - enrichment is best effort; the records still count
            log.exception("audit trail: could not look up the patients of a batch")
        events: list[tuple[dict[str, Any], Rows]] = []
        for item in batch:
            try:
                event = audit_event(item, self.server)
                events.append((event, index_rows(event)))
            except Exception:  # noqa: BLE001 - one malformed record must not sink a batch
                self._failed += 1
                log.exception("audit trail: could not build an AuditEvent for %r", item)
        if not events:
            return 0

        def store(session: WriteSession) -> None:
            # The rows the builder made are the ones extraction would make under the R4
            # core AuditEvent parameters (tests/audit/test_audit_balp.py); with a custom
            # SearchParameter on AuditEvent in force, extraction makes them as for any write.
            direct = _core_audit_parameters(live_registry(session.conn))
            now = now_us()
            for event, rows in events:
                write_version(
                    session,
                    event,
                    id=new_id(),
                    now=now,
                    method="POST",
                    previous=None,
                    index_rows=rows if direct else None,
                )

        for attempt in range(1, self.attempts + 1):
            try:
                # An empty context: whatever request access (fhir_server.interactions.access)
                # is in force in the calling thread, the trail's writes are internal and pass
                # no access decision -- clients may never write AuditEvents, the server must.
                contextvars.Context().run(self.repository.write, store)
            except Exception:  # noqa: BLE001 - the database may be busy or gone
                if attempt == self.attempts:
                    self._failed += len(events)
                    log.exception("audit trail: %d AuditEvents could not be stored", len(events))
                    return 0
                time.sleep(0.05 * attempt)
                continue
            self._written += len(events)
            return len(events)
        return 0

    def _patients_for(self, batch: list[AccessRecord]) -> list[AccessRecord]:
        """Each record with the patients a search names in its query, or of the version it
        names, when the request path did not say (a read by a system client leaves the
        body unparsed to stay fast): BALP records the patient whenever one is known, and
        ``AuditEvent?patient=`` is how a patient's accesses are found. Done here, off the
        request path, with one query per resource type for the whole batch (a version's
        content never changes, so what it names is also remembered for later batches); a
        failure only leaves the records as they were."""
        out = list(batch)
        wanted: dict[tuple[str, str, int | None], list[int]] = {}
        for n, record in enumerate(batch):
            try:
                key = self._lookup_key(record)
                if key is None and record.query:
                    named = self._query_patients(record)
                    if named:
                        out[n] = replace(record, patient_ids=named)
                if key is not None:
                    wanted.setdefault(key, []).append(n)
            except Exception:  # noqa: BLE001 - a malformed record is left as it was
                continue
        if not wanted:
            return out
        try:
            found = self._stored_patients(list(wanted))
        except Exception:  # noqa: BLE001 - enrichment is best effort
            log.warning("audit trail: could not find the patients of %d resources", len(wanted))
            return out
        for key, positions in wanted.items():
            patients = found.get(key)
            if patients:
                for n in positions:
                    out[n] = replace(out[n], patient_ids=patients)
        return out

    @staticmethod
    def _query_patients(record: AccessRecord) -> tuple[str, ...]:
        """The patients a successful search names in its query, when the record says none."""
        if (
            record.query
            and not record.resource_id
            and not record.patient_ids
            and record.outcome < 400
        ):
            return patients_in_query(record.resource_type, record.query)
        return ()

    @staticmethod
    def _lookup_key(record: AccessRecord) -> tuple[str, str, int | None] | None:
        """(type, id, version) of a stored version whose patients the record should name."""
        rtype = record.resource_type
        if (
            record.patient_ids
            or record.outcome >= 400
            or not record.resource_id
            or rtype is None
            or rtype == AUDIT_EVENT
            or (rtype != "Patient" and rtype not in PATIENT_COMPARTMENT)
        ):
            return None
        return (rtype, record.resource_id, record.version)

    def _stored_patients(
        self, keys: list[tuple[str, str, int | None]]
    ) -> dict[tuple[str, str, int | None], tuple[str, ...]]:
        """The patients of each (type, id, version) stored; version None: the current one."""
        known = self._known_patients
        found = {key: known[key] for key in keys if key in known}
        versions: dict[str, dict[tuple[str, int], None]] = {}
        for key in keys:
            rtype, id, version = key
            if key in found:
                continue
            if version is None:  # rare (the routes say the version they served)
                stored = self.repository.read(rtype, id)
                if stored is not None and stored.body:
                    found[key] = tuple(sorted(compartment_patients(orjson.loads(stored.body))))
                continue
            versions.setdefault(rtype, {})[(id, version)] = None
        if versions:
            with self.repository.db.reader.connect() as conn:
                for rtype, pairs in versions.items():
                    items = list(pairs)
                    for start in range(0, len(items), _LOOKUP_CHUNK):
                        chunk = items[start : start + _LOOKUP_CHUNK]
                        # (rtype, id) is the prefix of the unique history index; the
                        # versions only filter, and anything extra is dropped below.
                        rows = conn.execute(
                            _VERSIONS_SQL,
                            {
                                "rtype": rtype,
                                "ids": sorted({id for id, _ in chunk}),
                                "versions": sorted({v for _, v in chunk}),
                            },
                        )
                        for row in rows:
                            key = (rtype, row.id, row.version)
                            if (row.id, row.version) in pairs and row.body:
                                found[key] = tuple(
                                    sorted(compartment_patients(orjson.loads(row.body)))
                                )
        for key in keys:
            if key[2] is not None and key in found:
                if len(known) >= _KNOWN_MAX:
                    known.clear()
                known[key] = found[key]
        return found


def _core_audit_parameters(reg: Registry) -> bool:
    """Whether the AuditEvent search parameters in force are exactly the R4 core ones."""
    core = registry()
    return reg is core or reg.for_type(AUDIT_EVENT) == core.for_type(AUDIT_EVENT)


class DisabledAudit:
    """The sink when auditing is switched off (``SELFBACK_AUDIT=off``): records nothing."""

    def record(self, record: AccessRecord) -> None:
        return None

    def start(self) -> None:
        return None

    def stop(self, timeout: float = 30.0) -> None:
        return None

    def flush(self) -> int:
        return 0
