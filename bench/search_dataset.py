"""The search benchmark's dataset: Synthea replicated to >= 100,000 resources, plus
>= 1,000,000 daily step-count Observations (LOINC 41950-7) for >= 5,000 patients.

Rows are made with the server's own pure functions -- the Synthea bundles through
``bench/storage_limit.build_bundle`` (fresh ids, ``urn:uuid:`` references rewritten to
``Type/id``, ``extract_index_rows``, ``stamp``), the step data through
``fhir_server.search.extract_index_rows`` and ``fhir_server.versioning.stamp`` -- and
written straight into a database made by ``fhir_server.storage.migrate.upgrade``:

- the secondary indexes of ``resource``, ``resource_history`` and the ``sp_*`` tables are
  dropped first and rebuilt from ``fhir_server.storage.schema`` at the end (what a bulk
  load does; Aidbox ``$load`` does the same, fhir-server-anchors.md 3.2 item 6);
- SQLite: ``executemany`` on the raw ``sqlite3`` connection, ``synchronous=OFF`` while
  loading; no ``ANALYZE``, because the server never runs one: the search SQL must plan
  well without statistics (``--analyze`` to compare);
- PostgreSQL: ``COPY ... FROM STDIN`` through psycopg, then ``VACUUM ANALYZE`` (what
  autovacuum does soon after such a load; index-only scans need the visibility map).

Step data: patient ``i`` (0..patients-1) has ``days`` Observations, one per day ending
on ``LAST_DAY``, value 500..15,000 steps from a seeded generator; every step patient has
the identifier ``STEP_PATIENT_SYSTEM|step-<i>`` so the latency script can find them.

    .venv/bin/python bench/search_dataset.py                  # SQLite in a temp folder, kept
    .venv/bin/python bench/search_dataset.py --postgres       # PostgreSQL bench_search_* database, kept

It prints the database URL; hand it to ``bench/search_latency.py --database-url URL``.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402
import storage_limit  # noqa: E402

from fhir_server.search import extract_index_rows  # noqa: E402
from fhir_server.storage.database import open_database  # noqa: E402
from fhir_server.storage.migrate import upgrade  # noqa: E402
from fhir_server.storage.schema import INDEX_TABLES, metadata  # noqa: E402
from fhir_server.versioning import now_us, stamp  # noqa: E402

LOINC = "http://loinc.org"
STEPS_CODE = "41950-7"
STEP_PATIENT_SYSTEM = "https://selfback.example/bench/step-patient"
LAST_DAY = date(2025, 6, 30)
CHUNK = 20_000  # resources per write

RESOURCE_COLUMNS = ("pk", "rtype", "id", "version", "last_updated", "deleted", "body")
HISTORY_COLUMNS = ("res_pk", "rtype", "id", "version", "last_updated", "deleted", "method", "body")
INDEX_COLUMNS = {
    name: tuple(col.name for col in table.columns) for name, table in INDEX_TABLES.items()
}
BULK_TABLES = ("resource", "resource_history", *INDEX_TABLES)


class Rows:
    """One chunk of rows, as tuples in table column order."""

    def __init__(self) -> None:
        self.resource: list[tuple[Any, ...]] = []
        self.history: list[tuple[Any, ...]] = []
        self.index: dict[str, list[tuple[Any, ...]]] = {name: [] for name in INDEX_TABLES}

    def add(
        self,
        pk: int,
        rtype: str,
        id: str,
        last_updated: int,
        body: bytes,
        index: dict[str, list[dict[str, Any]]],
    ) -> None:
        self.resource.append((pk, rtype, id, 1, last_updated, False, body))
        self.history.append((pk, rtype, id, 1, last_updated, False, "POST", body))
        for name, rows in index.items():
            columns = INDEX_COLUMNS[name]
            out = self.index[name]
            for row in rows:
                full = {**row, "res_pk": pk, "rtype": rtype}
                out.append(tuple(full.get(col) for col in columns))

    def __len__(self) -> int:
        return len(self.resource)

    def index_count(self) -> int:
        return sum(len(v) for v in self.index.values())


# -- data ---------------------------------------------------------------------------------


def step_patient(i: int) -> dict[str, Any]:
    rng = random.Random(i)
    return {
        "resourceType": "Patient",
        "identifier": [{"system": STEP_PATIENT_SYSTEM, "value": f"step-{i}"}],
        "active": True,
        "name": [
            {
                "family": f"Walker{i % 997}",
                "given": [rng.choice(["Ann", "Bo", "Carl", "Dora", "Erik", "Freja"])],
            }
        ],
        "gender": rng.choice(["female", "male"]),
        "birthDate": f"{1950 + rng.randrange(50)}-{1 + rng.randrange(12):02d}-{1 + rng.randrange(28):02d}",
    }


def step_observation(patient_id: str, day: date, steps: int) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "activity",
                        "display": "Activity",
                    }
                ]
            }
        ],
        "code": {
            "coding": [
                {
                    "system": LOINC,
                    "code": STEPS_CODE,
                    "display": "Number of steps in 24 hour Measured",
                }
            ]
        },
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": day.isoformat(),
        "valueQuantity": {
            "value": steps,
            "unit": "steps/day",
            "system": "http://unitsofmeasure.org",
            "code": "/d",
        },
    }


def step_patient_id(i: int) -> str:
    return f"step-patient-{i:06d}"


def step_chunks(patients: int, days: int, first_pk: int) -> Iterator[Rows]:
    """Patients and their step Observations, CHUNK resources at a time."""
    pk = first_pk
    moment = now_us()
    rows = Rows()
    first_day = LAST_DAY - timedelta(days=days - 1)
    for i in range(patients):
        pid = step_patient_id(i)
        patient = step_patient(i)
        rows.add(
            pk, "Patient", pid, moment, stamp(patient, pid, 1, moment), extract_index_rows(patient)
        )
        pk += 1
        moment += 1
        rng = random.Random(100_000 + i)
        for d in range(days):
            oid = f"steps-{i:06d}-{d:04d}"
            obs = step_observation(pid, first_day + timedelta(days=d), rng.randrange(500, 15_000))
            rows.add(
                pk, "Observation", oid, moment, stamp(obs, oid, 1, moment), extract_index_rows(obs)
            )
            pk += 1
            moment += 1
        if len(rows) >= CHUNK:
            yield rows
            rows = Rows()
    if rows.resource:
        yield rows


def synthea_chunks(min_resources: int, first_pk: int) -> Iterator[Rows]:
    _copies, bundles = c.replicated(min_resources)
    timer = storage_limit.Timer()
    pk = first_pk
    rows = Rows()
    for text, _n in bundles:
        resources, index = storage_limit.build_bundle(text, timer)
        for row, tables in zip(resources, index, strict=True):
            rows.add(pk, row["rtype"], row["id"], row["last_updated"], row["body"], tables)
            pk += 1
        if len(rows) >= CHUNK:
            yield rows
            rows = Rows()
    if rows.resource:
        yield rows


# -- writers ------------------------------------------------------------------------------


def secondary_indexes() -> list[Any]:
    return [index for name in BULK_TABLES for index in metadata.tables[name].indexes]


class SqliteWriter:
    def __init__(self, db: Any, analyze: bool = False) -> None:
        self.db = db
        self.analyze = analyze
        self.raw = db.writer.raw_connection()
        self.conn = self.raw.driver_connection
        self.conn.isolation_level = None
        self.conn.execute("PRAGMA synchronous=OFF")
        self.placeholders = {
            "resource": self._insert("resource", RESOURCE_COLUMNS),
            "resource_history": self._insert("resource_history", HISTORY_COLUMNS),
            **{name: self._insert(name, cols) for name, cols in INDEX_COLUMNS.items()},
        }

    @staticmethod
    def _insert(table: str, columns: tuple[str, ...]) -> str:
        return (
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
        )

    def drop_indexes(self) -> None:
        for index in secondary_indexes():
            self.conn.execute(f"DROP INDEX IF EXISTS {index.name}")

    def write(self, rows: Rows) -> None:
        self.conn.execute("BEGIN")
        self.conn.executemany(self.placeholders["resource"], rows.resource)
        self.conn.executemany(self.placeholders["resource_history"], rows.history)
        for name, table_rows in rows.index.items():
            if table_rows:
                self.conn.executemany(self.placeholders[name], table_rows)
        self.conn.execute("COMMIT")

    def finish(self) -> None:
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.raw.close()
        with self.db.writer.connect() as conn:
            for index in secondary_indexes():
                index.create(conn)
            if self.analyze:
                conn.exec_driver_sql("ANALYZE")
            conn.commit()


class PostgresWriter:
    def __init__(self, url: str) -> None:
        import psycopg

        self.conn = psycopg.connect(
            url.replace("postgresql+psycopg://", "postgresql://"), autocommit=False
        )
        self.conn.execute("SET maintenance_work_mem = '1GB'")
        self.conn.execute("SET synchronous_commit = off")

    def drop_indexes(self) -> None:
        for index in secondary_indexes():
            self.conn.execute(f'DROP INDEX IF EXISTS "{index.name}"')
        self.conn.commit()

    def _copy(self, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
        with (
            self.conn.cursor() as cur,
            cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)

    def write(self, rows: Rows) -> None:
        self._copy("resource", RESOURCE_COLUMNS, rows.resource)
        self._copy("resource_history", HISTORY_COLUMNS, rows.history)
        for name, table_rows in rows.index.items():
            if table_rows:
                self._copy(name, INDEX_COLUMNS[name], table_rows)
        self.conn.commit()

    def finish(self) -> None:
        from sqlalchemy.dialects import postgresql
        from sqlalchemy.schema import CreateIndex

        self.conn.execute(
            "SELECT setval(pg_get_serial_sequence('resource', 'pk'), (SELECT max(pk) FROM resource))"
        )
        for index in secondary_indexes():
            self.conn.execute(str(CreateIndex(index).compile(dialect=postgresql.dialect())))
        self.conn.commit()
        self.conn.autocommit = True
        self.conn.execute("VACUUM ANALYZE")
        self.conn.close()


# -- main ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--postgres", action="store_true", help="PostgreSQL at 127.0.0.1:5432 instead of SQLite"
    )
    parser.add_argument(
        "--synthea-resources",
        type=int,
        default=100_000,
        help="replicate Synthea to at least this many",
    )
    parser.add_argument("--patients", type=int, default=5_000, help="step-count patients")
    parser.add_argument("--days", type=int, default=200, help="daily step Observations per patient")
    parser.add_argument("--analyze", action="store_true", help="SQLite: run ANALYZE at the end")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    info = c.print_machine()
    bench_db = c.fresh_database(args.postgres, "search", keep=True)
    url = c.sqlalchemy_url(bench_db.url)
    db = open_database(url)
    upgrade(db)
    writer: SqliteWriter | PostgresWriter = (
        SqliteWriter(db, args.analyze) if bench_db.kind == "sqlite" else PostgresWriter(url)
    )
    writer.drop_indexes()

    started = time.perf_counter()
    counts = {"synthea": 0, "steps": 0, "index_rows": 0}
    pk = 1
    for label, chunks in (
        ("synthea", lambda first: synthea_chunks(args.synthea_resources, first)),
        ("steps", lambda first: step_chunks(args.patients, args.days, first)),
    ):
        phase = time.perf_counter()
        for rows in chunks(pk):
            writer.write(rows)
            counts[label] += len(rows)
            counts["index_rows"] += rows.index_count()
            pk += len(rows)
        print(
            f"{label}: {counts[label]:,} resources in {time.perf_counter() - phase:.1f} s",
            flush=True,
        )
    load_s = time.perf_counter() - started
    phase = time.perf_counter()
    writer.finish()
    index_s = time.perf_counter() - phase
    db.dispose()
    total = counts["synthea"] + counts["steps"]
    print(
        f"dataset [{bench_db.kind}]: {total:,} resources ({counts['synthea']:,} Synthea, {counts['steps']:,} step "
        f"patients+Observations), {counts['index_rows']:,} index rows; load {load_s:.1f} s, indexes{' + analyze' if args.analyze or bench_db.kind != 'sqlite' else ''} {index_s:.1f} s",
        flush=True,
    )
    print(f"database: {url}", flush=True)
    if bench_db.kind != "sqlite":
        shutil.rmtree(bench_db.data_dir, ignore_errors=True)  # made by fresh_database, unused
    c.print_load("after")
    if args.json:
        print(
            orjson.dumps(
                {
                    "benchmark": "search_dataset",
                    "database": bench_db.kind,
                    "url": url,
                    **counts,
                    "load_s": round(load_s, 1),
                    "index_s": round(index_s, 1),
                    "machine": info,
                }
            ).decode()
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
