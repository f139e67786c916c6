"""The limit: how fast could the storage layer take the ingest data with no HTTP, no
interactions layer and no validation?

The same Synthea bundles as ``ingest.py``, replicated to the same size with fresh ids, are
turned into rows with the server's own pure functions -- ids assigned first so every
``urn:uuid:`` reference becomes ``Type/id``, then ``fhir_server.search.extract_index_rows``
and ``fhir_server.versioning.stamp`` -- and inserted straight into a fresh database made by
``fhir_server.storage.migrate.upgrade``, with SQLAlchemy Core ``executemany`` (resource,
resource_history and the sp_* tables), one transaction per bundle.

Two runs, each into its own fresh database:

1. end to end: parse + assign ids/rewrite references + extract index rows + stamp + insert,
   timed per stage;
2. pre-computed: every row is built first (not timed) and only the inserts are timed.

``--server-rate X`` (resources/s from ingest.py on the same database kind) adds the ratio
server / limit. Validation (``fhir_server.validation.validate_resource``, which the
server runs on every create) is not part of the limit; its cost is measured on the side
over one copy and printed per resource.

    .venv/bin/python bench/storage_limit.py
    .venv/bin/python bench/storage_limit.py --postgres --server-rate 1234
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402

from fhir_server.storage.database import open_database  # noqa: E402
from fhir_server.storage.migrate import upgrade  # noqa: E402
from fhir_server.storage.schema import INDEX_TABLES, resource, resource_history  # noqa: E402
from fhir_server.versioning import new_id, now_us, stamp  # noqa: E402

try:  # the package's public name, once search/__init__ exports it
    from fhir_server.search import extract_index_rows  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - while the search package is being finished
    from fhir_server.search.extraction import extract_index_rows

from sqlalchemy import insert  # noqa: E402

WAL_AUTOCHECKPOINT: int | None = None
STAGES = ("parse", "ids+references", "extract", "stamp", "rows", "insert+commit")
_COLUMNS = {name: tuple(col.name for col in table.columns) for name, table in INDEX_TABLES.items()}
_INSERT_RESOURCE = insert(resource).returning(resource.c.pk, sort_by_parameter_order=True)
_INSERT_HISTORY = insert(resource_history)
_INSERT_INDEX = {name: insert(table) for name, table in INDEX_TABLES.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL at 127.0.0.1:5432 instead of SQLite")
    parser.add_argument("--min-resources", type=int, default=50_000)
    parser.add_argument("--server-rate", type=float, help="ingest.py resources/s to compare with")
    parser.add_argument("--max-seconds", type=float, default=240, help="stop each run after this (default 240)")
    parser.add_argument("--wal-autocheckpoint", type=int, help="SQLite only: PRAGMA wal_autocheckpoint for the writer (experiment; the server uses the default, 1000 pages)")
    parser.add_argument("--json", action="store_true", help="also print one JSON line with the figures")
    args = parser.parse_args(argv)

    info = c.print_machine()
    copies, _ = c.replicated(args.min_resources)
    texts = c.load_texts()
    # warm the extractors' compiled plans and imports so the first bundle is not penalised
    for text, _n in texts[:2]:
        for entry in orjson.loads(text)["entry"]:
            extract_index_rows(entry["resource"])

    global WAL_AUTOCHECKPOINT
    WAL_AUTOCHECKPOINT = args.wal_autocheckpoint
    if WAL_AUTOCHECKPOINT is not None:
        print(f"experiment: PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT} on the writer connections", flush=True)
    full = run_end_to_end(args.postgres, texts, copies, args.max_seconds)
    report("end to end (parse, ids, extract, stamp, insert)", full, args)
    pre = run_precomputed(args.postgres, texts, copies, args.max_seconds)
    report("pre-computed rows (insert + commit only)", pre, args)
    validation_us = measure_validation(texts)
    print(
        f"validation on the side (not in the limit): validate_resource {validation_us:,.1f} CPU us/resource "
        f"over one copy ({sum(n for _, n in texts)} resources) -> {1e6 / validation_us:,.0f} resources/s on one core",
        flush=True,
    )
    c.print_load("after")
    if args.json:
        print(orjson.dumps({"benchmark": "storage_limit", "end_to_end": full, "precomputed": pre,
                            "validation_us_per_resource": round(validation_us, 1), "machine": info}).decode())
    return 0 if full["complete"] and pre["complete"] else 1


def report(label: str, result: dict, args: argparse.Namespace) -> None:
    rate = result["resources_per_s"]
    print(
        f"limit [{result['database']}] {label}: {result['resources']} resources, {result['index_rows']} index rows, "
        f"{result['bundles']} transactions in {result['seconds']} s -> {rate:,.1f} resources/s",
        flush=True,
    )
    total = sum(result["stages"].values()) or 1.0
    cpu_total = sum(result["cpu_stages"].values()) or 1.0
    n = max(result["resources"], 1)
    print(f"    {'stage':<16} {'wall s':>8} {'wall %':>7} {'CPU s':>8} {'CPU %':>7} {'CPU us/resource':>16}", flush=True)
    for stage, seconds in result["stages"].items():
        cpu = result["cpu_stages"].get(stage, 0.0)
        print(
            f"    {stage:<16} {seconds:8.2f} {seconds / total * 100:6.1f}% {cpu:8.2f} {cpu / cpu_total * 100:6.1f}% {cpu / n * 1e6:16.1f}",
            flush=True,
        )
    if result["database"] == "postgresql":
        pg = result["cpu"]["postgres_cpu_s"]
        print(f"    {'(PostgreSQL)':<16} {'':>8} {'':>7} {pg:8.2f} {'':>7} {pg / n * 1e6:16.1f}", flush=True)
    print(f"    {result['resources_per_cpu_s']:,.1f} resources per CPU-second (this process + PostgreSQL backends)", flush=True)
    print("    " + result["cpu_text"], flush=True)
    if args.server_rate:
        print(f"    server / limit = {args.server_rate:,.1f} / {rate:,.1f} = {args.server_rate / rate:.3f}", flush=True)
    if not result["complete"]:
        print(f"    stopped at --max-seconds {args.max_seconds}", flush=True)


# -- building rows ------------------------------------------------------------------------


def _rewrite(node: Any, by_url: dict[str, str]) -> Any:
    """A copy with every Reference.reference to a bundle fullUrl replaced by Type/id (the
    same walk as the transaction's reference rewriting)."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                out[key] = by_url.get(value, value)
            else:
                out[key] = _rewrite(value, by_url)
        return out
    if isinstance(node, list):
        return [_rewrite(item, by_url) for item in node]
    return node


class Timer:
    """Wall time (``stages``) and this process's CPU time (``cpu``) per stage. The CPU
    figures hold up when other processes share the machine; the wall figures do not."""

    def __init__(self) -> None:
        self.stages: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self.reset()

    def reset(self) -> None:
        self._t = time.perf_counter()
        self._c = time.process_time()

    def lap(self, stage: str) -> None:
        now, cpu = time.perf_counter(), time.process_time()
        self.stages[stage] += now - self._t
        self.cpu[stage] += cpu - self._c
        self._t, self._c = now, cpu


def build_bundle(text: str, timer: Timer) -> tuple[list[dict], list[dict[str, list[dict]]]]:
    """(resource rows without pk, per resource the index rows per table with all columns)."""
    bundle = orjson.loads(text)
    timer.lap("parse")
    entries = bundle.get("entry") or []
    assigned: list[tuple[str, str]] = []
    by_url: dict[str, str] = {}
    for entry in entries:
        rtype = entry["resource"]["resourceType"]
        id = new_id()
        assigned.append((rtype, id))
        if entry.get("fullUrl"):
            by_url[entry["fullUrl"]] = f"{rtype}/{id}"
    resources = [_rewrite(entry["resource"], by_url) for entry in entries]
    timer.lap("ids+references")
    extracted = [extract_index_rows(r) for r in resources]
    timer.lap("extract")
    now = now_us()
    bodies = [stamp(r, id, 1, now) for r, (_, id) in zip(resources, assigned, strict=True)]
    timer.lap("stamp")
    rows = [
        {"rtype": rtype, "id": id, "version": 1, "last_updated": now, "deleted": False, "body": body}
        for (rtype, id), body in zip(assigned, bodies, strict=True)
    ]
    index = [
        {name: [{col: row.get(col) for col in _COLUMNS[name] if col not in ("res_pk", "rtype")} for row in table_rows]
         for name, table_rows in per.items() if table_rows}
        for per in extracted
    ]
    timer.lap("rows")
    return rows, index


def insert_bundle(db: Any, rows: list[dict], index: list[dict[str, list[dict]]]) -> int:
    """One transaction: resource rows (RETURNING pk), history rows, index rows."""
    with db.writer.connect() as conn, conn.begin():
        pks = conn.execute(_INSERT_RESOURCE, rows).scalars().all()
        conn.execute(_INSERT_HISTORY, [{**row, "res_pk": pk, "method": "POST"} for row, pk in zip(rows, pks, strict=True)])
        per_table: dict[str, list[dict]] = defaultdict(list)
        for row, pk, tables in zip(rows, pks, index, strict=True):
            for name, table_rows in tables.items():
                rtype = row["rtype"]
                per_table[name].extend({**r, "res_pk": pk, "rtype": rtype} for r in table_rows)
        count = 0
        for name, table_rows in per_table.items():
            conn.execute(_INSERT_INDEX[name], table_rows)
            count += len(table_rows)
    return count


# -- runs ---------------------------------------------------------------------------------


def _fresh(postgres: bool, label: str) -> tuple[c.BenchDatabase, Any]:
    bench_db = c.fresh_database(postgres, label)
    db = open_database(c.sqlalchemy_url(bench_db.url))
    if WAL_AUTOCHECKPOINT is not None and db.dialect == "sqlite":
        from sqlalchemy import event

        @event.listens_for(db.writer, "connect")
        def _pragma(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.execute(f"PRAGMA wal_autocheckpoint={int(WAL_AUTOCHECKPOINT)}")

    revision = upgrade(db)
    from sqlalchemy import inspect

    if not inspect(db.writer).has_table("resource"):
        # Only while the project has no migration yet: say so loudly, and make the tables.
        from fhir_server.storage.schema import metadata

        print(f"WARNING: migrate.upgrade (revision {revision}) made no tables; used metadata.create_all", flush=True)
        metadata.create_all(db.writer)
    return bench_db, db


def run_end_to_end(postgres: bool, texts: list[tuple[str, int]], copies: int, max_seconds: float) -> dict:
    bench_db, db = _fresh(postgres, "limit")
    try:
        timer = Timer()
        resources = bundles = index_rows = 0
        complete = True
        meter = c.CpuMeter(None, bench_db.url).start()
        started = time.perf_counter()
        for _copy in range(copies):
            for text, _n in texts:
                if time.perf_counter() - started > max_seconds:
                    complete = False
                    break
                fresh = c.fresh_copy(text)  # making the copy is the benchmark's own cost
                timer.reset()
                rows, index = build_bundle(fresh, timer)
                index_rows += insert_bundle(db, rows, index)
                timer.lap("insert+commit")
                resources += len(rows)
                bundles += 1
        meter.stop()
        seconds = sum(timer.stages.values())
        return _result(bench_db.kind, resources, bundles, index_rows, seconds, timer.stages, complete, meter, timer.cpu)
    finally:
        db.dispose()
        bench_db.drop()


def run_precomputed(postgres: bool, texts: list[tuple[str, int]], copies: int, max_seconds: float) -> dict:
    prepared = []
    scratch = Timer()
    for _copy in range(copies):
        for text, _n in texts:
            prepared.append(build_bundle(c.fresh_copy(text), scratch))
    gc.collect()
    gc.freeze()  # millions of prepared row dicts would otherwise make every full GC pass slow
    bench_db, db = _fresh(postgres, "limitpre")
    try:
        resources = bundles = index_rows = 0
        complete = True
        meter = c.CpuMeter(None, bench_db.url).start()
        started, cpu_started = time.perf_counter(), time.process_time()
        for rows, index in prepared:
            if time.perf_counter() - started > max_seconds:
                complete = False
                break
            index_rows += insert_bundle(db, rows, index)
            resources += len(rows)
            bundles += 1
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        meter.stop()
        return _result(
            bench_db.kind, resources, bundles, index_rows, seconds, {"insert+commit": seconds}, complete, meter,
            {"insert+commit": cpu},
        )
    finally:
        db.dispose()
        bench_db.drop()


def _result(
    kind: str,
    resources: int,
    bundles: int,
    index_rows: int,
    seconds: float,
    stages: dict,
    complete: bool,
    meter: c.CpuMeter,
    cpu_stages: dict,
) -> dict:
    cpu_total = sum(cpu_stages.values()) + meter.result.get("postgres_cpu_s", 0.0)
    return {
        "database": kind,
        "resources": resources,
        "bundles": bundles,
        "index_rows": index_rows,
        "seconds": round(seconds, 2),
        "resources_per_s": round(resources / seconds, 1) if seconds else 0.0,
        "stages": {s: round(stages[s], 3) for s in STAGES if s in stages},
        "cpu_stages": {s: round(cpu_stages[s], 3) for s in STAGES if s in cpu_stages},
        # resources per CPU-second of this process plus our PostgreSQL backends
        "resources_per_cpu_s": round(resources / cpu_total, 1) if cpu_total else 0.0,
        "complete": complete,
        "cpu": meter.result,
        "cpu_text": meter.describe(client="this process"),
    }


def measure_validation(texts: list[tuple[str, int]]) -> float:
    from fhir_server.validation import validate_resource

    resources = [e["resource"] for text, _ in texts for e in orjson.loads(text)["entry"]]
    one_per_type = {r["resourceType"]: r for r in resources}
    for r in one_per_type.values():  # warm the per-class tables
        validate_resource(r, expected_type=r["resourceType"])
    started = time.process_time()
    for r in resources:
        validate_resource(r, expected_type=r["resourceType"])
    return (time.process_time() - started) / len(resources) * 1e6


if __name__ == "__main__":
    raise SystemExit(main())
