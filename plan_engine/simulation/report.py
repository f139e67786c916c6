"""The cohort report as Markdown tables (what docs/SIMULATION.md shows)."""

from __future__ import annotations

from typing import Any


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += [
        "| " + " | ".join(_fmt(c) if not isinstance(c, str) else c for c in r) + " |" for r in rows
    ]
    return lines


def render_markdown(report: dict[str, Any]) -> str:
    c = report["cohort"]
    rf = report["red_flags"]
    esc = report["escalations"]
    goal = report["goal_attainment"]
    levels = report["level_progression"]
    churn = report["plan_churn"]
    edu = report["education_coverage"]
    meta = report["metamorphic"]
    engine = c["engine"]
    out: list[str] = []
    out.append(
        f"Cohort: {c['patients']:,} patients × {c['weeks']} weeks = {c['patient_weeks']:,} "
        f"plans, seed {c['seed']}, start {c['start']}. Engine {engine['engine']}, rules "
        f"{engine['rules']}, case base {engine['case_base']}, catalogue {engine['catalogue']}."
    )
    out.append("")
    out.append("**Population drawn**")
    out.append("")
    out += _table(
        ("measure", "value"),
        [
            ("women", _pct(c["female_share"])),
            ("mean age", c["age_mean"]),
            ("age bands", ", ".join(f"{k}: {v}" for k, v in c["age_bands"].items())),
            ("STarT Back", ", ".join(f"{k}: {v}" for k, v in c["start_back"].items())),
            ("mean baseline RMDQ", c["baseline_rmdq_mean"]),
            ("mean baseline pain (NRS)", c["baseline_pain_mean"]),
            ("plan modes", ", ".join(f"{k}: {_pct(v)}" for k, v in c["modes"].items())),
        ],
    )
    out.append("")
    out.append("**Safety**")
    out.append("")
    out += _table(
        ("measure", "value"),
        [
            ("red flags injected", rf["injected"]),
            ("stopped (on hold, stop-and-refer) in the week reported", rf["stopped_in_week"]),
            ("red-flag recall", _pct(rf["recall"])),
            ("plans on hold without an injected red flag", rf["holds_without_injected_red_flag"]),
            (
                "plans kept on hold awaiting a clinician's review (SAFE-HOLD-UNTIL-REVIEW)",
                rf["holds_awaiting_review"],
            ),
            (
                "mode of the next plan after a stop-and-refer",
                ", ".join(f"{k}: {v}" for k, v in rf["next_week_after_stop"].items()) or "–",
            ),
            (
                "near misses (one sign that needs new pain) / stopped",
                f"{rf['near_misses']} / {rf['near_misses_stopped']}",
            ),
            ("escalations raised (urgent + review findings)", esc["raised"]),
            (
                "patient-weeks with an escalation",
                f"{esc['patient_weeks_with_escalation']:,} ({esc['per_100_patient_weeks']} per 100)",
            ),
            ("false escalations (no trigger in the data)", esc["false"]),
            ("missed escalations (trigger in the data, none raised)", esc["missed"]),
        ],
    )
    out.append("")
    out += _table(
        ("red flag", "injected", "stopped in week"),
        [(k, v["injected"], v["stopped"]) for k, v in rf["by_finding"].items()],
    )
    out.append("")
    out += _table(
        (
            "finding",
            "severity",
            "raised",
            "expected by oracle",
            "raised without trigger",
            "missed",
            "also raised the week before",
        ),
        [
            (
                k,
                v["severity"],
                v["raised"],
                v["expected"],
                v["without_trigger"],
                v["missed"],
                v["also_the_week_before"],
            )
            for k, v in esc["by_finding"].items()
        ],
    )
    out.append("")
    out.append("**Plans**")
    out.append("")
    out += _table(
        ("measure", "value"),
        [
            (
                "goal attainment: mean share of valid days at or above the goal",
                _pct(goal["mean_share_of_valid_days_met"]),
            ),
            ("goal attainment: median", _pct(goal["median_share_of_valid_days_met"])),
            (
                "weeks with the goal met on 5 or more days",
                _pct(goal["share_of_weeks_met_on_5_or_more_days"]),
            ),
            (
                "patient-weeks assessed (active plan, ≥ 4 valid days)",
                goal["patient_weeks_assessed"],
            ),
            (
                "patients with a level rise",
                f"{levels['patients_progressed']:,} ({_pct(levels['share_progressed'])})",
            ),
            (
                "plan week of the first level rise: median (p25–p75)",
                f"{_fmt(levels['first_rise_week_median'])} ({_fmt(levels['first_rise_week_p25'])}–{_fmt(levels['first_rise_week_p75'])})",
            ),
            ("churn, all elements", _pct(churn["overall_mean"])),
            ("churn, exercises (any modes)", _pct(churn["exercise_mean"])),
            (
                "churn, exercises (standard → standard)",
                _pct(churn["exercise_standard_to_standard_mean"]),
            ),
            ("churn, education", _pct(churn["education_mean"])),
            ("goal changed week to week", _pct(churn["goal_changed_share"])),
            (
                "education set identical to last week's",
                _pct(churn["education_same_as_last_week_share"]),
            ),
            (
                "education themes covered per patient: mean (min)",
                f"{_pct(edu['mean_share_of_themes'])} ({_pct(edu['min_share_of_themes'])}) of {edu['themes']}",
            ),
            ("patients given all themes", _pct(edu["share_of_patients_with_all_themes"])),
            ("warning signs in week 1", _pct(edu["warning_signs_in_week_1_share"])),
            ("active plans without exactly 7 education items", edu["active_plans_without_7_items"]),
        ],
    )
    out.append("")
    out.append(
        "Mean goal by plan week (steps/day): "
        + ", ".join(f"w{k} {_fmt(v)}" for k, v in goal["mean_goal_by_week"].items())
        + "."
    )
    out.append(
        "Plans whose education is quiz repeats only, by plan week: "
        + ", ".join(f"w{k} {_pct(v)}" for k, v in edu["quiz_only_share_by_week"].items())
        + "."
    )
    out.append("")
    out.append("**Metamorphic check: no plan gets harder in a week where symptoms worsened**")
    out.append("")
    out += _table(
        ("check", "weeks checked", "harder", "what got harder"),
        [
            (
                "against last week's plan, in weeks whose data show worse pain or RMDQ",
                meta["worsened_weeks"],
                meta["harder_in_worsened_weeks"],
                ", ".join(f"{k}: {v}" for k, v in meta["harder_by_kind"].items()) or "–",
            ),
            (
                "same week re-planned with the newest pain + 1, against the plan as made",
                meta["counterfactual_weeks"],
                meta["counterfactual_harder"],
                ", ".join(f"{k}: {v}" for k, v in meta["counterfactual_harder_by_kind"].items())
                or "–",
            ),
        ],
    )
    out.append("")
    out.append("**Outcome parity**")
    for key, label in (("age_band", "age band"), ("sex", "sex")):
        table = report["parity"][key]
        gaps = report["parity"][f"{key}_gaps"]
        metrics = [m for m in next(iter(table.values())) if m != "patients"]
        out.append("")
        header = (label, "patients", *metrics)
        rows: list[tuple[Any, ...]] = [
            (name, entry["patients"], *(entry[m] for m in metrics)) for name, entry in table.items()
        ]
        rows.append(("gap (max − min)", "", *(gaps[m] for m in metrics)))
        out += _table(header, rows)
    out.append("")
    return "\n".join(out)
