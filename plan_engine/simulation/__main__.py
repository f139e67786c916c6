"""``python -m plan_engine.simulation --patients 1000 --weeks 12 --seed 7 --json``

Prints the cohort report: JSON with ``--json``, otherwise Markdown tables. The report is the
same for the same arguments; engine latency is measured by bench/plan_engine_weekly.py,
since this package reads no clock.
"""

from __future__ import annotations

import argparse
import json
import sys

from plan_engine.simulation import CohortSpec, run_cohort
from plan_engine.simulation.report import render_markdown


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m plan_engine.simulation",
        description="Run a synthetic selfBACK-like cohort through the plan engine, week by week.",
    )
    defaults = CohortSpec()
    parser.add_argument("--patients", type=int, default=defaults.patients)
    parser.add_argument("--weeks", type=int, default=defaults.weeks, help="12-26 is typical")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--red-flag-rate", type=float, default=defaults.red_flag_rate)
    parser.add_argument("--near-miss-rate", type=float, default=defaults.near_miss_rate)
    parser.add_argument(
        "--metamorphic-sample",
        type=float,
        default=defaults.metamorphic_sample,
        help="share of patient-weeks re-planned with the newest pain one point higher",
    )
    parser.add_argument(
        "--late-review-rate",
        type=float,
        default=defaults.late_review_rate,
        help="share of stop-and-refers a clinician reviews only after 8-13 days",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    args = parser.parse_args(argv)
    try:
        spec = CohortSpec(
            patients=args.patients,
            weeks=args.weeks,
            seed=args.seed,
            red_flag_rate=args.red_flag_rate,
            near_miss_rate=args.near_miss_rate,
            metamorphic_sample=args.metamorphic_sample,
            late_review_rate=args.late_review_rate,
        )
    except ValueError as error:
        parser.error(str(error))
    report = run_cohort(spec)
    if args.json:
        sys.stdout.write(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(render_markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
