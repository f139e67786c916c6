"""The audit trail in a writer process of its own (fhir_server.audit.process, the
default for ``selfback serve``): the same AuditEvents as the thread writes, drained on
stop, written at end of file when the server is gone, and a dead writer replaced. Runs
against a real database (SQLite, or PostgreSQL with SELFBACK_TEST_DB=postgresql)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from fhir_server.audit import AuditProcess
from fhir_server.audit.process import (
    ENV_BATCH,
    ENV_DATABASE_URL,
    ENV_NAME,
    ENV_SITE,
    write_frame,
)
from fhir_server.storage.repository import Repository
from fhir_server.validation import validate_resource
from tests.audit.test_audit_trail import SERVER, a_read, stored_events, wait_for

pytestmark = pytest.mark.db


@pytest.fixture
def url(own_database: str, repository: Repository) -> str:
    return own_database  # migrated by the repository fixture, as the server does on start


def test_records_become_the_same_auditevents_as_the_thread_writes(
    url: str, repository: Repository
) -> None:
    sink = AuditProcess(url, SERVER, interval=3600.0)
    sink.start()
    try:
        for n in range(25):
            sink.record(a_read(n, patient=f"p{n % 3}"))
        assert sink.flush() == 25
        events = [body for _, body in stored_events(repository)]
        assert len(events) == 25
        for event in events:
            validate_resource(event, expected_type="AuditEvent")
        whats = {e["entity"][0]["what"]["reference"] for e in events}
        assert whats == {f"Observation/o{n}/_history/1" for n in range(25)}
        assert {e["entity"][1]["what"]["reference"] for e in events} == {
            "Patient/p0",
            "Patient/p1",
            "Patient/p2",
        }
        assert sink.stats.written == 25 and sink.stats.queued == 0
    finally:
        sink.stop()


def test_the_sender_thread_hands_records_over_without_a_flush(
    url: str, repository: Repository
) -> None:
    sink = AuditProcess(url, SERVER, interval=0.05)
    sink.start()
    try:
        for n in range(4):
            sink.record(a_read(n))
        wait_for(lambda: len(stored_events(repository)) == 4, timeout=30)
    finally:
        sink.stop()


def test_stop_writes_what_was_queued_and_ends_the_writer(
    url: str, repository: Repository
) -> None:
    sink = AuditProcess(url, SERVER, interval=3600.0)
    sink.start()
    writer = sink._writer
    assert writer is not None
    for n in range(12):
        sink.record(a_read(n))
    assert stored_events(repository) == []  # queued in this process: interval not reached
    sink.stop()
    assert len(stored_events(repository)) == 12
    assert writer.poll() == 0
    stats = sink.stats
    assert (stats.written, stats.queued, stats.failed, stats.dropped) == (12, 0, 0, 0)


def test_a_writer_that_dies_is_replaced_and_the_loss_is_counted(
    url: str, repository: Repository
) -> None:
    sink = AuditProcess(url, SERVER, interval=3600.0, restart_after=0.0)
    sink.start()
    try:
        sink.record(a_read(1))
        assert sink.flush() == 1
        first = sink._writer
        assert first is not None
        first.send_signal(signal.SIGKILL)
        first.wait()
        for n in range(2, 6):
            sink.record(a_read(n))
        assert sink.flush() == 4  # a new writer took them
        assert sink._writer is not None and sink._writer.pid != first.pid
        assert len(stored_events(repository)) == 5
        assert sink.stats.written == 5 and sink.stats.failed == 0
    finally:
        sink.stop()


def test_the_writer_stores_what_it_has_when_the_server_is_gone(
    url: str, repository: Repository
) -> None:
    """End of file on its stdin (the server process died): write, then exit cleanly."""
    env = {
        **os.environ,
        ENV_DATABASE_URL: url,
        ENV_SITE: SERVER.site,
        ENV_NAME: SERVER.name,
        ENV_BATCH: "2",
    }
    writer = subprocess.Popen(
        [sys.executable, "-m", "fhir_server.audit.writer"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
    )
    assert writer.stdin is not None
    write_frame(writer.stdin, "records", [a_read(n) for n in range(5)])
    writer.stdin.close()
    assert writer.wait(60) == 0
    assert len(stored_events(repository)) == 5


def test_records_wait_while_no_writer_can_be_started(url: str, repository: Repository) -> None:
    """Within ``restart_after`` of the last start a dead writer is not restarted: records
    stay queued (nothing lost) until one is."""
    sink = AuditProcess(url, SERVER, interval=3600.0, restart_after=3600.0)
    sink.start()
    try:
        writer = sink._writer
        assert writer is not None
        writer.kill()
        writer.wait()
        sink.record(a_read(1))
        assert sink.flush() == 0
        assert sink.stats.queued == 1
        sink.restart_after = 0.0
        assert sink.flush() == 1
        assert len(stored_events(repository)) == 1
    finally:
        sink.stop()
