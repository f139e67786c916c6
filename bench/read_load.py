"""Read benchmark: ``wrk`` against ``GET /fhir/<Type>/<id>`` on the real server.

With ``--database-url`` it reuses a database (e.g. one kept by ``ingest.py --keep``);
otherwise it makes a fresh one and loads ``--load-bundles`` Synthea bundles through the
server first. It then picks ``--ids`` random current resources straight from the database
(SQLAlchemy, reads only), writes a wrk Lua script that requests them at random, and for
each ``--workers`` value starts the server, warms it up, and runs

    wrk -t2 -c32 -d20s --latency

Prints requests/s, p50, p99 (parsed from wrk's output) and the server's peak RSS.
Installs Debian's wrk with apt-get when it is missing.

    .venv/bin/python bench/read_load.py                         # SQLite, workers 1 and 2
    .venv/bin/python bench/read_load.py --postgres
    .venv/bin/python bench/read_load.py --database-url sqlite:////tmp/x/selfback.sqlite
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", action="store_true", help="fresh PostgreSQL database instead of SQLite")
    parser.add_argument("--database-url", help="reuse this database (kept unless --drop-after)")
    parser.add_argument("--drop-after", action="store_true", help="drop the reused database at the end (only bench_* / selfback-bench-* ones)")
    parser.add_argument("--workers", default="1,2", help="comma-separated server worker counts (default 1,2)")
    parser.add_argument("--ids", type=int, default=10_000, help="resource ids to request (default 10000)")
    parser.add_argument("--load-bundles", type=int, default=102, help="bundles to load into a fresh database (default 102, ~12k resources)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=int, default=20, help="seconds per measured wrk run (default 20)")
    parser.add_argument("--warmup", type=int, default=5, help="seconds of wrk warm-up before each run (default 5)")
    parser.add_argument("--json", action="store_true", help="also print one JSON line per run")
    args = parser.parse_args(argv)
    workers = [int(w) for w in args.workers.split(",") if w.strip()]
    if not all(1 <= w <= 16 for w in workers) or not 1 <= args.duration <= 120 or not 1 <= args.connections <= 1024:
        parser.error("workers 1..16, duration 1..120 s, connections 1..1024")

    wrk = ensure_wrk()
    info = c.print_machine()
    wrk_version = subprocess.run([wrk, "-v"], capture_output=True, text=True, timeout=10).stdout.splitlines()[:1]
    print(f"wrk: {wrk_version[0] if wrk_version else '?'}", flush=True)

    db = c.existing_database(args.database_url, args.drop_after) if args.database_url else c.fresh_database(args.postgres, "read")
    try:
        if not args.database_url:
            load(db, args.load_bundles)
        paths = collect_paths(db.url, args.ids)
        print(f"{len(paths)} resource paths from {db.kind} database", flush=True)
        lua = db.data_dir / "paths.lua"
        lua.write_text(lua_script(paths))
        failed = False
        for w in workers:
            figures = measure(db, w, wrk, lua, args)
            figures["machine"] = info
            failed |= bool(figures["non_2xx"] or figures["socket_errors"])
            print(
                f"read [{db.kind}, workers={w}, wrk -t{args.threads} -c{args.connections} -d{args.duration}s]: "
                f"{figures['requests_per_s']:,.1f} req/s, p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms, "
                f"non-2xx {figures['non_2xx']}, socket errors {figures['socket_errors'] or 0}; "
                f"server peak RSS {figures['peak_rss_mb']} MB",
                flush=True,
            )
            print("    " + figures["cpu_text"], flush=True)
            cpu, n = figures["cpu"], max(figures["requests"] or 1, 1)
            server_us = cpu["server_cpu_s"] / n * 1e6
            pg_us = cpu["postgres_cpu_s"] / n * 1e6
            figures["server_cpu_us_per_request"] = round(server_us, 1)
            figures["postgres_cpu_us_per_request"] = round(pg_us, 1)
            print(
                f"    CPU per request: server {server_us:.1f} us"
                + (f" + PostgreSQL backends {pg_us:.1f} us" if db.kind == "postgresql" else "")
                + f"; if all {os.cpu_count()} cores did only this work (no wrk): at most "
                f"{os.cpu_count() / ((server_us + pg_us) / 1e6):,.0f} requests/s",
                flush=True,
            )
            c.print_load(f"after workers={w}")
            if args.json:
                print(orjson.dumps(figures).decode(), flush=True)
    finally:
        db.drop()
    return 1 if failed else 0


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk missing: installing Debian's wrk with apt-get", flush=True)
    subprocess.run("apt-get update -qq && apt-get install -y -qq wrk", shell=True, check=True, timeout=600)
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk is still missing after apt-get install")
    return found


def load(db: c.BenchDatabase, bundles: int) -> None:
    """Load ``bundles`` Synthea bundles (fresh ids) through a 1-worker server."""
    texts = c.load_texts()
    server = c.start_server(db, 1)
    resources = 0
    started = time.perf_counter()
    try:
        with httpx.Client(timeout=300) as client:
            for i in range(bundles):
                text, n = texts[i % len(texts)]
                response = client.post(
                    server.fhir,
                    content=c.fresh_copy(text).encode(),
                    headers={"Content-Type": "application/fhir+json", "Prefer": "return=minimal"},
                )
                if response.status_code != 200:
                    raise SystemExit(f"loading bundle {i} failed: HTTP {response.status_code} {response.text[:500]}")
                resources += n
    finally:
        c.stop_server(server)
    print(f"loaded {resources} resources in {bundles} bundles ({time.perf_counter() - started:.1f} s, not a benchmark figure)", flush=True)


def collect_paths(url: str, count: int) -> list[str]:
    from sqlalchemy import create_engine, func, select

    from fhir_server.storage.schema import resource

    engine = create_engine(c.sqlalchemy_url(url))
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(resource.c.rtype, resource.c.id)
                .where(resource.c.deleted.is_(False))
                .order_by(func.random())
                .limit(count)
            ).all()
    finally:
        engine.dispose()
    if not rows:
        raise SystemExit("the database holds no resources")
    return [f"/fhir/{rtype}/{id}" for rtype, id in rows]


def lua_script(paths: list[str]) -> str:
    quoted = ",\n".join(f'  "{p}"' for p in paths)
    return f"""-- generated by bench/read_load.py: GET a random stored resource
local paths = {{
{quoted}
}}
local n = #paths
local headers = {{ ["Accept"] = "application/fhir+json" }}
local seed = {uuid.uuid4().int % 1_000_000}
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
end
function init(args)
  math.randomseed(seed + (tid or 0) * 7919)
end
function request()
  return wrk.format("GET", paths[math.random(1, n)], headers)
end
"""


def measure(db: c.BenchDatabase, workers: int, wrk: str, lua: Path, args: argparse.Namespace) -> dict:
    server = c.start_server(db, workers)
    try:
        # sanity check: one of the paths answers 200
        first = re.search(r'"(/fhir/[^"]+)"', lua.read_text())
        assert first is not None
        probe = httpx.get(server.base + first.group(1), timeout=10)
        if probe.status_code != 200:
            raise SystemExit(f"GET {first.group(1)} answered {probe.status_code}: {probe.text[:300]}")
        base = [wrk, f"-t{args.threads}", f"-c{args.connections}", "--latency", "-s", str(lua)]
        if args.warmup:
            subprocess.run([*base, f"-d{args.warmup}s", server.base], capture_output=True, text=True, timeout=args.warmup + 60)
        audited = os.environ.get("SELFBACK_AUDIT", "on").lower() not in ("0", "off", "false", "no")
        if audited:
            audit_drain(server)  # the warm-up's AuditEvents are not the measured run's
        server.sample_rss()
        meter = c.CpuMeter(server, db.url).start()
        with_drain = c.CpuMeter(server, db.url).start()
        out = subprocess.run([*base, f"-d{args.duration}s", server.base], capture_output=True, text=True, timeout=args.duration + 60)
        cpu = meter.stop()
        if out.returncode != 0:
            raise SystemExit(f"wrk failed: {out.stderr}")
        figures = parse_wrk(out.stdout)
        if audited:
            # The trail writes off the request path: how long after wrk stopped until every
            # AuditEvent is stored, and the CPU of requests + trail together. Requests over
            # (duration + drain) is the rate the trail could sustain without a backlog.
            drain_s = audit_drain(server)
            total = with_drain.stop()
            n = max(figures["requests"] or 1, 1)
            figures["audit_drain_s"] = round(drain_s, 2)
            figures["sustained_requests_per_s"] = round(n / (args.duration + drain_s), 1)
            figures["server_cpu_us_per_request_with_drain"] = round(total["server_cpu_s"] / n * 1e6, 1)
            figures["postgres_cpu_us_per_request_with_drain"] = round(total["postgres_cpu_s"] / n * 1e6, 1)
            print(
                f"    audit trail: drained {drain_s:.1f} s after wrk stopped; sustained "
                f"{figures['sustained_requests_per_s']:,.0f} req/s; server CPU per request with the "
                f"drain {figures['server_cpu_us_per_request_with_drain']} us"
                + (f" + PostgreSQL {figures['postgres_cpu_us_per_request_with_drain']} us" if db.kind == "postgresql" else ""),
                flush=True,
            )
        figures.update(
            benchmark="read",
            database=db.kind,
            workers=workers,
            threads=args.threads,
            connections=args.connections,
            duration_s=args.duration,
            ids=len(re.findall(r'^  "/fhir/', lua.read_text(), re.M)),
            peak_rss_mb=server.peak_rss_mb(),
            cpu=cpu,
            cpu_text=meter.describe() + " (wrk is 'everything else')",
        )
        print(out.stdout.rstrip(), flush=True)
        return figures
    finally:
        c.stop_server(server)


def audit_drain(server: c.Server, settle: float = 1.0, limit: float = 600.0) -> float:
    """Seconds from now until the stored AuditEvents stop growing (two counts ``settle``
    apart differ by no more than the polls' own AuditEvents), minus that last wait.
    ``GET AuditEvent?_summary=count`` (auth none)."""
    started = time.perf_counter()
    last, last_change = -1, started
    with httpx.Client(timeout=60) as client:
        while time.perf_counter() - started < limit:
            r = client.get(f"{server.fhir}/AuditEvent", params={"_summary": "count"})
            r.raise_for_status()
            total = r.json()["total"]
            if last >= 0 and total - last <= 2:  # only the polls' own AuditEvents since
                return last_change - started
            last, last_change = total, time.perf_counter()
            time.sleep(settle)
    return limit


def _ms(value: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", value.strip())
    if not match:
        raise ValueError(f"cannot read wrk time {value!r}")
    return round(float(match.group(1)) * _UNITS[match.group(2)], 3)


def parse_wrk(text: str) -> dict:
    def grab(pattern: str) -> str | None:
        match = re.search(pattern, text, re.M)
        return match.group(1) if match else None

    rps = grab(r"^Requests/sec:\s+([\d.]+)")
    p50 = grab(r"^\s+50%\s+(\S+)")
    p99 = grab(r"^\s+99%\s+(\S+)")
    total = grab(r"^\s+(\d+) requests in")
    if rps is None or p50 is None or p99 is None:
        raise SystemExit(f"cannot parse wrk output:\n{text}")
    socket_errors = grab(r"^\s+Socket errors:\s+(.*)$")
    return {
        "requests_per_s": float(rps),
        "requests": int(total) if total else None,
        "p50_ms": _ms(p50),
        "p90_ms": _ms(grab(r"^\s+90%\s+(\S+)") or "0us"),
        "p99_ms": _ms(p99),
        "non_2xx": int(grab(r"^\s+Non-2xx or 3xx responses:\s+(\d+)") or 0),
        "socket_errors": socket_errors,
    }


if __name__ == "__main__":
    raise SystemExit(main())
