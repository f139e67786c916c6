"""Ingest benchmark: POST Synthea transaction Bundles to the real server over HTTP.

The 51 Synthea R4 bundles in ../shared/synthea-r4 are replicated with fresh ids (every
``urn:uuid:<uuid>`` replaced by a new uuid, consistently within one copy) until at least
``--min-resources`` resources, then POSTed to ``/fhir`` by ``--clients`` concurrent
clients with ``Prefer: return=minimal``. Copies are prepared before the clock starts.

Prints resources/s, bundles/s, total seconds and the server's peak RSS (sum of VmHWM over
the server process and its workers).

    .venv/bin/python bench/ingest.py                      # SQLite, 1 worker, 4 clients
    .venv/bin/python bench/ingest.py --postgres --workers 2
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL at 127.0.0.1:5432 instead of SQLite")
    parser.add_argument("--workers", type=int, default=1, help="server worker processes (default 1)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients (default 4)")
    parser.add_argument("--min-resources", type=int, default=50_000)
    parser.add_argument("--max-seconds", type=float, default=280, help="stop submitting after this (default 280)")
    parser.add_argument("--keep", action="store_true", help="keep the database and print its URL (for read_load.py)")
    parser.add_argument("--json", action="store_true", help="also print one JSON line with the figures")
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= 64 or not 1 <= args.workers <= 16:
        parser.error("--clients must be 1..64 and --workers 1..16")

    info = c.print_machine()
    copies, bundles_iter = c.replicated(args.min_resources)
    prepared = [(text.encode(), n) for text, n in bundles_iter]
    total_planned = sum(n for _, n in prepared)
    print(f"prepared {len(prepared)} bundles ({copies} copies of {len(prepared) // copies}), {total_planned} resources", flush=True)

    db = c.fresh_database(args.postgres, "ingest", keep=args.keep)
    (db.data_dir / "database.txt").write_text(db.url)
    server = None
    try:
        server = c.start_server(db, args.workers)
        result = run(server, prepared, args.clients, args.max_seconds, database_url=db.url)
    finally:
        if server is not None:
            peak = server.peak_rss_mb()
            c.stop_server(server)
        else:
            peak = float("nan")
        if not args.keep:
            db.drop()

    seconds = result["seconds"]
    figures = {
        "benchmark": "ingest",
        "database": db.kind,
        "workers": args.workers,
        "clients": args.clients,
        "bundles": result["bundles"],
        "resources": result["resources"],
        "failed_bundles": result["failed"],
        "seconds": round(seconds, 2),
        "resources_per_s": round(result["resources"] / seconds, 1),
        "bundles_per_s": round(result["bundles"] / seconds, 2),
        "bundle_latency_p50_ms": result["p50_ms"],
        "bundle_latency_max_ms": result["max_ms"],
        "peak_rss_mb": peak,
        "complete": result["complete"],
        "cpu": result["cpu"],
        "resources_per_server_cpu_s": round(result["resources"] / result["cpu"]["server_cpu_s"], 1)
        if result["cpu"]["server_cpu_s"]
        else None,
        "machine": info,
    }
    print(
        f"ingest [{db.kind}, workers={args.workers}, clients={args.clients}]: "
        f"{result['resources']} resources in {result['bundles']} bundles, {seconds:.2f} s -> "
        f"{figures['resources_per_s']:,.1f} resources/s, {figures['bundles_per_s']:.2f} bundles/s; "
        f"bundle latency p50 {result['p50_ms']} ms, max {result['max_ms']} ms; "
        f"server peak RSS {peak} MB (sum of VmHWM over {len(server.samples) if server else 0} processes)"
    )
    cpu = result["cpu"]
    n = max(result["resources"], 1)
    per_resource = (cpu["server_cpu_s"] + cpu["postgres_cpu_s"]) / n
    figures["server_cpu_us_per_resource"] = round(cpu["server_cpu_s"] / n * 1e6, 1)
    figures["postgres_cpu_us_per_resource"] = round(cpu["postgres_cpu_s"] / n * 1e6, 1)
    figures["cpu_bound_ceiling_per_s"] = round(cpu["machine_capacity_s"] / cpu["wall_s"] / per_resource, 1) if per_resource else None
    print(
        f"    {result['cpu_text']}; {figures['resources_per_server_cpu_s']} resources per server CPU-second",
        flush=True,
    )
    print(
        f"    CPU per resource: server {figures['server_cpu_us_per_resource']} us"
        + (f" + PostgreSQL backends {figures['postgres_cpu_us_per_resource']} us" if db.kind == "postgresql" else "")
        + f"; if all {os.cpu_count()} cores did only this work: at most {figures['cpu_bound_ceiling_per_s']:,.0f} resources/s",
        flush=True,
    )
    if result["failed"]:
        print(f"FAILED bundles: {result['failed']}; first errors:")
        for problem in result["errors"]:
            print("  " + problem)
    if not result["complete"]:
        print(f"stopped at --max-seconds {args.max_seconds}: not all bundles were sent")
    if args.keep:
        print(f"kept database: {db.url}  (data dir {db.data_dir})")
    c.print_load("after")
    if args.json:
        print(orjson.dumps(figures).decode())
    return 1 if result["failed"] else 0


def run(
    server: c.Server, prepared: list[tuple[bytes, int]], clients: int, max_seconds: float, database_url: str = ""
) -> dict:
    local = threading.local()
    lock = threading.Lock()
    state = {"resources": 0, "bundles": 0, "failed": 0, "skipped": 0}
    errors: list[str] = []
    latencies: list[float] = []
    started = time.perf_counter()
    deadline = started + max_seconds
    stop_sampler = threading.Event()

    def sampler() -> None:
        for _ in range(int(max_seconds * 2) + 100):
            if stop_sampler.wait(0.5):
                return
            server.sample_rss()

    def send(item: tuple[bytes, int]) -> None:
        body, n = item
        if time.perf_counter() > deadline:
            with lock:
                state["skipped"] += 1
            return
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(timeout=300)
        t0 = time.perf_counter()
        try:
            response = client.post(
                server.fhir,
                content=body,
                headers={
                    "Content-Type": "application/fhir+json",
                    "Accept": "application/fhir+json",
                    "Prefer": "return=minimal",
                },
            )
            ok, detail = response.status_code == 200, f"HTTP {response.status_code}: {response.text[:300]}"
        except httpx.HTTPError as exc:
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        elapsed = time.perf_counter() - t0
        with lock:
            latencies.append(elapsed)
            if ok:
                state["resources"] += n
                state["bundles"] += 1
            else:
                state["failed"] += 1
                if len(errors) < 5:
                    errors.append(detail)

    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()
    meter = c.CpuMeter(server, database_url).start()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(send, prepared))
    seconds = time.perf_counter() - started
    cpu = meter.stop()
    stop_sampler.set()
    thread.join(2)
    latencies.sort()
    return {
        **state,
        "seconds": seconds,
        "errors": errors,
        "complete": state["skipped"] == 0,
        "cpu": cpu,
        "cpu_text": meter.describe(),
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 1) if latencies else None,
        "max_ms": round(latencies[-1] * 1000, 1) if latencies else None,
    }


if __name__ == "__main__":
    raise SystemExit(main())
