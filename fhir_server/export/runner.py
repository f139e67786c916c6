"""The export worker: one thread per server process that runs bulk export jobs off the
request path and writes their NDJSON files (export.html#response---complete-status).

It takes the oldest job nobody holds (ExportJobs.claim), reads it type by type, page by
page (selection.page), and writes ``<data dir>/exports/<job id>/<worker>/<Type>-<n>.ndjson``,
a new file every :data:`FILE_LIMIT` resources; then it stores the manifest. While it works
it renews its claim every few seconds and notes the progress (the ``X-Progress`` header);
a job whose row is gone was cancelled, and its files are removed. A job whose process
died is taken up again from the start by whichever process finds its claim run out, at
most :data:`MAX_ATTEMPTS` times; a process that shuts down hands its job back at once.
Finished jobs are removed, files and all, once they expire.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import orjson

from fhir_server.definitions import R4_RESOURCE_TYPES
from fhir_server.errors import FhirError, Issue, operation_outcome
from fhir_server.export.jobs import ExportJob, ExportJobs
from fhir_server.export.plan import export_claims, export_plan
from fhir_server.export.selection import START, TypeSelection, page
from fhir_server.formats.fhir_json import dump_fhir_json, parse_fhir_json
from fhir_server.polling import PollingWorker
from fhir_server.storage.repository import Repository
from fhir_server.versioning import now_us

log = logging.getLogger("selfback.export")

FILE_LIMIT = 10_000  # resources per NDJSON file
PAGE_SIZE = 1_000  # resources per read
# A Group's members are matched this many at a time: SQLite and PostgreSQL bound the
# number of values one statement may carry (32,766 and 65,535).
MEMBERS_PER_STATEMENT = 5_000
LEASE_SECONDS = 60.0  # a claim lasts this long unless renewed
RENEW_SECONDS = 3.0  # and is renewed this often while the job runs
EXPIRES_SECONDS = 24 * 3600  # files are kept this long after the job finished
MAX_ATTEMPTS = 3  # a job interrupted this often (its process died each time) fails
POLL_SECONDS = 5.0  # how often an idle worker looks for jobs other processes took in


class Cancelled(Exception):
    """The job's row is gone: its client cancelled it (DELETE on the status URL)."""


class ShuttingDown(Exception):
    """The server process is stopping: the job is handed back, to be run again."""


def job_folder(data_dir: Path, job_id: str) -> Path:
    return data_dir / "exports" / job_id


def remove_files(data_dir: Path, job_id: str) -> None:
    shutil.rmtree(job_folder(data_dir, job_id), ignore_errors=True)


def ndjson_line(body: bytes) -> bytes:
    """One resource as one NDJSON line (ndjson.org): stored bodies are compact JSON, so
    this is the body itself unless it somehow holds a line break."""
    if b"\n" in body or b"\r" in body:
        body = dump_fhir_json(parse_fhir_json(body))
    return body + b"\n"


class NdjsonFiles:
    """The files of one type: ``<Type>-1.ndjson``, ``<Type>-2.ndjson`` ... each at most
    ``limit`` lines; ``written`` lists (type, file name, count) of the non-empty ones."""

    def __init__(self, folder: Path, rtype: str, limit: int = FILE_LIMIT) -> None:
        self.folder = folder
        self.rtype = rtype
        self.limit = limit
        self.written: list[dict[str, Any]] = []
        self._file: IO[bytes] | None = None

    def add(self, line: bytes) -> None:
        if self._file is None or self.written[-1]["count"] >= self.limit:
            self.close()
            name = f"{self.rtype}-{len(self.written) + 1}.ndjson"
            self._file = (self.folder / name).open("wb")
            self.written.append({"type": self.rtype, "file": name, "count": 0})
        self._file.write(line)
        self.written[-1]["count"] += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def write_export(
    read_page: Callable[[TypeSelection, tuple[int, int], int], Sequence[Any]],
    selections: Sequence[TypeSelection],
    refused: dict[str, str],
    folder: Path,
    heartbeat: Callable[[str], None],
) -> dict[str, Any]:
    """Write every selection's resources and the refusals' OperationOutcomes; answers the
    manifest's file lists: {"output": [{type, file, count}], "error": [...]}."""
    folder.mkdir(parents=True, exist_ok=True)
    output: list[dict[str, Any]] = []
    total = 0
    for number, selection in enumerate(selections, 1):
        files = NdjsonFiles(folder, selection.rtype)
        try:
            for rows in _pages(read_page, selection):
                for row in rows:
                    files.add(ndjson_line(bytes(row.body)))
                total += len(rows)
                heartbeat(
                    f"{selection.rtype}: type {number} of {len(selections)}; "
                    f"{total} resources so far"
                )
        finally:
            files.close()
        output.extend(files.written)
        heartbeat(f"type {number} of {len(selections)} done; {total} resources so far")
    errors = NdjsonFiles(folder, "OperationOutcome")
    try:
        for _rtype, reason in sorted(refused.items()):
            outcome = operation_outcome([Issue("forbidden", reason, "error", ("_type",))])
            errors.add(orjson.dumps(outcome) + b"\n")
    finally:
        errors.close()
    return {"output": output, "error": errors.written}


def _pages(
    read_page: Callable[[TypeSelection, tuple[int, int], int], Sequence[Any]],
    selection: TypeSelection,
) -> Iterator[Sequence[Any]]:
    """The selection's rows page by page; a long list of Group members is read in slices,
    and a resource in the compartments of several slices is written once."""
    ids = selection.patient_ids
    slices = [selection]
    if selection.compartment and not selection.all_patients and len(ids) > MEMBERS_PER_STATEMENT:
        slices = [
            TypeSelection(
                selection.rtype,
                selection.criteria,
                selection.since_us,
                selection.until_us,
                compartment=True,
                patient_ids=ids[i : i + MEMBERS_PER_STATEMENT],
            )
            for i in range(0, len(ids), MEMBERS_PER_STATEMENT)
        ]
    seen: set[int] | None = set() if len(slices) > 1 else None
    for part in slices:
        after = START
        while True:
            rows = read_page(part, after, PAGE_SIZE)
            if not rows:
                break
            after = (rows[-1].last_updated, rows[-1].pk)
            if seen is not None:
                rows = [r for r in rows if r.pk not in seen]
                seen.update(r.pk for r in rows)
            yield rows


class ExportRunner(PollingWorker):
    """One process's export worker (started and stopped by the app's lifespan)."""

    def __init__(
        self,
        repo: Repository,
        data_dir: Path,
        *,
        poll_seconds: float = POLL_SECONDS,
        lease_seconds: float = LEASE_SECONDS,
    ) -> None:
        super().__init__("export", poll_seconds)
        self.repo = repo
        self.jobs = ExportJobs(repo.db)
        self.data_dir = data_dir
        self.lease_us = int(lease_seconds * 1_000_000)
        self._next_expiry = 0.0

    def run_once(self) -> bool:
        """Run one due job, if any; answers whether there was one."""
        now = now_us()
        if time.monotonic() >= self._next_expiry:
            self._next_expiry = time.monotonic() + 60
            for job_id in self.jobs.expired(now):
                self.jobs.remove(job_id)
                remove_files(self.data_dir, job_id)
        job = self.jobs.claim(self.name, now, self.lease_us)
        if job is None:
            return False
        self.run(job)
        return True

    def run(self, job: ExportJob) -> None:
        """Run a job this worker holds. It writes into a folder of its own inside the
        job's (``exports/<job>/<worker>/``): a worker that lost its claim without knowing
        it (a page slower than the lease) can then never mix its files with those of the
        worker that took the job over, and stops at its next renewal."""
        folder = job_folder(self.data_dir, job.job_id) / self.name
        shutil.rmtree(folder, ignore_errors=True)
        manifest: dict[str, Any] | None = None
        failure: str | None = None
        if job.attempts > MAX_ATTEMPTS:
            failure = f"The export was interrupted {job.attempts - 1} times (server restarts)"
        else:
            try:
                manifest = {**self._write(job, folder), "folder": self.name}
            except Cancelled:
                if self.jobs.get(job.job_id) is None:
                    remove_files(self.data_dir, job.job_id)  # cancelled: everything goes
                else:
                    shutil.rmtree(folder, ignore_errors=True)  # another worker has it now
                return
            except ShuttingDown:
                self.jobs.release(job.job_id, self.name)
                shutil.rmtree(folder, ignore_errors=True)
                return
            except FhirError as exc:
                failure = str(exc)
            # Whatever went wrong is told to the client as a failed job; the details
            # stay in the log (deliberately broad).
            except Exception:
                log.exception("export %s failed", job.job_id)
                failure = "The export failed on an internal error"
        now = now_us()
        finished = self.jobs.finish(
            job.job_id,
            self.name,
            now=now,
            expires_at=now + EXPIRES_SECONDS * 1_000_000,
            manifest=manifest,
            failure=failure,
        )
        if not finished:  # cancelled meanwhile, or taken over by another worker
            if self.jobs.get(job.job_id) is None:
                remove_files(self.data_dir, job.job_id)
            else:
                shutil.rmtree(folder, ignore_errors=True)
        elif failure is not None:
            remove_files(self.data_dir, job.job_id)  # a failed job keeps no files
        else:
            # What workers that died while holding the job left behind.
            for stale in job_folder(self.data_dir, job.job_id).iterdir():
                if stale.name != self.name:
                    shutil.rmtree(stale, ignore_errors=True)

    def _write(self, job: ExportJob, folder: Path) -> dict[str, Any]:
        claims = export_claims(job.client_id, job.scope)
        with self.repo.reading() as conn:
            reg = self.repo.search_registry(conn)
        selections, refused = export_plan(
            claims,
            job.level,
            job.parameters,
            transaction_time=job.transaction_time,
            all_types=R4_RESOURCE_TYPES,
            reg=reg,
            now_us=job.transaction_time,
        )
        renewed = time.monotonic()

        def heartbeat(progress: str) -> None:
            nonlocal renewed
            if self._stop.is_set():
                raise ShuttingDown(job.job_id)
            if time.monotonic() - renewed < RENEW_SECONDS:
                return
            renewed = time.monotonic()
            if not self.jobs.renew(job.job_id, self.name, now_us() + self.lease_us, progress):
                raise Cancelled(job.job_id)

        def read_page(
            selection: TypeSelection, after: tuple[int, int], limit: int
        ) -> Sequence[Any]:
            with self.repo.reading() as conn:
                return page(conn, selection, after=after, limit=limit)

        try:
            return write_export(read_page, selections, refused, folder, heartbeat)
        except OSError:
            # The folder vanished under us: a DELETE removed it. Anything else is a failure.
            if self.jobs.get(job.job_id) is None:
                raise Cancelled(job.job_id) from None
            raise
