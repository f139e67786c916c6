"""The bulk export job rows on SQLite and PostgreSQL: migration 0007, and the claims that
keep two server processes from running one job and let a job whose process died be taken
up again (fhir_server/export/jobs.py)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from fhir_server.export.jobs import ACCEPTED, COMPLETED, IN_PROGRESS, ExportJob, ExportJobs
from fhir_server.export.runner import MAX_ATTEMPTS, ExportRunner, job_folder
from fhir_server.interactions.create import create
from fhir_server.interactions.delete import delete
from fhir_server.storage.database import Database, open_database
from fhir_server.storage.migrate import alembic_config, upgrade
from fhir_server.storage.repository import Repository, WriteSession
from fhir_server.storage.tables import metadata
from fhir_server.versioning import now_us
from tests.conftest import drop_database, fresh_database_url

SECOND = 1_000_000
LEASE = 15 * SECOND


@pytest.fixture
def own_database(tmp_path: Path) -> Iterator[str]:
    url = fresh_database_url(tmp_path, "bulkjobs")
    yield url
    drop_database(url)


@pytest.fixture
def db(own_database: str) -> Iterator[Database]:
    database = open_database(own_database)
    upgrade(database)
    yield database
    database.dispose()


def new_job(job_id: str, client_id: str = "client-1", at: int = 1_000 * SECOND) -> ExportJob:
    return ExportJob(
        job_id=job_id,
        client_id=client_id,
        scope="system/*.rs",
        level="system",
        group_id=None,
        request="http://x/fhir/$export",
        parameters={"types": ["Patient"], "since": None},
        status=ACCEPTED,
        transaction_time=at,
        created_at=at,
    )


def test_migration_0007_matches_the_table_and_undoes_itself(own_database: str) -> None:
    database = open_database(own_database)
    try:
        assert upgrade(database, "0006") == "0006"
        with database.reader.connect() as conn:
            assert "bulk_export_job" not in inspect(conn).get_table_names()
        assert upgrade(database, "0007") == "0007"
        with database.reader.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "compare_type": True,
                    "include_object": lambda obj, name, kind, *_: (
                        (obj if kind == "table" else obj.table).name == "bulk_export_job"
                    ),
                },
            )
            assert compare_metadata(context, metadata) == []
        ExportJobs(database).add(new_job("a" * 32))
        config = alembic_config(database)
        with database.writer.connect() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0006")
            connection.commit()
        with database.reader.connect() as conn:
            assert "bulk_export_job" not in inspect(conn).get_table_names()
        assert upgrade(database, "0007") == "0007"
    finally:
        database.dispose()


def test_one_job_is_held_by_one_worker_until_its_claim_runs_out(db: Database) -> None:
    jobs = ExportJobs(db)
    jobs.add(new_job("j1"))
    now = 2_000 * SECOND
    first = jobs.claim("worker-a", now, LEASE)
    assert first is not None and first.status == IN_PROGRESS and first.attempts == 1
    assert jobs.claim("worker-b", now + SECOND, LEASE) is None
    assert jobs.renew("j1", "worker-a", now + 2 * LEASE, "Patient: 10 resources")
    assert jobs.get("j1").progress == "Patient: 10 resources"  # type: ignore[union-attr]
    # worker-a's process dies: nobody renews, and after the claim ran out worker-b runs it
    assert jobs.claim("worker-b", now + 2 * LEASE - 1, LEASE) is None
    again = jobs.claim("worker-b", now + 2 * LEASE + 1, LEASE)
    assert again is not None and again.attempts == 2
    assert not jobs.renew("j1", "worker-a", now + 3 * LEASE, "late")  # no longer a's
    assert not jobs.finish("j1", "worker-a", now=now, expires_at=now + LEASE, manifest={})


def test_a_released_job_is_taken_up_at_once_without_counting(db: Database) -> None:
    jobs = ExportJobs(db)
    jobs.add(new_job("j2"))
    now = 2_000 * SECOND
    assert jobs.claim("worker-a", now, LEASE) is not None
    jobs.release("j2", "worker-a")
    released = jobs.get("j2")
    assert released is not None and released.status == ACCEPTED and released.attempts == 0
    again = jobs.claim("worker-b", now + 1, LEASE)
    assert again is not None and again.attempts == 1


def test_finish_cancel_and_expiry(db: Database) -> None:
    jobs = ExportJobs(db)
    for job_id in ("done", "cancelled"):
        jobs.add(new_job(job_id, at=1_000 * SECOND if job_id == "done" else 1_001 * SECOND))
    now = 2_000 * SECOND
    assert jobs.unfinished("client-1") == 2
    done = jobs.claim("worker-a", now, LEASE)
    assert done is not None and done.job_id == "done"  # the oldest first
    manifest = {"output": [{"type": "Patient", "file": "Patient-1.ndjson", "count": 2}]}
    assert jobs.finish("done", "worker-a", now=now, expires_at=now + 10, manifest=manifest)
    finished = jobs.get("done")
    assert finished is not None and finished.status == COMPLETED
    assert finished.manifest == manifest and finished.expires_at == now + 10
    assert jobs.claim("worker-a", now, LEASE) is not None  # "cancelled"
    assert jobs.remove("cancelled")
    assert not jobs.renew("cancelled", "worker-a", now + LEASE, "gone")  # the worker stops
    assert not jobs.remove("cancelled")
    assert jobs.unfinished("client-1") == 0
    assert jobs.expired(now + 10) == []
    assert jobs.expired(now + 11) == ["done"]


# -- the worker, in-process on the same database -------------------------------------------------


def _store(repo: Repository) -> dict[str, str]:
    """Patients p1, p2 with an Observation each, a Practitioner, and a deleted Observation
    of p1."""
    now = now_us()

    def work(session: WriteSession) -> dict[str, str]:
        def add(resource: dict[str, Any]) -> str:
            stored = create(session, resource["resourceType"], resource, now=now).stored
            assert stored is not None
            return stored.id

        out = {"p1": add({"resourceType": "Patient"}), "p2": add({"resourceType": "Patient"})}
        for key in ("p1", "p2"):
            out[f"o{key[1]}"] = add(
                {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "steps"},
                    "subject": {"reference": f"Patient/{out[key]}"},
                }
            )
        out["practitioner"] = add({"resourceType": "Practitioner"})
        out["gone"] = add(
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "steps"},
                "subject": {"reference": f"Patient/{out['p1']}"},
            }
        )
        delete(session, "Observation", out["gone"], now=now)
        return out

    return repo.write(work)


def _job_of(job_id: str, level: str, parameters: dict[str, Any]) -> ExportJob:
    return replace(new_job(job_id, at=now_us() + SECOND), level=level, parameters=parameters)


def _exported(folder: Path, files: list[dict[str, Any]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for entry in files:
        lines = (folder / entry["file"]).read_bytes().splitlines()
        assert len(lines) == entry["count"]
        out.setdefault(entry["type"], set()).update(orjson.loads(line)["id"] for line in lines)
    return out


@pytest.mark.parametrize(
    ("level", "patients", "expected"),
    [
        ("system", [], {"Patient": ["p1", "p2"], "Observation": ["o1", "o2"],
                        "Practitioner": ["practitioner"]}),
        ("patient", [], {"Patient": ["p1", "p2"], "Observation": ["o1", "o2"]}),
        ("group", ["p1"], {"Patient": ["p1"], "Observation": ["o1"]}),
    ],
)  # fmt: skip
def test_the_worker_writes_each_levels_files_and_manifest(
    db: Database, tmp_path: Path, level: str, patients: list[str], expected: dict[str, list[str]]
) -> None:
    repo = Repository(db)
    made = _store(repo)
    parameters = {
        "types": [],
        "since": None,
        "type_filters": [],
        "patients": [made[p] for p in patients],
    }
    jobs = ExportJobs(db)
    jobs.add(_job_of("w" * 32, level, parameters))
    runner = ExportRunner(repo, tmp_path)
    assert runner.run_once()
    job = jobs.get("w" * 32)
    assert job is not None and job.status == COMPLETED and job.manifest is not None
    assert job.manifest["error"] == []
    folder = job_folder(tmp_path, job.job_id) / job.manifest["folder"]  # the worker's own
    found = _exported(folder, job.manifest["output"])
    assert found == {t: {made[k] for k in keys} for t, keys in expected.items()}


def test_a_job_interrupted_too_often_fails(db: Database, tmp_path: Path) -> None:
    repo = Repository(db)
    jobs = ExportJobs(db)
    jobs.add(_job_of("f" * 32, "system", {"types": ["Patient"]}))
    now = now_us()
    claimed = None
    for attempt in range(MAX_ATTEMPTS + 1):  # each holder died: the claim ran out
        claimed = jobs.claim(f"worker-{attempt}", now + attempt * 2 * LEASE, LEASE)
        assert claimed is not None
    assert claimed is not None and claimed.attempts == MAX_ATTEMPTS + 1
    runner = ExportRunner(repo, tmp_path)
    runner.name = f"worker-{MAX_ATTEMPTS}"  # the process now holding it
    runner.run(claimed)
    failed = jobs.get("f" * 32)
    assert failed is not None and failed.status == "failed"
    assert failed.failure and "interrupted" in failed.failure
    assert not job_folder(tmp_path, failed.job_id).exists()
