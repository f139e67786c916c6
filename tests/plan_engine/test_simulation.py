"""The cohort simulator: deterministic, red-flag recall 100 %, and a complete, sane report."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from plan_engine import decide_plan
from plan_engine.simulation import (
    CohortSpec,
    PatientRun,
    build_report,
    run_cohort,
    simulate_cohort,
    simulate_patient,
)
from plan_engine.simulation.__main__ import main
from plan_engine.simulation.population import RED_FLAG_KINDS, RedFlagEvent, draw_patient

SMALL = CohortSpec(patients=16, weeks=8, seed=11, red_flag_rate=0.3, metamorphic_sample=0.5)


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return run_cohort(SMALL)


# -- determinism -------------------------------------------------------------------------


def test_same_seed_gives_the_same_report(report: dict[str, Any]) -> None:
    again = run_cohort(SMALL)
    assert json.dumps(again, sort_keys=True) == json.dumps(report, sort_keys=True)


def test_another_seed_gives_another_cohort(report: dict[str, Any]) -> None:
    other = run_cohort(replace(SMALL, seed=12))
    assert json.dumps(other, sort_keys=True) != json.dumps(report, sort_keys=True)


def test_a_patient_does_not_depend_on_cohort_size_or_order() -> None:
    alone = simulate_patient(replace(SMALL, patients=4), 3)
    in_cohort = list(simulate_cohort(SMALL, indices=range(5, 2, -1)))
    assert in_cohort[2] == alone


def test_a_wrapped_engine_gives_the_same_report(report: dict[str, Any]) -> None:
    calls: list[str] = []

    def counting(snapshot, as_of):  # type: ignore[no-untyped-def]
        calls.append(snapshot.patient_id)
        return decide_plan(snapshot, as_of)

    assert run_cohort(SMALL, counting) == report
    assert len(calls) >= SMALL.patients * SMALL.weeks


# -- red flags -----------------------------------------------------------------------------


def test_red_flag_recall_is_100_percent_on_a_small_cohort() -> None:
    spec = CohortSpec(patients=24, weeks=6, seed=3, red_flag_rate=1.0, near_miss_rate=0.2)
    red = run_cohort(spec)["red_flags"]
    assert red["injected"] == 24
    assert red["stopped_in_week"] == 24
    assert red["recall"] == 1.0
    assert red["missed"] == []
    assert red["holds_without_injected_red_flag"] == 0
    assert red["near_misses"] > 0
    assert red["near_misses_stopped"] == 0


@pytest.mark.parametrize(
    ("finding_id", "answers"), RED_FLAG_KINDS, ids=[k for k, _ in RED_FLAG_KINDS]
)
def test_each_injected_red_flag_stops_the_plan_of_its_week(
    finding_id: str, answers: tuple[str, ...]
) -> None:
    spec = CohortSpec(patients=1, weeks=3, seed=5, red_flag_rate=0.0, near_miss_rate=0.0)
    run = PatientRun(spec, 0)
    run.patient = replace(run.patient, red_flag=RedFlagEvent(3, finding_id, answers))
    for _ in range(spec.weeks):
        snapshot = run.snapshot()
        run.record(snapshot, decide_plan(snapshot, run.as_of), decide_plan)
    before, flagged = run.weeks[1], run.weeks[2]
    assert before.status == "active" and before.injected is None
    assert flagged.injected == finding_id
    assert flagged.status == "on-hold" and flagged.mode == "safety-hold"
    assert finding_id in {f for f, _ in flagged.findings}
    assert {"stat", "asap"} & set(flagged.clinician_priorities)
    assert flagged.exercises == () and flagged.education == ()


# -- the report ------------------------------------------------------------------------------

SECTIONS = {
    "cohort",
    "red_flags",
    "escalations",
    "goal_attainment",
    "level_progression",
    "plan_churn",
    "education_coverage",
    "parity",
    "metamorphic",
}


def _shares(report: dict[str, Any]) -> list[tuple[str, float]]:
    found = []
    for section, fields in report.items():
        for name, value in fields.items():
            if isinstance(value, float) and ("share" in name or name in {"recall"}):
                found.append((f"{section}.{name}", value))
            if name.endswith("_mean") and section == "plan_churn" and value is not None:
                found.append((f"{section}.{name}", value))
    return found


def test_report_has_every_section(report: dict[str, Any]) -> None:
    assert set(report) == SECTIONS


def test_report_shares_are_within_0_and_1(report: dict[str, Any]) -> None:
    shares = _shares(report)
    assert len(shares) > 10
    for name, value in shares:
        assert 0.0 <= value <= 1.0, name


def test_report_counts_add_up(report: dict[str, Any]) -> None:
    cohort = report["cohort"]
    assert cohort["patients"] == SMALL.patients
    assert cohort["patient_weeks"] == SMALL.patients * SMALL.weeks
    assert sum(cohort["age_bands"].values()) == SMALL.patients
    assert sum(cohort["start_back"].values()) == SMALL.patients
    assert abs(sum(cohort["modes"].values()) - 1.0) < 1e-3
    red = report["red_flags"]
    assert red["injected"] > 0 and red["recall"] == 1.0
    assert red["injected"] == sum(v["injected"] for v in red["by_finding"].values())
    escalations = report["escalations"]
    assert 0 <= escalations["false"] <= escalations["raised"]
    assert escalations["patient_weeks_with_escalation"] <= cohort["patient_weeks"]
    attainment = report["goal_attainment"]
    assert 0 < attainment["patient_weeks_assessed"] <= cohort["patient_weeks"]
    assert set(attainment["mean_goal_by_week"]) == {str(w) for w in range(1, SMALL.weeks + 1)}
    for goal in attainment["mean_goal_by_week"].values():
        assert 3000 <= goal <= 10000
    levels = report["level_progression"]
    assert 0 <= levels["patients_progressed"] <= SMALL.patients
    if levels["patients_progressed"]:
        assert 2 <= levels["first_rise_week_median"] <= SMALL.weeks
    education = report["education_coverage"]
    assert education["themes"] == 14
    assert education["warning_signs_in_week_1_share"] == 1.0
    assert education["active_plans_without_7_items"] == 0
    meta = report["metamorphic"]
    assert meta["harder_in_worsened_weeks"] <= meta["worsened_weeks"]
    assert meta["counterfactual_harder"] <= meta["counterfactual_weeks"]
    assert meta["counterfactual_weeks"] > 0


def test_report_parity_covers_both_sexes_with_every_metric(report: dict[str, Any]) -> None:
    parity = report["parity"]
    assert set(parity["sex"]) == {"female", "male"}
    assert sum(g["patients"] for g in parity["age_band"].values()) == SMALL.patients
    for table in ("age_band", "sex"):
        for group in parity[table].values():
            assert {"pain_change", "rmdq_change", "goal_attainment", "final_goal"} <= set(group)
        assert set(parity[f"{table}_gaps"]) >= {"goal_attainment", "escalations_per_100_weeks"}


def test_the_engine_raises_exactly_the_documented_escalations(report: dict[str, Any]) -> None:
    """The oracle restates the documented safety triggers; engine and oracle agree."""
    escalations = report["escalations"]
    assert escalations["false"] == 0, escalations["false_examples"]
    assert escalations["missed"] == 0, escalations["missed_examples"]


def test_report_is_json_ready(report: dict[str, Any]) -> None:
    assert json.loads(json.dumps(report)) == report


def test_build_report_from_traces_equals_run_cohort(report: dict[str, Any]) -> None:
    assert build_report(SMALL, list(simulate_cohort(SMALL))) == report


# -- population ------------------------------------------------------------------------------


def test_population_meets_the_trial_entry_criteria() -> None:
    spec = CohortSpec(patients=300, weeks=12, seed=1)
    patients = [draw_patient(spec, i) for i in range(spec.patients)]
    assert all((p.baseline.age or 0) >= 18 for p in patients)
    assert all((p.baseline.rmdq or 0) >= 6 for p in patients)
    women = sum(p.baseline.sex == "female" for p in patients) / len(patients)
    assert 0.45 <= women <= 0.65
    strata = {
        r: sum(p.baseline.start_back_risk == r for p in patients) for r in ("low", "medium", "high")
    }
    assert all(n > 0 for n in strata.values())
    assert all(p.red_flag is None or 2 <= p.red_flag.week <= spec.weeks for p in patients)


def test_spec_rejects_impossible_cohorts() -> None:
    with pytest.raises(ValueError):
        CohortSpec(patients=0)
    with pytest.raises(ValueError):
        CohortSpec(weeks=0)
    with pytest.raises(ValueError):
        CohortSpec(red_flag_rate=1.5)


# -- CLI -------------------------------------------------------------------------------------


def test_cli_prints_the_report_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--patients", "3", "--weeks", "2", "--seed", "7", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed) == SECTIONS
    assert printed["cohort"]["patients"] == 3


def test_cli_prints_markdown_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--patients", "2", "--weeks", "2"]) == 0
    out = capsys.readouterr().out
    assert "red-flag recall" in out and "| sex |" in out


def test_stopped_plans_wait_for_the_clinicians_review() -> None:
    """Engine finding 3: with every review late (8-13 days), the week after each stop stays
    on hold (SAFE-HOLD-UNTIL-REVIEW); with every review within 5 days, none does."""
    late = run_cohort(
        CohortSpec(patients=24, weeks=6, seed=3, red_flag_rate=1.0, late_review_rate=1.0)
    )["red_flags"]
    prompt = run_cohort(
        CohortSpec(patients=24, weeks=6, seed=3, red_flag_rate=1.0, late_review_rate=0.0)
    )["red_flags"]
    assert late["recall"] == prompt["recall"] == 1.0
    stops_with_a_next_week = sum(prompt["next_week_after_stop"].values())
    assert stops_with_a_next_week > 0
    assert late["next_week_after_stop"] == {"safety-hold": stops_with_a_next_week}
    assert late["holds_awaiting_review"] >= stops_with_a_next_week
    assert "safety-hold" not in prompt["next_week_after_stop"]
    assert prompt["holds_awaiting_review"] == 0
    assert late["holds_without_injected_red_flag"] == prompt["holds_without_injected_red_flag"] == 0
