"""The cohort report: figures computed from the patient traces (plain dicts, JSON-ready).

Definitions (docs/SIMULATION.md, "Report fields", says the same in prose):

- red-flag recall: injected red flags whose plan week is on hold, in safety-hold mode, with
  the expected finding, a ``stat`` clinician message and no exercises or education;
- false escalation: an urgent or review finding the oracle (oracle.py) finds no trigger for;
  missed escalation: the other way round;
- goal attainment: share of valid days at or above the goal, over active plan weeks with at
  least 4 valid days;
- level progression: the plan week in which a strength exercise first moves up a level;
- churn: share of a plan's elements (goal, exercise at level, education item) that were not
  in the previous plan, over pairs of consecutive active plans;
- theme coverage: share of the catalogue's education themes a patient was given;
- metamorphic: plans harder than the previous plan in weeks whose data show worse pain or
  RMDQ, and plans harder than the same week re-planned with the newest pain one point higher.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from statistics import mean, median
from typing import Any

from plan_engine import codes, load_catalogue, versions
from plan_engine.config import load_rules
from plan_engine.simulation.oracle import ESCALATIONS
from plan_engine.simulation.runner import PatientTrace, WeekRecord
from plan_engine.simulation.spec import CohortSpec

MAX_EXAMPLES = 5
PARITY_METRICS = (
    "pain_change",
    "rmdq_change",
    "rmdq_responder_share",
    "goal_attainment",
    "final_goal",
    "level_progressed_share",
    "escalations_per_100_weeks",
    "pain_relief_week_share",
    "exercise_adherence",
)


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _mean(values: list[float], digits: int = 3) -> float | None:
    return round(mean(values), digits) if values else None


def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolation percentile (q in 0-100) of ``values``."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _red_flag_detected(week: WeekRecord) -> bool:
    return (
        week.status == "on-hold"
        and week.mode == codes.MODE_SAFETY_HOLD
        and week.injected in {f for f, _ in week.findings}
        # emergency -> stat, urgent -> asap (plan_engine.codes.URGENCY_PRIORITY)
        and bool({"stat", "asap"} & set(week.clinician_priorities))
        and not week.exercises
        and not week.education
    )


def _elements(week: WeekRecord) -> set[str]:
    found = {f"goal:{week.goal}"}
    found |= {f"exercise:{e[0]}@{e[2]}" for e in week.exercises}
    found |= {f"education:{e[0]}" for e in week.education}
    return found


def _changed(new: set[str], old: set[str]) -> float | None:
    return len(new - old) / len(new) if new else None


def _first_level_rise(trace: PatientTrace) -> int | None:
    for week in trace.weeks:
        for _, exercise_type, level, previous in week.exercises:
            if exercise_type != codes.EXERCISE_TYPE_PAIN_RELIEF and previous and level > previous:
                return week.week
    return None


def _kind(harder_item: str) -> str:
    """ "goal 6700->6800" -> "goal"; "level gluteal 2->3" -> "level";
    "mode pain-relief->standard" stays whole (which pause was left matters)."""
    return harder_item if harder_item.startswith("mode") else harder_item.split(" ")[0]


def _attainment(weeks: Iterable[WeekRecord]) -> list[float]:
    return [w.met_days / w.valid_days for w in weeks if w.status == "active" and w.valid_days >= 4]


def _patient_outcomes(trace: PatientTrace) -> dict[str, float | None]:
    weeks = trace.weeks
    escalation_weeks = sum(1 for w in weeks if any(s in ESCALATIONS for _, s in w.findings))
    attainment = _attainment(weeks)
    done = sum(w.sessions_done for w in weeks)
    prescribed = sum(w.sessions_prescribed for w in weeks)
    return {
        "pain_change": trace.final_pain - trace.baseline_pain,
        "rmdq_change": trace.final_rmdq - trace.baseline_rmdq,
        "rmdq_responder_share": float(trace.final_rmdq <= 0.7 * trace.baseline_rmdq),
        "goal_attainment": mean(attainment) if attainment else None,
        "final_goal": float(weeks[-1].goal) if weeks else None,
        "level_progressed_share": float(_first_level_rise(trace) is not None),
        "escalations_per_100_weeks": 100 * escalation_weeks / len(weeks) if weeks else None,
        "pain_relief_week_share": (
            sum(1 for w in weeks if w.mode == codes.MODE_PAIN_RELIEF) / len(weeks)
            if weeks
            else None
        ),
        "exercise_adherence": done / prescribed if prescribed else None,
    }


def _group_table(
    traces: list[PatientTrace], key: str
) -> tuple[dict[str, dict[str, Any]], dict[str, float | None]]:
    groups: dict[str, list[dict[str, float | None]]] = defaultdict(list)
    for trace in traces:
        groups[str(getattr(trace, key))].append(_patient_outcomes(trace))
    table: dict[str, dict[str, Any]] = {}
    for name in sorted(groups):
        rows = groups[name]
        entry: dict[str, Any] = {"patients": len(rows)}
        for metric in PARITY_METRICS:
            entry[metric] = _mean([float(v) for r in rows if (v := r[metric]) is not None])
        table[name] = entry
    gaps: dict[str, float | None] = {}
    for metric in PARITY_METRICS:
        means = [float(e[metric]) for e in table.values() if e[metric] is not None]
        gaps[metric] = round(max(means) - min(means), 3) if len(means) > 1 else None
    return table, gaps


def build_report(spec: CohortSpec, traces: Iterable[PatientTrace]) -> dict[str, Any]:
    traces = list(traces)
    weeks = [w for t in traces for w in t.weeks]
    catalogue = load_catalogue()
    engine = versions()

    # Red flags -------------------------------------------------------------------------
    injected = [(t.index, w) for t in traces for w in t.weeks if w.injected]
    detected = [(i, w) for i, w in injected if _red_flag_detected(w)]
    by_kind: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for _, w in injected:
        by_kind[str(w.injected)][0] += 1
        by_kind[str(w.injected)][1] += int(_red_flag_detected(w))
    missed_red_flags = [
        {
            "patient": i,
            "week": w.week,
            "expected": w.injected,
            "status": w.status,
            "mode": w.mode,
            "findings": [f for f, _ in w.findings],
        }
        for i, w in injected
        if not _red_flag_detected(w)
    ]
    holds_without_injection = sum(
        1 for w in weeks if w.status == "on-hold" and not w.injected and not w.awaiting_review
    )
    holds_awaiting_review = sum(1 for w in weeks if w.awaiting_review)
    # After a stop-and-refer the next plan stays on hold until a clinician's review.
    after_stop = [
        nxt.mode
        for t in traces
        for w, nxt in zip(t.weeks, t.weeks[1:], strict=False)
        if w.injected and _red_flag_detected(w)
    ]
    near_misses = [w for w in weeks if w.near_miss]

    # Escalations against the oracle ----------------------------------------------------
    per_finding: dict[str, Counter[str]] = defaultdict(Counter)
    false_examples: list[dict[str, Any]] = []
    missed_examples: list[dict[str, Any]] = []
    escalation_weeks = 0
    for trace in traces:
        before: dict[str, str] = {}
        for w in trace.weeks:
            got = dict(w.findings)
            expected = dict(w.expected)
            for finding in got.keys() & before.keys():
                per_finding[finding]["also_the_week_before"] += 1
            before = got
            escalation_weeks += any(s in ESCALATIONS for s in got.values())
            for finding, severity in got.items():
                per_finding[finding]["raised"] += 1
                if finding not in expected:
                    per_finding[finding]["without_trigger"] += 1
                    if severity in ESCALATIONS and len(false_examples) < MAX_EXAMPLES:
                        false_examples.append(
                            {"patient": trace.index, "week": w.week, "finding": finding}
                        )
            for finding in expected:
                per_finding[finding]["expected"] += 1
                if finding not in got:
                    per_finding[finding]["missed"] += 1
                    if len(missed_examples) < MAX_EXAMPLES:
                        missed_examples.append(
                            {"patient": trace.index, "week": w.week, "finding": finding}
                        )
    severity_of = {f: s for w in weeks for f, s in w.findings} | {
        f: s for w in weeks for f, s in w.expected
    }
    escalation_ids = [f for f in per_finding if severity_of.get(f) in ESCALATIONS]
    false_escalations = sum(per_finding[f]["without_trigger"] for f in escalation_ids)
    missed_escalations = sum(per_finding[f]["missed"] for f in escalation_ids)
    escalations_raised = sum(per_finding[f]["raised"] for f in escalation_ids)

    # Goal attainment -------------------------------------------------------------------
    attainment = _attainment(weeks)
    assessed = [w for w in weeks if w.status == "active" and w.valid_days >= 4]

    # Level progression -----------------------------------------------------------------
    rises = [r for r in (_first_level_rise(t) for t in traces) if r is not None]

    # Churn -----------------------------------------------------------------------------
    churn: dict[str, list[float]] = defaultdict(list)
    goal_changed = pairs = same_education = 0
    for trace in traces:
        for old, new in zip(trace.weeks, trace.weeks[1:], strict=False):
            if old.status != "active" or new.status != "active":
                continue
            pairs += 1
            goal_changed += new.goal != old.goal
            same_education += bool(new.education) and {e[0] for e in new.education} == {
                e[0] for e in old.education
            }
            for part in ("exercise", "education"):
                value = _changed(
                    {e for e in _elements(new) if e.startswith(part)},
                    {e for e in _elements(old) if e.startswith(part)},
                )
                if value is not None:
                    churn[part].append(value)
            overall = _changed(_elements(new), _elements(old))
            if overall is not None:
                churn["overall"].append(overall)
            if old.mode == new.mode == codes.MODE_STANDARD:
                value = _changed(
                    {e for e in _elements(new) if e.startswith("exercise")},
                    {e for e in _elements(old) if e.startswith("exercise")},
                )
                if value is not None:
                    churn["exercise_standard_to_standard"].append(value)

    # Education coverage ----------------------------------------------------------------
    themes = catalogue.themes
    coverage: list[float] = []
    theme_patients: Counter[str] = Counter()
    warning_week_one = 0
    warning = load_rules().education.warning_signs_item
    for trace in traces:
        given = {theme for w in trace.weeks for _, theme, _ in w.education}
        coverage.append(len(given & set(themes)) / len(themes))
        theme_patients.update(given)
        first = trace.weeks[0] if trace.weeks else None
        warning_week_one += bool(first and any(item == warning for item, _, _ in first.education))

    # Metamorphic -----------------------------------------------------------------------
    worsened = [(t.index, w) for t in traces for w in t.weeks if w.worsened and w.week > 1]
    harder_weeks = [(i, w) for i, w in worsened if w.harder_than_before]
    harder_kinds: Counter[str] = Counter(
        _kind(item) for _, w in harder_weeks for item in w.harder_than_before
    )
    sampled = [(t.index, w) for t in traces for w in t.weeks if w.counterfactual is not None]
    counter_harder = [(i, w) for i, w in sampled if w.counterfactual]
    counter_kinds: Counter[str] = Counter(
        _kind(item) for _, w in counter_harder for item in w.counterfactual or ()
    )

    age_table, age_gaps = _group_table(traces, "age_band")
    sex_table, sex_gaps = _group_table(traces, "sex")
    modes = Counter(w.mode for w in weeks)
    return {
        "cohort": {
            "patients": len(traces),
            "weeks": spec.weeks,
            "seed": spec.seed,
            "start": spec.start.isoformat(),
            "patient_weeks": len(weeks),
            "engine": {
                "engine": engine.engine,
                "rules": engine.rules,
                "similarity": engine.similarity,
                "case_base": engine.case_base,
                "catalogue": engine.catalogue,
            },
            "female_share": _share(sum(t.sex == "female" for t in traces), len(traces)),
            "age_mean": _mean([float(t.age) for t in traces], 1),
            "age_bands": dict(sorted(Counter(t.age_band for t in traces).items())),
            "start_back": dict(sorted(Counter(t.start_back_risk for t in traces).items())),
            "baseline_rmdq_mean": _mean([t.baseline_rmdq for t in traces], 2),
            "baseline_pain_mean": _mean([t.baseline_pain for t in traces], 2),
            "modes": {m: _share(n, len(weeks)) for m, n in sorted(modes.items())},
        },
        "red_flags": {
            "injected": len(injected),
            "stopped_in_week": len(detected),
            "recall": _share(len(detected), len(injected)),
            "by_finding": {
                k: {"injected": v[0], "stopped": v[1]} for k, v in sorted(by_kind.items())
            },
            "missed": missed_red_flags[:MAX_EXAMPLES],
            "holds_without_injected_red_flag": holds_without_injection,
            "holds_awaiting_review": holds_awaiting_review,
            "next_week_after_stop": dict(sorted(Counter(after_stop).items())),
            "near_misses": len(near_misses),
            "near_misses_stopped": sum(
                1 for w in near_misses if w.status == "on-hold" and not w.awaiting_review
            ),
        },
        "escalations": {
            "raised": escalations_raised,
            "patient_weeks_with_escalation": escalation_weeks,
            "per_100_patient_weeks": (
                round(100 * escalation_weeks / len(weeks), 2) if weeks else None
            ),
            "false": false_escalations,
            "false_share": _share(false_escalations, escalations_raised),
            "missed": missed_escalations,
            "false_examples": false_examples,
            "missed_examples": missed_examples,
            "by_finding": {
                f: {
                    "severity": severity_of.get(f),
                    "raised": c["raised"],
                    "expected": c["expected"],
                    "without_trigger": c["without_trigger"],
                    "missed": c["missed"],
                    "also_the_week_before": c["also_the_week_before"],
                }
                for f, c in sorted(per_finding.items())
            },
        },
        "goal_attainment": {
            "patient_weeks_assessed": len(assessed),
            "mean_share_of_valid_days_met": _mean(attainment, 4),
            "median_share_of_valid_days_met": (
                round(median(attainment), 4) if attainment else None
            ),
            "share_of_weeks_met_on_5_or_more_days": _share(
                sum(1 for w in assessed if w.met_days >= 5), len(assessed)
            ),
            "mean_goal_by_week": {
                str(k): _mean([float(w.goal) for w in weeks if w.week == k], 0)
                for k in range(1, spec.weeks + 1)
            },
        },
        "level_progression": {
            "patients_progressed": len(rises),
            "share_progressed": _share(len(rises), len(traces)),
            "first_rise_week_median": median(rises) if rises else None,
            "first_rise_week_p25": percentile([float(r) for r in rises], 25),
            "first_rise_week_p75": percentile([float(r) for r in rises], 75),
        },
        "plan_churn": {
            "consecutive_active_pairs": pairs,
            "goal_changed_share": _share(goal_changed, pairs),
            "exercise_mean": _mean(churn["exercise"], 4),
            "exercise_standard_to_standard_mean": _mean(churn["exercise_standard_to_standard"], 4),
            "education_mean": _mean(churn["education"], 4),
            "overall_mean": _mean(churn["overall"], 4),
            "education_same_as_last_week_share": _share(same_education, pairs),
        },
        "education_coverage": {
            "themes": len(themes),
            "mean_share_of_themes": _mean(coverage, 4),
            "min_share_of_themes": round(min(coverage), 4) if coverage else None,
            "share_of_patients_with_all_themes": _share(
                sum(1 for c in coverage if c == 1.0), len(coverage)
            ),
            "warning_signs_in_week_1_share": _share(warning_week_one, len(traces)),
            "active_plans_without_7_items": sum(
                1 for w in weeks if w.status == "active" and len(w.education) != 7
            ),
            "quiz_only_share_by_week": {
                str(k): _share(
                    sum(
                        1
                        for w in weeks
                        if w.week == k and w.education and all(q for _, _, q in w.education)
                    ),
                    sum(1 for w in weeks if w.week == k and w.education),
                )
                for k in range(1, spec.weeks + 1)
            },
            "patients_per_theme": {t: theme_patients.get(t, 0) for t in themes},
        },
        "parity": {
            "age_band": age_table,
            "age_band_gaps": age_gaps,
            "sex": sex_table,
            "sex_gaps": sex_gaps,
        },
        "metamorphic": {
            "worsened_weeks": len(worsened),
            "harder_in_worsened_weeks": len(harder_weeks),
            "harder_by_kind": dict(sorted(harder_kinds.items())),
            "harder_examples": [
                {"patient": i, "week": w.week, "harder": list(w.harder_than_before)}
                for i, w in harder_weeks[:MAX_EXAMPLES]
            ],
            "counterfactual_weeks": len(sampled),
            "counterfactual_harder": len(counter_harder),
            "counterfactual_harder_by_kind": dict(sorted(counter_kinds.items())),
            "counterfactual_examples": [
                {"patient": i, "week": w.week, "harder": list(w.counterfactual or ())}
                for i, w in counter_harder[:MAX_EXAMPLES]
            ],
        },
    }
