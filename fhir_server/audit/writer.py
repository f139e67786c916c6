"""``python -m fhir_server.audit.writer``: the audit writer process.

Started by :class:`fhir_server.audit.process.AuditProcess`, never by hand. It reads frames
(records, ``flush``, ``stop``) on stdin, stores the records through an
:class:`~fhir_server.audit.trail.AuditTrail` on its own connection to the server's
database, and answers ``flush`` and ``stop`` on stdout with its counts. Anything else it
prints goes to stderr, so the frames stay intact. At end of file (the server is gone) it
writes what it has and exits.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import sys
from typing import IO

from fhir_server.audit.balp import ServerIdentity
from fhir_server.audit.process import (
    ENV_BATCH,
    ENV_DATABASE_URL,
    ENV_NAME,
    ENV_SITE,
    read_frame,
    write_frame,
)
from fhir_server.audit.trail import AuditTrail
from fhir_server.storage.database import open_database
from fhir_server.storage.repository import Repository

log = logging.getLogger("selfback.audit")


def _more_waiting(stream: IO[bytes]) -> bool:
    ready, _, _ = select.select([stream], [], [], 0)
    return bool(ready)


def serve(source: IO[bytes], sink: IO[bytes], trail: AuditTrail) -> None:
    """Read frames from ``source`` until ``stop`` or end of file. Records are written as
    soon as no more frames wait (or a batch is full), so they are batched by how the
    server sends them, not held back here."""
    while True:
        frame = read_frame(source)
        if frame is None:
            trail.flush()
            return
        kind, payload = frame
        if kind == "records":
            trail.accept(payload)
            if trail.stats.queued >= trail.batch_size or not _more_waiting(source):
                trail.flush()
            continue
        trail.flush()
        stats = trail.stats
        write_frame(sink, kind, {"written": stats.written, "failed": stats.failed})
        if kind == "stop":
            return


def main() -> int:
    # The frames go to the real stdout; anything printed by accident goes to stderr.
    sink = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    source = os.fdopen(0, "rb", buffering=0)  # unbuffered, so select() sees what waits
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server tells it when to stop
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s audit-writer: %(message)s"
    )
    db = open_database(os.environ[ENV_DATABASE_URL])
    try:
        # No outbox events: AuditEvents are not something any handler reacts to.
        repository = Repository(db, event_types=frozenset())
        trail = AuditTrail(
            repository,
            ServerIdentity(site=os.environ[ENV_SITE], name=os.environ[ENV_NAME]),
            batch_size=int(os.environ.get(ENV_BATCH, "500")),
        )
        serve(source, sink, trail)
    finally:
        db.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
