"""The audit trail written by a process of its own (the default for ``selfback serve``).

Why a process and not a thread: turning a record into a stored AuditEvent costs about
200-300 µs of Python and driver work (docs/BENCHMARKS.md, "audit trail write"), as much
as serving a read by id. In a thread of the server process that work holds the GIL in
the process that answers requests, which was where the p99 of reads under load came from
(404 ms on PostgreSQL with the thread, 51 ms without auditing). Here the server process
only queues the record (``record``: an append), and a sender thread pickles what waited
(2-7 µs a record) and writes it to the writer's stdin; the writer
(``python -m fhir_server.audit.writer``) runs the same :class:`~fhir_server.audit.trail.AuditTrail`
against its own connection to the same database, so the AuditEvents are the same ordinary,
searchable resources as before.

The pipe between the two carries frames: a 4-byte big-endian length, then a pickle of
``(kind, payload)``. The server sends ``records`` (a list of AccessRecords), ``flush``
(write everything sent so far, then answer) and ``stop``; the writer answers only
``flush`` and ``stop``, with its counts, so a reply is always the answer to the one
question asked. Pickle is safe here: both ends are this code, started by this code, and
nothing else can write to the pipe.

Durability is as with the thread (docs/AUTH.md, "Audit"): a record waits up to
``interval`` seconds in the server process, then in the pipe and the writer until its
batch commits. Stopping the server drains both. If the server process dies, the writer
reads end-of-file, writes what it has and exits. If the writer dies, the records in
flight are counted as failed and logged, and a new writer is started (at most once every
``restart_after`` seconds).
"""

from __future__ import annotations

import logging
import os
import pickle
import select
import struct
import subprocess
import sys
import threading
import time
from typing import IO, Any

from fhir_server.audit.balp import ServerIdentity
from fhir_server.audit.records import AccessRecord
from fhir_server.audit.trail import RecordQueue, TrailStats

log = logging.getLogger("selfback.audit")

HEADER = struct.Struct(">I")
# The environment variables that hand the writer its database and identity (not argv, so
# a password in the database URL does not show in the process list).
ENV_DATABASE_URL = "SELFBACK_AUDIT_WRITER_DATABASE_URL"
ENV_SITE = "SELFBACK_AUDIT_WRITER_SITE"
ENV_NAME = "SELFBACK_AUDIT_WRITER_NAME"
ENV_BATCH = "SELFBACK_AUDIT_WRITER_BATCH"


def write_frame(stream: IO[bytes], kind: str, payload: Any) -> None:
    data = pickle.dumps((kind, payload), protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(HEADER.pack(len(data)))
    stream.write(data)
    stream.flush()


def read_frame(stream: IO[bytes]) -> tuple[str, Any] | None:
    """The next frame, or None at end of file."""
    head = _read_exactly(stream, HEADER.size)
    if head is None:
        return None
    (size,) = HEADER.unpack(head)
    data = _read_exactly(stream, size)
    if data is None:
        return None
    kind, payload = pickle.loads(data)
    return kind, payload


def _read_exactly(stream: IO[bytes], size: int) -> bytes | None:
    chunks: list[bytes] = []
    left = size
    while left:
        chunk = stream.read(left)
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


class AuditProcess(RecordQueue):
    """The :class:`~fhir_server.audit.records.AuditSink` whose AuditEvents a writer process
    stores. The same interface and statistics as :class:`~fhir_server.audit.trail.AuditTrail`.

    ``max_queue``: records held in this process at most (more are dropped and counted);
    ``interval``: seconds between sends when fewer than ``send_size`` wait;
    ``batch_size``: records per write transaction in the writer.
    """

    def __init__(
        self,
        database_url: str,
        server: ServerIdentity,
        *,
        max_queue: int = 100_000,
        batch_size: int = 500,
        send_size: int = 1_000,
        interval: float = 0.2,
        reply_timeout: float = 60.0,
        restart_after: float = 5.0,
    ) -> None:
        super().__init__(max_queue, wake_at=send_size)
        self.database_url = database_url
        self.server = server
        self.batch_size = batch_size
        self.send_size = send_size
        self.interval = interval
        self.reply_timeout = reply_timeout
        self.restart_after = restart_after
        self._stopping = threading.Event()
        self._pipe = threading.Lock()  # one conversation with the writer at a time
        self._thread: threading.Thread | None = None
        self._writer: subprocess.Popen[bytes] | None = None
        self._started_at = 0.0
        self._lost = 0  # sent to a writer that died before answering for them
        self._unanswered = 0  # sent since the writer last reported its counts
        self._written_before = 0  # written by writers that have since been replaced
        self._failed_before = 0
        self._writer_written = 0
        self._writer_failed = 0

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        with self._pipe:
            self._spawn()
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="audit-sender", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Send and write everything queued, then stop the writer."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        with self._pipe:
            self._send_queued()
            self._ask("stop")
            writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.wait(timeout)
            except subprocess.TimeoutExpired:
                log.error("audit writer did not stop within %.0f s; killing it", timeout)
                writer.kill()
                writer.wait()
        self._log_stopped()

    @property
    def stats(self) -> TrailStats:
        return TrailStats(
            queued=len(self._queue) + self._unanswered,
            written=self._written_before + self._writer_written,
            dropped=self._dropped,
            failed=self._failed_before + self._writer_failed + self._lost,
        )

    def flush(self) -> int:
        """Send everything queued and wait until the writer has stored it; the number of
        AuditEvents it stored meanwhile. For tests and shutdown."""
        with self._pipe:
            before = self.stats.written
            self._send_queued()
            self._ask("flush")
            return max(0, self.stats.written - before)

    # -- the sender thread -------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            try:
                with self._pipe:
                    self._send_queued()
            except Exception:  # noqa: BLE001 - the thread must outlive any one failure
                log.exception("audit trail: unexpected error while sending records")

    # -- talking to the writer (callers hold self._pipe) --------------------------------------

    def _spawn(self) -> None:
        env = {
            **os.environ,
            ENV_DATABASE_URL: self.database_url,
            ENV_SITE: self.server.site,
            ENV_NAME: self.server.name,
            ENV_BATCH: str(self.batch_size),
        }
        self._writer = subprocess.Popen(
            [sys.executable, "-m", "fhir_server.audit.writer"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            close_fds=True,
            # Its own process group: a Ctrl-C or a group-wide SIGTERM meant for the server
            # must not kill the writer before the server has handed it what is queued; it
            # ends when told to, or at end of file when the server is gone.
            start_new_session=True,
        )
        self._started_at = time.monotonic()
        self._writer_written = 0
        self._writer_failed = 0
        self._unanswered = 0

    def _writer_gone(self, why: BaseException | str) -> None:
        """The writer died: what it was sent and did not report is lost; start another."""
        writer, self._writer = self._writer, None
        self._written_before += self._writer_written
        self._failed_before += self._writer_failed
        self._lost += self._unanswered
        if self._unanswered:
            log.error(
                "audit writer ended unexpectedly (%s); %d records in flight are lost",
                why,
                self._unanswered,
            )
        else:
            log.error("audit writer ended unexpectedly (%s)", why)
        self._writer_written = self._writer_failed = self._unanswered = 0
        if writer is not None:
            writer.kill()
            writer.wait()

    def _ensure_writer(self) -> bool:
        if self._writer is not None and self._writer.poll() is None:
            return True
        if self._writer is not None:
            self._writer_gone(f"exit code {self._writer.returncode}")
        if self._stopping.is_set() and self._thread is None:
            return False
        if time.monotonic() - self._started_at < self.restart_after:
            return False
        self._spawn()
        return True

    def _send_queued(self) -> None:
        queue = self._queue
        while queue:
            if not self._ensure_writer():
                return  # they wait (up to max_queue) until a writer is back
            batch: list[AccessRecord] = []
            while queue and len(batch) < self.send_size:
                batch.append(queue.popleft())
            writer = self._writer
            assert writer is not None and writer.stdin is not None
            try:
                write_frame(writer.stdin, "records", batch)
            except (OSError, ValueError) as exc:
                self._unanswered += len(batch)
                self._writer_gone(exc)
                return
            self._unanswered += len(batch)

    def _ask(self, kind: str) -> None:
        """Send ``flush`` or ``stop`` and take the writer's counts from its answer."""
        writer = self._writer
        if writer is None or writer.poll() is not None:
            if writer is not None:
                self._writer_gone(f"exit code {writer.returncode}")
            return
        assert writer.stdin is not None and writer.stdout is not None
        try:
            write_frame(writer.stdin, kind, None)
            ready, _, _ = select.select([writer.stdout], [], [], self.reply_timeout)
            reply = read_frame(writer.stdout) if ready else None
        except (OSError, ValueError, EOFError, pickle.UnpicklingError) as exc:
            self._writer_gone(exc)
            return
        if reply is None:
            self._writer_gone("no answer")
            return
        _, counts = reply
        self._writer_written = counts["written"]
        self._writer_failed = counts["failed"]
        self._unanswered = 0
        if kind == "stop":
            for stream in (writer.stdin, writer.stdout):
                stream.close()
