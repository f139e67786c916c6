"""$reindex: rebuild the search index rows of stored resources (after a custom
SearchParameter was added, changed or retired).

``POST [base]/$reindex`` covers every resource, ``POST [base]/[type]/$reindex`` one type.
Resources are taken in primary-key order (one type: in last-updated order, through its
index), ``batch_size`` at a time (keyset paging, never OFFSET), each batch in its own short write transaction, so writers are held up for one
batch at most and a crash loses only the batch in progress (run it again: reindexing is
idempotent). The answer is an OperationOutcome with the counts, and a warning per custom
SearchParameter that was left out (search/custom.py says why).

FHIR R4 defines no ``$reindex``; HAPI's operation of that name is the model. It rewrites
index rows for the whole server, so once authorization exists it is for the admin role
only. It runs within the request (a 1.1 M-resource database takes minutes); when the job
worker exists it should become a job there.
"""

from __future__ import annotations

import time
from typing import Any

from fhir_server.errors import Issue, bad_request, operation_outcome
from fhir_server.storage.repository import Repository, WriteSession
from fhir_server.storage.search_sql import ReindexBatch, live_registry, reindex_batch

DEFAULT_BATCH = 500
MAX_BATCH = 5000


def batch_size(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_BATCH
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_BATCH:
        raise bad_request(f"batchSize={raw!r}: use a whole number from 1 to {MAX_BATCH}")
    return int(raw)


def reindex(repo: Repository, rtype: str | None, *, batch: int = DEFAULT_BATCH) -> dict[str, Any]:
    """Re-extract the index rows of every current resource (of ``rtype``); the counts as
    an OperationOutcome."""
    started = time.perf_counter()
    resources = rows = batches = 0
    after: tuple[int, int] | None = None
    problems: tuple[str, ...] = ()
    while True:

        def work(
            session: WriteSession, after: tuple[int, int] | None = after
        ) -> tuple[ReindexBatch, tuple[str, ...]]:
            reg = live_registry(session.conn)
            done = reindex_batch(session.conn, reg, rtype=rtype, after=after, limit=batch)
            return done, reg.problems

        done, problems = repo.write(work)
        if done.resources:
            batches += 1
        resources += done.resources
        rows += done.index_rows
        if done.after is None:
            break
        after = done.after
    seconds = time.perf_counter() - started
    scope = f"{rtype} resources" if rtype else "resources"
    issues = [
        Issue(
            "informational",
            f"Reindexed {resources} {scope}: {rows} index rows in {batches} batches of at most "
            f"{batch}, {seconds:.1f} s",
            "information",
        )
    ]
    issues += [Issue("not-supported", f"{p}; left out", "warning") for p in problems]
    return operation_outcome(issues)
