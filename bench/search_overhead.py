"""Where the CPU of one search goes, in process, phase by phase: parse -> plan -> SQL
build -> compile -> execute -> Bundle, for the queries of bench/search_latency.py (the
patient app's step query, the clinician ``_has`` and chain queries, ``_include``).

A small dataset is loaded into a fresh SQLite file in a temp folder (one copy of the
Synthea bundles, ``--patients`` step patients with ``--days`` daily step Observations,
through bench/search_dataset.py's generators and writer), then each query runs
``--warmup`` times and ``--runs`` times measured. Each phase is timed on its own with
``time.process_time`` (CPU of this process: SQLite runs in this thread, so it is the
search's own cost whatever else the machine does) and ``time.perf_counter`` (wall):

- parse: ``parse_search`` + ``resolve_terminology`` (the registry is the cached one)
- plan: ``plan.driving_order`` of the criteria
- build: ``search_sql.page_statement`` (the SQLAlchemy Select of the page + bodies)
- cache key: ``Select._generate_cache_key()``, what SQLAlchemy computes on every execute
  to find the compiled form in its own cache
- execute (SQLAlchemy): ``conn.execute(page).all()`` (cache key, lookup, driver, rows)
- execute (driver): the same SQL, compiled beforehand, through ``exec_driver_sql``
- shape key: ``search_shapes.page_shape`` (the compiled-statement cache's key and values)
- execute_search, cache off: the page read with ``StatementCache(0)``: the statement is
  built and run through SQLAlchemy as before the cache
- execute_search: the search room's whole page read as ``search_bundle`` calls it (with
  the process's compiled-statement cache)
- search_bundle: end to end, parameters in, Bundle bytes out

    .venv/bin/python bench/search_overhead.py [--runs 500] [--patients 300] [--days 160]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402
from search_dataset import (  # noqa: E402
    LAST_DAY,
    LOINC,
    STEPS_CODE,
    SqliteWriter,
    step_chunks,
    step_patient_id,
    synthea_chunks,
)

from fhir_server.interactions.search import search_bundle  # noqa: E402
from fhir_server.search import parse_search  # noqa: E402
from fhir_server.search.plan import driving_order  # noqa: E402
from fhir_server.search.terminology import resolve_terminology  # noqa: E402
from fhir_server.storage import search_sql  # noqa: E402
from fhir_server.storage.database import open_database  # noqa: E402
from fhir_server.storage.migrate import upgrade  # noqa: E402
from fhir_server.storage.repository import Repository  # noqa: E402
from fhir_server.storage.terminology import SearchCodes  # noqa: E402

try:  # the compiled-statement cache (absent before it was written)
    from fhir_server.storage import search_shapes
except ImportError:  # pragma: no cover
    search_shapes = None  # type: ignore[assignment]

SECRET = b"search-overhead-bench"
BASE = "http://bench.example/fhir"
PAIN = "72514-3"

Query = tuple[str, list[tuple[str, str]]]


def queries(patients: int, rng: random.Random) -> dict[str, Callable[[], Query]]:
    since = (LAST_DAY - timedelta(days=30)).isoformat()
    return {
        "app": lambda: (
            "Observation",
            [
                ("subject", f"Patient/{step_patient_id(rng.randrange(patients))}"),
                ("code", f"{LOINC}|{STEPS_CODE}"),
                ("date", f"ge{since}"),
                ("_sort", "-date"),
                ("_count", "50"),
            ],
        ),
        "_has": lambda: (
            "Patient",
            [
                (
                    "_has:Observation:patient:code-value-quantity",
                    f"{LOINC}|{PAIN}$ge{rng.choice((2, 3))}",
                ),
                ("_count", "50"),
            ],
        ),
        "chain": lambda: (
            "Observation",
            [
                ("code", f"{LOINC}|{PAIN}"),
                ("value-quantity", f"ge{rng.choice((2, 3))}"),
                ("subject:Patient.gender", rng.choice(["female", "male"])),
                ("_count", "50"),
            ],
        ),
        "_include": lambda: (
            "Observation",
            [
                ("code", f"{LOINC}|{PAIN}"),
                ("value-quantity", f"ge{rng.choice((2, 3))}"),
                ("_include", "Observation:patient"),
                ("_count", "50"),
            ],
        ),
    }


def load(url: str, patients: int, days: int) -> int:
    db = open_database(url)
    upgrade(db)
    writer = SqliteWriter(db)
    writer.drop_indexes()
    pk, total = 1, 0
    for chunks in (synthea_chunks(6_000, pk), None):
        if chunks is None:
            chunks = step_chunks(patients, days, pk)
        for rows in chunks:
            writer.write(rows)
            pk += len(rows)
            total += len(rows)
    writer.finish()
    db.dispose()
    return total


class Phases:
    """CPU and wall milliseconds per phase, one sample per run."""

    def __init__(self) -> None:
        self.cpu: dict[str, list[float]] = {}
        self.wall: dict[str, list[float]] = {}

    def time(self, name: str, work: Callable[[], Any]) -> Any:
        started_cpu, started = time.process_time(), time.perf_counter()
        out = work()
        self.cpu.setdefault(name, []).append((time.process_time() - started_cpu) * 1000)
        self.wall.setdefault(name, []).append((time.perf_counter() - started) * 1000)
        return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def driver_sql(conn: Any, page: Any) -> tuple[str, Any]:
    """The page's SQL and parameters as the driver takes them (compiled once, outside
    the timed phase)."""
    compiled = page.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    params = compiled.construct_params()
    if compiled.positiontup is not None:
        return str(compiled), tuple(params[name] for name in compiled.positiontup)
    return str(compiled), params


def one_run(phases: Phases, repo: Repository, rtype: str, params: list[tuple[str, str]]) -> None:
    shape = search_shapes.page_shape if search_shapes is not None else None
    off = search_shapes.StatementCache(0) if search_shapes is not None else None
    with repo.reading() as conn:
        reg = repo.search_registry(conn)
        moment = int(time.time() * 1_000_000)

        def parse() -> Any:
            q = parse_search(rtype, params, strict=True, now_us=moment, base_url=BASE, reg=reg)
            return resolve_terminology(q, SearchCodes(conn))

        query = phases.time("parse", parse)
        phases.time("plan", lambda: driving_order(query.criteria))
        count = query.count or search_sql.DEFAULT_COUNT
        page, _ = phases.time("build", lambda: search_sql.page_statement(query, None, count))
        phases.time("cache key", page._generate_cache_key)
        phases.time("execute (SQLAlchemy)", lambda: conn.execute(page).all())
        sql, bound = driver_sql(conn, page)
        phases.time("execute (driver)", lambda: conn.exec_driver_sql(sql, bound).all())
        if shape is not None:
            phases.time("shape key", lambda: shape(query, None, count))
        if off is not None:
            phases.time(
                "execute_search, cache off",
                lambda: search_sql.execute_search(
                    conn, query, base_url=BASE, page_cursor=None, secret=SECRET, statements=off
                ),
            )
        phases.time(
            "execute_search",
            lambda: search_sql.execute_search(
                conn, query, base_url=BASE, page_cursor=None, secret=SECRET
            ),
        )
        phases.time(
            "search_bundle",
            lambda: search_bundle(
                conn,
                rtype,
                params,
                base_url=BASE,
                strict=True,
                secret=SECRET,
                now=moment,
                registry=reg,
            ),
        )


def run_query(repo: Repository, make: Callable[[], Query], warmup: int, runs: int) -> Phases:
    phases = Phases()
    for n in range(warmup + runs):
        if n == warmup:
            phases = Phases()
        rtype, params = make()
        one_run(phases, repo, rtype, params)
    return phases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--patients", type=int, default=300)
    parser.add_argument("--days", type=int, default=160)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    c.print_machine()
    bench_db = c.fresh_database(False, "search-overhead")
    try:
        started = time.perf_counter()
        total = load(bench_db.url, args.patients, args.days)
        print(f"dataset: {total:,} resources in {time.perf_counter() - started:.1f} s", flush=True)
        db = open_database(bench_db.url)
        repo = Repository(db)
        rng = random.Random(args.seed)
        print(f"\nCPU ms (process_time) p50 / p95, wall ms p50 / p95; {args.runs} runs each")
        for name, make in queries(args.patients, rng).items():
            phases = run_query(repo, make, args.warmup, args.runs)
            print(f"\n{name}")
            print(f"  {'phase':<22} {'cpu p50':>8} {'cpu p95':>8} {'wall p50':>9} {'wall p95':>9}")
            for phase, cpu in phases.cpu.items():
                wall = phases.wall[phase]
                print(
                    f"  {phase:<22} {percentile(cpu, 0.5):8.3f} {percentile(cpu, 0.95):8.3f} "
                    f"{percentile(wall, 0.5):9.3f} {percentile(wall, 0.95):9.3f}",
                    flush=True,
                )
        db.dispose()
    finally:
        bench_db.drop()
    c.print_load("after")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
