"""How long ``profiles.validate`` takes per resource, on the Synthea patients in ../shared.

Run from the repository root::

    .venv/bin/python -m tests.profiles.speed ../shared/synthea-r4

Every resource is validated once to warm the caches (definitions are built and FHIRPath
expressions compiled on first use), then timed over ``--rounds`` further passes. Figures are
per resource: mean, median and 95th percentile, overall and for the most common types, plus
our daily-step profile on a typical step Observation (the server's most frequent write).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import profiles
from tests.profiles.builders import daily_steps


def _timed(resource: dict[str, Any]) -> float:
    started = time.perf_counter()
    profiles.validate(resource)
    return time.perf_counter() - started


def _figures(seconds: list[float]) -> str:
    ordered = sorted(seconds)
    p95 = ordered[int(0.95 * (len(ordered) - 1))]
    mean = statistics.fmean(ordered)
    return (
        f"mean {mean * 1e6:6.0f} µs, median {statistics.median(ordered) * 1e6:6.0f} µs, "
        f"p95 {p95 * 1e6:6.0f} µs"
    )


def main(argv: Iterable[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("synthea", type=Path, help="folder of Synthea R4 bundles")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(list(argv) if argv is not None else None)
    resources = [
        entry["resource"]
        for path in sorted(args.synthea.glob("*_*.json"))
        for entry in json.loads(path.read_text())["entry"]
    ]
    for resource in resources:
        profiles.validate(resource)
    by_type: dict[str, list[float]] = defaultdict(list)
    for _ in range(args.rounds):
        for resource in resources:
            by_type[resource["resourceType"]].append(_timed(resource))
    every = [t for times in by_type.values() for t in times]
    print(f"{len(resources)} Synthea resources x {args.rounds} rounds: {_figures(every)}")
    for name, times in sorted(by_type.items(), key=lambda kv: -len(kv[1]))[:8]:
        print(f"  {name:22} {len(times) // args.rounds:5}  {_figures(times)}")
    steps = daily_steps()
    profiles.validate(steps)
    timings = [_timed(steps) for _ in range(2000)]
    print(f"daily-steps Observation against its profile: {_figures(timings)}")


if __name__ == "__main__":
    main()
