"""Safety layer: review, mood pathway, nudge, consent, holds (red-flag rules:
test_plan_engine_red_flags.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from pe_personas import AS_OF, LAST_WEEK, START, baseline, plan, red_flag, report, standard, steps

from plan_engine import ConsentState, PatientSnapshot, RedFlagAnswers, decide_plan


def answers(days_before: int = 1, **flags: bool) -> RedFlagAnswers:
    return RedFlagAnswers(
        answered_on=AS_OF - timedelta(days=days_before), source="QuestionnaireResponse/rf", **flags
    )


def finding_ids(snapshot) -> list[str]:  # type: ignore[no-untyped-def]
    return [f.id for f in decide_plan(snapshot, AS_OF).findings]


@pytest.mark.parametrize(("days_before", "fires"), [(0, True), (7, True), (8, False)])
def test_red_flag_answers_count_within_the_new_data_window(days_before: int, fires: bool) -> None:
    snapshot = standard(red_flags=(answers(days_before, saddle_numbness=True),))
    assert (finding_ids(snapshot) == ["RF-SADDLE-NUMBNESS"]) is fires


@pytest.mark.parametrize(
    ("pains", "expected"),
    [
        ((8, 8), ["REV-PAIN-VERY-HIGH"]),
        ((9, 8), ["REV-PAIN-VERY-HIGH"]),
        ((7, 8), []),
        ((8, 7), []),
        ((4, 7), ["REV-PAIN-RISE"]),  # rise 3
        ((4, 6), []),  # rise 2
    ],
)
def test_clinician_review_for_pain(pains: tuple[int, int], expected: list[str]) -> None:
    snapshot = standard(weekly_reports=(report(8, pains[0]), report(1, pains[1])))
    decision = decide_plan(snapshot, AS_OF)
    assert [f.id for f in decision.findings] == expected
    if expected:
        assert decision.status == "active"
        assert decision.resources_of("Communication")[0]["priority"] == "routine"
        assert decision.step_goal is not None and decision.step_goal.steps_per_day <= 5000


@pytest.mark.parametrize(("rmdq", "fires"), [(15, False), (16, True), (24, True)])
def test_clinician_review_for_rmdq_worsening(rmdq: int, fires: bool) -> None:
    snapshot = standard(weekly_reports=(report(8, 5), report(1, 5, rmdq=rmdq)))  # baseline 11
    assert ("REV-RMDQ-WORSE" in finding_ids(snapshot)) is fires


@pytest.mark.parametrize(
    ("risk", "assessed_days_before", "fires"),
    [("high", 1, True), ("high", 30, False), ("medium", 1, False)],
)
def test_clinician_review_for_new_high_risk_start_back(
    risk: str, assessed_days_before: int, fires: bool
) -> None:
    snapshot = standard(
        baseline=baseline(
            start_back_risk=risk,
            start_back_assessed_on=AS_OF - timedelta(days=assessed_days_before),
        )
    )
    assert ("REV-STARTBACK-HIGH" in finding_ids(snapshot)) is fires


@pytest.mark.parametrize(
    ("phq8", "finding", "severity"),
    [
        (9, None, None),
        (10, "MOOD-PHQ8-MODERATE", "info"),
        (14, "MOOD-PHQ8-MODERATE", "info"),
        (15, "MOOD-PHQ8-MODERATELY-SEVERE", "review"),
        (19, "MOOD-PHQ8-MODERATELY-SEVERE", "review"),
        (20, "MOOD-PHQ8-SEVERE", "review"),
    ],
)
def test_mood_pathway_bands(phq8: int, finding: str | None, severity: str | None) -> None:
    decision = decide_plan(standard(weekly_reports=(report(8, 5), report(1, 5, phq8=phq8))), AS_OF)
    found = [(f.id, f.severity) for f in decision.findings]
    assert found == ([] if finding is None else [(finding, severity)])


def test_old_baseline_phq8_does_not_fire_every_week() -> None:
    assert finding_ids(standard(baseline=baseline(phq8=22))) == []


@pytest.mark.parametrize(("silent_days", "fires"), [(13, False), (14, True), (30, True)])
def test_nudge_after_days_without_data(silent_days: int, fires: bool) -> None:
    last = AS_OF - timedelta(days=silent_days)
    snapshot = standard(
        programme_start=min(START, last - timedelta(days=7)),
        weekly_reports=(report(silent_days, 5),),
        step_days=steps([5000] * 3, end=last + timedelta(days=1)),
        previous_plans=(plan("week-3", LAST_WEEK, 5000),),
    )
    decision = decide_plan(snapshot, AS_OF)
    assert ("NUDGE-NO-DATA" in [f.id for f in decision.findings]) is fires
    if fires:
        assert decision.patient_message is not None
        assert decision.patient_message.startswith("We have not received")


def test_withdrawn_consent_gives_no_plan() -> None:
    decision = decide_plan(standard(consent=ConsentState(programme=False)), AS_OF)
    assert decision.status == "not-permitted"
    assert decision.resources_of("CarePlan") == () and decision.resources_of("Goal") == ()
    assert decision.mode_reasons[0].ref == "CONSENT-NOT-ACTIVE"
    assert decision.resources_of("GuidanceResponse")[0]["status"] == "failure"


def test_urgent_patient_message_is_in_the_patients_language() -> None:
    decision = decide_plan(replace(red_flag(), language="da"), AS_OF)
    assert decision.patient_message is not None and "112" in decision.patient_message


def _stopped_last_week(*reviews: int) -> PatientSnapshot:
    """Week 3 was stopped (safety hold) by a red flag now out of the window; ``reviews`` are
    days before AS_OF on which a clinician recorded a review."""
    held = plan("week-3-held", LAST_WEEK, 5000, mode="safety-hold")
    base = standard()
    return replace(
        base,
        previous_plans=(*base.previous_plans[:-1], held),
        safety_reviews=tuple(AS_OF - timedelta(days=d) for d in reviews),
    )


@pytest.mark.parametrize(
    ("reviews", "held"),
    [
        ((), True),  # no review: the hold goes on (engine finding 3)
        ((8,), True),  # a review from before the hold does not count
        ((7,), False),  # reviewed on the day the hold began
        ((2,), False),
        ((0,), False),  # reviewed on the plan's first day
    ],
)
def test_a_safety_hold_lasts_until_a_clinician_review(reviews: tuple[int, ...], held: bool) -> None:
    decision = decide_plan(_stopped_last_week(*reviews), AS_OF)
    assert decision.findings == ()  # nothing new: no second Flag or Communication
    if held:
        assert (decision.status, decision.mode) == ("on-hold", "safety-hold")
        assert [r.ref for r in decision.mode_reasons] == ["SAFE-HOLD-UNTIL-REVIEW"]
        assert decision.exercises == () and decision.education == ()
        assert decision.step_goal is not None and decision.step_goal.steps_per_day <= 5000
        assert "112" in (decision.patient_message or "")
        assert decision.resources_of("Flag") == ()
    else:
        assert decision.status == "active" and decision.mode != "safety-hold"
        assert decision.exercises


def test_a_hold_of_several_weeks_counts_from_its_first_week() -> None:
    snapshot = _stopped_last_week(10)  # reviewed during the first held week
    first_hold = plan("week-2-held", LAST_WEEK - timedelta(days=7), 5000, mode="safety-hold")
    snapshot = replace(
        snapshot,
        previous_plans=(*snapshot.previous_plans[:-2], first_hold, snapshot.previous_plans[-1]),
    )
    assert decide_plan(snapshot, AS_OF).status == "active"
