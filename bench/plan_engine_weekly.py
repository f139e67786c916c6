"""The weekly plan run for a simulated cohort, timed: wall time per weekly run on N worker
processes, and the latency of each ``decide_plan`` call (p50/p95/p99).

The cohort comes from ``plan_engine.simulation`` (docs/SIMULATION.md). Each worker process
owns every N-th patient for the whole run. Week by week, the main process tells every worker
to plan the week (assemble each patient's snapshot and call ``decide_plan``: this is the
weekly run that is timed), waits for all of them, then tells them to live the week (the
simulated patients' data and the simulator's checks; not timed). A weekly run's wall time
is measured in the main process from the "plan" message to the last reply. Besides wall
time, each call's CPU time (``time.thread_time_ns``) is recorded: on a shared machine the
wall time includes waiting for a core, the CPU time does not.

Each worker holds its patients' whole simulated history, which a server would not: it loads
one snapshot, plans, stores and drops it. So during the timed run the workers keep only the
CarePlan of each decision and pause the garbage collector, whose full passes would otherwise
scan that history inside random ``decide_plan`` calls; the deferred collection afterwards
is timed and printed separately. ``--gc`` keeps the collector running.

Nothing here asserts on timings. Run from the repository root::

    .venv/bin/python bench/plan_engine_weekly.py                       # 10,000 patients, 2 workers
    .venv/bin/python bench/plan_engine_weekly.py --patients 1000 --weeks 12 --workers 1 --report

``--report`` also prints the simulator's report (the same report as
``python -m plan_engine.simulation`` for the same cohort) and its sha256.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import multiprocessing as mp
import os
import platform
import sys
import time
from dataclasses import replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from plan_engine import decide_plan  # noqa: E402
from plan_engine.simulation import CohortSpec, PatientRun, build_report  # noqa: E402
from plan_engine.simulation.metrics import percentile  # noqa: E402


def machine() -> dict[str, str]:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "python": platform.python_version(),
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def _worker(spec: CohortSpec, indices: list[int], conn: Connection, pause_gc: bool) -> None:
    runs = [PatientRun(spec, i) for i in indices]
    pending: list[Any] = []
    conn.send("ready")
    while True:
        message = conn.recv()
        if message == "plan":
            pending = []
            if pause_gc:
                # This process holds every simulated patient's history; a server holds one
                # snapshot at a time. Full collections over that history would land in
                # random decide_plan calls, so the collector waits until the run is over
                # (reference counting still frees everything without cycles).
                gc.disable()
            latencies: list[int] = []
            cpu: list[int] = []
            snapshot_ns = 0
            cpu_started = time.process_time_ns()
            for run in runs:
                t0 = time.perf_counter_ns()
                snapshot = run.snapshot()
                t1 = time.perf_counter_ns()
                c1 = time.thread_time_ns()
                decision = decide_plan(snapshot, run.as_of)
                c2 = time.thread_time_ns()
                t2 = time.perf_counter_ns()
                snapshot_ns += t1 - t0
                latencies.append(t2 - t1)
                cpu.append(c2 - c1)
                # Keep only what the simulator needs next. A server stores each decision
                # and drops it with its snapshot; holding thousands of full decisions here
                # would make the garbage collector's full passes land in the timings.
                pending.append(replace(decision, resources=decision.resources_of("CarePlan")))
            conn.send((time.process_time_ns() - cpu_started, snapshot_ns, latencies, cpu))
        elif message == "live":
            collected = time.perf_counter_ns()
            if pause_gc:
                gc.enable()
                gc.collect()
            collected = time.perf_counter_ns() - collected
            for run, decision in zip(runs, pending, strict=True):
                run.record(run.snapshot(), decision, decide_plan)  # the same snapshot again
            conn.send(collected)
        elif message == "traces":
            conn.send([run.trace() for run in runs])
        elif message == "stop":
            conn.close()
            return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--weeks", type=int, default=12)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workers", type=int, default=2, help="worker processes (cores used)")
    parser.add_argument(
        "--metamorphic-sample",
        type=float,
        default=None,
        help="simulator's re-planning share (default: the simulator's 0.25 with --report, "
        "else 0, since it only feeds the report)",
    )
    parser.add_argument(
        "--gc",
        action="store_true",
        help="keep the garbage collector running during the timed weekly run "
        "(its full passes then scan the whole simulated cohort)",
    )
    parser.add_argument("--report", action="store_true", help="also print the simulator report")
    parser.add_argument("--json", action="store_true", help="print one JSON object at the end")
    args = parser.parse_args(argv)

    sample = args.metamorphic_sample
    if sample is None:
        sample = CohortSpec().metamorphic_sample if args.report else 0.0
    spec = CohortSpec(
        patients=args.patients, weeks=args.weeks, seed=args.seed, metamorphic_sample=sample
    )
    before = machine()
    print(f"machine: {before}", flush=True)
    print(
        f"cohort: {spec.patients} patients x {spec.weeks} weeks, seed {spec.seed}, "
        f"{args.workers} worker process(es), metamorphic sample {spec.metamorphic_sample}, "
        f"collector {'running' if args.gc else 'paused'} during the weekly run",
        flush=True,
    )

    context = mp.get_context("spawn")
    pipes: list[Connection] = []
    processes = []
    setup_started = time.perf_counter()
    for w in range(args.workers):
        parent, child = context.Pipe()
        indices = list(range(w, spec.patients, args.workers))
        process = context.Process(
            target=_worker, args=(spec, indices, child, not args.gc), daemon=True
        )
        process.start()
        pipes.append(parent)
        processes.append(process)
    for pipe in pipes:
        assert pipe.recv() == "ready"
    print(f"workers ready in {time.perf_counter() - setup_started:.1f} s", flush=True)

    weekly: list[dict[str, Any]] = []
    all_latencies: list[int] = []
    all_cpu: list[int] = []
    total_started = time.perf_counter()
    for week in range(1, spec.weeks + 1):
        started = time.perf_counter()
        for pipe in pipes:
            pipe.send("plan")
        replies = [pipe.recv() for pipe in pipes]
        wall = time.perf_counter() - started
        latencies = [ns for _, _, shard, _ in replies for ns in shard]
        cpu = [ns for _, _, _, shard in replies for ns in shard]
        all_latencies += latencies
        all_cpu += cpu
        ms = [ns / 1e6 for ns in latencies]
        cpu_ms = [ns / 1e6 for ns in cpu]
        row = {
            "week": week,
            "plans": len(latencies),
            "wall_s": round(wall, 2),
            "plans_per_s": round(len(latencies) / wall, 1),
            "worker_cpu_s_max": round(max(c for c, _, _, _ in replies) / 1e9, 2),
            "snapshot_assembly_s": round(sum(s for _, s, _, _ in replies) / 1e9, 2),
            "decide_s": round(sum(latencies) / 1e9, 2),
            "p50_ms": round(percentile(ms, 50) or 0, 2),
            "p95_ms": round(percentile(ms, 95) or 0, 2),
            "p99_ms": round(percentile(ms, 99) or 0, 2),
            "max_ms": round(max(ms), 1),
            "cpu_p50_ms": round(percentile(cpu_ms, 50) or 0, 2),
            "cpu_p95_ms": round(percentile(cpu_ms, 95) or 0, 2),
            "cpu_p99_ms": round(percentile(cpu_ms, 99) or 0, 2),
            "loadavg_1min": round(os.getloadavg()[0], 2),
        }
        weekly.append(row)
        print(
            f"week {week:2d}: {row['plans']} plans in {row['wall_s']:.2f} s wall "
            f"({row['plans_per_s']:.0f}/s), busiest worker {row['worker_cpu_s_max']:.2f} s CPU; "
            f"decide_plan wall p50 {row['p50_ms']:.2f} / p95 {row['p95_ms']:.2f} / "
            f"p99 {row['p99_ms']:.2f} / max {row['max_ms']:.1f} ms, CPU p50 "
            f"{row['cpu_p50_ms']:.2f} / p95 {row['cpu_p95_ms']:.2f} / p99 {row['cpu_p99_ms']:.2f} ms; "
            f"load {row['loadavg_1min']}",
            flush=True,
        )
        for pipe in pipes:
            pipe.send("live")
        deferred = max(pipe.recv() for pipe in pipes) / 1e9
        row["deferred_gc_s"] = round(deferred, 2)
        if not args.gc:
            print(
                f"         deferred full garbage collection after the run: {deferred:.2f} s "
                "(outside the weekly run; mostly the simulated cohort's own heap)",
                flush=True,
            )
    total = time.perf_counter() - total_started

    ms = [ns / 1e6 for ns in all_latencies]
    cpu_ms = [ns / 1e6 for ns in all_cpu]
    summary = {
        "patients": spec.patients,
        "weeks": spec.weeks,
        "seed": spec.seed,
        "workers": args.workers,
        "plans": len(ms),
        "weekly_run_wall_s_max": max(r["wall_s"] for r in weekly),
        "weekly_run_wall_s_last": weekly[-1]["wall_s"],
        "weekly_run_wall_s_mean": round(sum(r["wall_s"] for r in weekly) / len(weekly), 2),
        "weekly_run_busiest_worker_cpu_s_max": max(r["worker_cpu_s_max"] for r in weekly),
        "cpu_latency_ms": {
            "mean": round(sum(cpu_ms) / len(cpu_ms), 2),
            "p50": round(percentile(cpu_ms, 50) or 0, 2),
            "p95": round(percentile(cpu_ms, 95) or 0, 2),
            "p99": round(percentile(cpu_ms, 99) or 0, 2),
            "max": round(max(cpu_ms), 1),
        },
        "latency_ms": {
            "mean": round(sum(ms) / len(ms), 2),
            "p50": round(percentile(ms, 50) or 0, 2),
            "p95": round(percentile(ms, 95) or 0, 2),
            "p99": round(percentile(ms, 99) or 0, 2),
            "max": round(max(ms), 1),
        },
        "simulation_total_s": round(total, 1),
        "machine_before": before,
        "machine_after": machine(),
        "weekly": weekly,
    }
    print(
        f"weekly run for {spec.patients} patients on {args.workers} worker(s): "
        f"max {summary['weekly_run_wall_s_max']:.2f} s, last week "
        f"{summary['weekly_run_wall_s_last']:.2f} s, mean {summary['weekly_run_wall_s_mean']:.2f} s"
    )
    latency = summary["latency_ms"]
    print(
        f"decide_plan over {len(ms)} plans: mean {latency['mean']:.2f} ms, p50 {latency['p50']:.2f} ms, "
        f"p95 {latency['p95']:.2f} ms, p99 {latency['p99']:.2f} ms, max {latency['max']:.1f} ms"
    )
    cpu_latency = summary["cpu_latency_ms"]
    print(
        f"decide_plan CPU time (thread_time, not affected by waiting for a core): mean "
        f"{cpu_latency['mean']:.2f} ms, p50 {cpu_latency['p50']:.2f} ms, p95 "
        f"{cpu_latency['p95']:.2f} ms, p99 {cpu_latency['p99']:.2f} ms, max {cpu_latency['max']:.1f} ms"
    )
    print(
        "busiest worker's CPU time in one weekly run (the wall time on otherwise idle cores): "
        f"max {summary['weekly_run_busiest_worker_cpu_s_max']:.2f} s"
    )
    print(f"whole simulation (weekly runs + simulated weeks): {total:.1f} s")
    print(f"machine after: {summary['machine_after']}")

    if args.report:
        traces = []
        for pipe in pipes:
            pipe.send("traces")
            traces += pipe.recv()
        traces.sort(key=lambda t: t.index)
        report = build_report(spec, traces)
        text = json.dumps(report, indent=2, ensure_ascii=False)
        summary["report_sha256"] = hashlib.sha256((text + "\n").encode()).hexdigest()
        summary["report"] = report
        print(f"report sha256 (same bytes as the CLI's --json output): {summary['report_sha256']}")
    for pipe in pipes:
        pipe.send("stop")
    for process in processes:
        process.join(timeout=30)
    if args.json:
        print(json.dumps(summary, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
