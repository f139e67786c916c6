"""Search latency on the search benchmark's dataset (bench/search_dataset.py): p50/p95 of
the queries issue 3 sets targets for, in process (the search room: parse, SQL, Bundle
bytes, through ``fhir_server.interactions.search.search_bundle``) and over HTTP against the
real server (``selfback serve --workers 1``), one client, one request at a time.

| query | target p95 |
|---|---|
| app: ``Observation?subject=Patient/<random step patient>&code=http://loinc.org|41950-7&date=ge<30 days back>&_sort=-date&_count=50`` | 10 ms |
| clinician ``_has``: ``Patient?_has:Observation:patient:code-value-quantity=http://loinc.org|72514-3$ge<2 or 3>&_count=50`` | 100 ms |
| clinician chain: ``Observation?code=http://loinc.org|72514-3&value-quantity=ge<2 or 3>&subject:Patient.gender=<female/male>&_count=50`` | 100 ms |
| ``_include``: ``Observation?code=http://loinc.org|72514-3&value-quantity=ge<2 or 3>&_include=Observation:patient&_count=50`` | 100 ms |
| ``_total=accurate`` of every step count: ``Observation?code=http://loinc.org|41950-7&_total=accurate&_count=1`` (1,000,000 matches) | 1 s |

Each query runs ``--warmup`` times first (the database's pages in memory, as on a server
that has been up a while), then ``--runs`` times (the count query ``--count-runs``).

    .venv/bin/python bench/search_latency.py --database-url URL      # printed by search_dataset.py
    .venv/bin/python bench/search_latency.py --database-url URL --drop-after
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402
from search_dataset import LAST_DAY, LOINC, STEP_PATIENT_SYSTEM, STEPS_CODE, step_patient_id  # noqa: E402

from fhir_server.interactions.search import search_bundle  # noqa: E402
from fhir_server.storage.database import open_database  # noqa: E402
from fhir_server.storage.repository import Repository  # noqa: E402

SECRET = b"search-latency-bench"
BASE = "http://bench.example/fhir"
PAIN = "72514-3"

Query = tuple[str, list[tuple[str, str]]]


def queries(patients: int, rng: random.Random) -> dict[str, tuple[Callable[[], Query], float, int]]:
    """name -> (a fresh query each call, target p95 in ms, runs multiplier key)."""
    since = (LAST_DAY - timedelta(days=30)).isoformat()

    def app() -> Query:
        pid = step_patient_id(rng.randrange(patients))
        return "Observation", [
            ("subject", f"Patient/{pid}"),
            ("code", f"{LOINC}|{STEPS_CODE}"),
            ("date", f"ge{since}"),
            ("_sort", "-date"),
            ("_count", "50"),
        ]

    def has() -> Query:
        return "Patient", [
            (
                "_has:Observation:patient:code-value-quantity",
                f"{LOINC}|{PAIN}$ge{rng.choice((2, 3))}",
            ),
            ("_count", "50"),
        ]

    def chain() -> Query:
        return "Observation", [
            ("code", f"{LOINC}|{PAIN}"),
            ("value-quantity", f"ge{rng.choice((2, 3))}"),
            ("subject:Patient.gender", rng.choice(["female", "male"])),
            ("_count", "50"),
        ]

    def include() -> Query:
        return "Observation", [
            ("code", f"{LOINC}|{PAIN}"),
            ("value-quantity", f"ge{rng.choice((2, 3))}"),
            ("_include", "Observation:patient"),
            ("_count", "50"),
        ]

    def total() -> Query:
        return "Observation", [
            ("code", f"{LOINC}|{STEPS_CODE}"),
            ("_total", "accurate"),
            ("_count", "1"),
        ]

    return {
        "app: patient steps, 30 days, -date": (app, 10.0, 0),
        "clinician: _has pain >= n": (has, 100.0, 0),
        "clinician: chain gender + pain": (chain, 100.0, 0),
        "_include patient of pain >= n": (include, 100.0, 0),
        "_total=accurate, 1,000,000 matches": (total, 1000.0, 1),
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def describe(body: bytes) -> str:
    bundle = orjson.loads(body)
    modes: dict[str, int] = {}
    for entry in bundle.get("entry", []):
        modes[entry["search"]["mode"]] = modes.get(entry["search"]["mode"], 0) + 1
    total = f", total {bundle['total']}" if "total" in bundle else ""
    return ", ".join(f"{n} {m}" for m, n in modes.items()) + total


def measure(
    run: Callable[[Query], bytes], make: Callable[[], Query], warmup: int, runs: int
) -> tuple[list[float], list[float], str]:
    """Wall-clock and this thread's CPU milliseconds per run, and a sample answer. In
    process on SQLite the database works in this thread, so CPU time is the query's own
    cost whatever else the (shared, 2-core) machine is doing; wall time includes waiting."""
    sample = ""
    for _ in range(warmup):
        sample = describe(run(make()))
    times: list[float] = []
    cpu: list[float] = []
    for _ in range(runs):
        query = make()
        started, started_cpu = time.perf_counter(), time.thread_time()
        run(query)
        cpu.append((time.thread_time() - started_cpu) * 1000)
        times.append((time.perf_counter() - started) * 1000)
    return times, cpu, sample


def dataset_facts(repo: Repository) -> tuple[int, dict[str, int]]:
    from sqlalchemy import func, select

    from fhir_server.storage.schema import resource, sp_token

    with repo.reading() as conn:
        patients = conn.execute(
            select(func.count()).where(
                sp_token.c.rtype == "Patient",
                sp_token.c.param == "identifier",
                sp_token.c.system == STEP_PATIENT_SYSTEM,
            )
        ).scalar_one()
        by_type = dict(
            conn.execute(select(resource.c.rtype, func.count()).group_by(resource.c.rtype)).all()
        )
    return int(patients), by_type


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--database-url", required=True, help="a database made by bench/search_dataset.py"
    )
    parser.add_argument(
        "--drop-after",
        action="store_true",
        help="drop it afterwards (bench_* / selfback-bench-* only)",
    )
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--count-runs", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--no-http", action="store_true", help="in process only")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    info = c.print_machine()
    bench_db = c.existing_database(args.database_url, drop_after=args.drop_after)
    db = open_database(c.sqlalchemy_url(bench_db.url))
    repo = Repository(db)
    results: list[dict[str, Any]] = []
    server = None
    try:
        patients, by_type = dataset_facts(repo)
        total = sum(by_type.values())
        print(
            f"dataset [{bench_db.kind}]: {total:,} resources, {by_type.get('Observation', 0):,} Observations, "
            f"{patients:,} step patients",
            flush=True,
        )

        def in_process(query: Query) -> bytes:
            rtype, params = query
            with repo.reading() as conn:
                return search_bundle(
                    conn,
                    rtype,
                    params,
                    base_url=BASE,
                    strict=True,
                    secret=SECRET,
                    registry=repo.search_registry(conn),  # as the server's route does
                )

        paths: list[tuple[str, Callable[[Query], bytes]]] = [("in-process", in_process)]
        client: httpx.Client | None = None
        if not args.no_http:
            server = c.start_server(bench_db, 1)
            client = httpx.Client(base_url=server.fhir, timeout=120)

            def over_http(query: Query) -> bytes:
                rtype, params = query
                assert client is not None
                r = client.get(f"/{rtype}", params=params, headers={"Prefer": "handling=strict"})
                r.raise_for_status()
                return r.content

            paths.append(("http", over_http))

        for path_name, run in paths:
            rng = random.Random(args.seed)
            for name, (make, target, heavy) in queries(patients, rng).items():
                runs = args.count_runs if heavy else args.runs
                warmup = min(args.warmup, 3) if heavy else args.warmup
                times, cpu, sample = measure(run, make, warmup, runs)
                p50, p95 = percentile(times, 0.5), percentile(times, 0.95)
                cpu50, cpu95 = percentile(cpu, 0.5), percentile(cpu, 0.95)
                met = "met" if p95 < target else "MISSED"
                print(
                    f"{bench_db.kind:<10} {path_name:<10} {name:<38} p50 {p50:8.2f} ms  p95 {p95:8.2f} ms  "
                    f"max {max(times):8.2f} ms  (client cpu p50 {cpu50:7.2f} p95 {cpu95:7.2f})  n={runs:<4} "
                    f"target p95 < {target:g} ms: {met}  load {os.getloadavg()[0]:.1f}  [{sample}]",
                    flush=True,
                )
                results.append(
                    {
                        "database": bench_db.kind,
                        "path": path_name,
                        "query": name,
                        "p50_ms": round(p50, 2),
                        "p95_ms": round(p95, 2),
                        "max_ms": round(max(times), 2),
                        "mean_ms": round(statistics.fmean(times), 2),
                        "client_cpu_p50_ms": round(cpu50, 2),
                        "client_cpu_p95_ms": round(cpu95, 2),
                        "loadavg_1m": round(os.getloadavg()[0], 2),
                        "runs": runs,
                        "target_p95_ms": target,
                        "met": p95 < target,
                        "sample": sample,
                    }
                )
        if client is not None:
            client.close()
    finally:
        if server is not None:
            c.stop_server(server)
        db.dispose()
        bench_db.drop()
    c.print_load("after")
    if args.json:
        print(
            orjson.dumps(
                {"benchmark": "search_latency", "results": results, "machine": info}
            ).decode()
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
