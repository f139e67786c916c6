"""The simulator's oracle: "harder", "worsened", and the engine cases it found."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import pytest

from plan_engine import (
    BaselineScores,
    PatientSnapshot,
    PlannedExercise,
    PreviousPlan,
    StepDay,
    WeeklyReport,
    decide_plan,
)
from plan_engine.config import load_rules
from plan_engine.simulation.oracle import PlanShape, harder, symptoms_worsened

AS_OF = date(2026, 3, 2)  # a Monday, plan week 5
START = AS_OF - timedelta(days=28)


@pytest.mark.parametrize(
    ("new", "old", "expected"),
    [
        (PlanShape.of("standard", 5000, ()), PlanShape.of("standard", 5000, ()), ()),
        (
            PlanShape.of("standard", 5100, ()),
            PlanShape.of("standard", 5000, ()),
            ("goal 5000->5100",),
        ),
        (PlanShape.of("standard", 4900, ()), PlanShape.of("standard", 5000, ()), ()),
        (
            PlanShape.of("standard", 5000, (("abdominal", 3),)),
            PlanShape.of("standard", 5000, (("abdominal", 2),)),
            ("level abdominal 2->3",),
        ),
        (
            PlanShape.of("standard", 5000, (("gluteal", 3),)),
            PlanShape.of("standard", 5000, (("abdominal", 2),)),
            (),
        ),
        (
            PlanShape.of("standard", 5000, ()),
            PlanShape.of("pain-relief", 5000, ()),
            ("mode pain-relief->standard",),
        ),
        (PlanShape.of("pain-relief", 5000, ()), PlanShape.of("standard", 5000, ()), ()),
        (
            PlanShape.of("pain-relief", 5000, ()),
            PlanShape.of("safety-hold", 5000, ()),
            ("mode safety-hold->pain-relief",),
        ),
    ],
)
def test_harder_compares_goal_levels_per_type_and_mode(
    new: PlanShape, old: PlanShape, expected: tuple[str, ...]
) -> None:
    assert harder(new, old) == expected


def test_harder_uses_the_levels_last_used_after_a_pause() -> None:
    new = PlanShape.of("standard", 5000, (("abdominal", 3),))
    paused = PlanShape.of("pain-relief", 5000, (("pain-relief", 1),))
    assert harder(new, paused, {"abdominal": 3}) == ("mode pain-relief->standard",)
    assert "level abdominal 2->3" in harder(new, paused, {"abdominal": 2})


def _snapshot(pains: tuple[int, ...], goal: int, daily: tuple[int, ...]) -> PatientSnapshot:
    reports = tuple(
        WeeklyReport(reported_on=AS_OF - timedelta(days=1 + 7 * i), pain_average=p)
        for i, p in enumerate(reversed(pains))
    )
    steps = tuple(
        StepDay(AS_OF - timedelta(days=len(daily) - i), s, True) for i, s in enumerate(daily)
    )
    earlier = tuple(
        StepDay(AS_OF - timedelta(days=14 - i), goal, True) for i in range(7)
    )  # the week before: goal met every day
    return PatientSnapshot(
        patient_id="p-oracle",
        programme_start=START,
        programme_plan_id="programme-oracle",
        clinician_role_id="role-1",
        baseline=BaselineScores(
            completed_on=START - timedelta(days=1), age=50, sex="female", pain_average=5, rmdq=10
        ),
        exercise_minutes=15,
        weekly_reports=reports,
        step_days=earlier + steps,
        previous_plans=(
            PreviousPlan(
                "week-4",
                AS_OF - timedelta(days=7),
                goal,
                exercises=(
                    PlannedExercise("ab-dead-bug", 2),
                    PlannedExercise("back-hip-hinge", 2),
                    PlannedExercise("core-bird-dog", 2),
                ),
            ),
        ),
    )


def test_worsened_means_a_rise_in_the_new_pain() -> None:
    rules = load_rules()
    assert symptoms_worsened(_snapshot((5, 6), 6000, (6000,) * 7), AS_OF, rules)
    assert not symptoms_worsened(_snapshot((5, 5), 6000, (6000,) * 7), AS_OF, rules)
    assert not symptoms_worsened(_snapshot((6, 5), 6000, (6000,) * 7), AS_OF, rules)


def test_one_point_more_pain_never_gives_a_higher_goal() -> None:
    """Metamorphic: goal rarely met (1 of 7 days). Pain steady: the goal goes half way down.
    Pain one point higher: the goal must not end up above that."""
    daily = (6800, 6500, 6400, 6600, 6500, 6700, 6600)
    steady = _snapshot((5, 5), 6800, daily)
    worse = replace(
        steady,
        weekly_reports=(
            steady.weekly_reports[0],
            replace(steady.weekly_reports[1], pain_average=6),
        ),
    )
    as_made = decide_plan(steady, AS_OF)
    worsened = decide_plan(worse, AS_OF)
    assert as_made.step_goal is not None and worsened.step_goal is not None
    assert as_made.step_goal.steps_per_day < 6800  # STEP-DECREASE-HALFWAY
    assert worsened.step_goal.steps_per_day <= as_made.step_goal.steps_per_day


def test_rising_pain_does_not_end_pain_relief_mode() -> None:
    """Pain 2 -> 5 (PR-FLARE: pain-relief plan) -> 6: pain rose again, so the plan should
    not go back to the full strength programme this week."""
    base = _snapshot((2, 5, 6), 6000, (6000,) * 7)
    standard_week = PreviousPlan(
        "week-3",
        AS_OF - timedelta(days=14),
        6000,
        exercises=(
            PlannedExercise("ab-dead-bug", 2),
            PlannedExercise("back-hip-hinge", 2),
            PlannedExercise("core-bird-dog", 2),
        ),
    )
    relief_week = PreviousPlan(
        "week-4",
        AS_OF - timedelta(days=7),
        6000,
        mode="pain-relief",
        exercises=(
            PlannedExercise("relief-breathing", 1),
            PlannedExercise("relief-knee-rolls", 1),
            PlannedExercise("relief-rest-position", 1),
        ),
    )
    snapshot = replace(base, previous_plans=(standard_week, relief_week))
    assert symptoms_worsened(snapshot, AS_OF, load_rules())
    decision = decide_plan(snapshot, AS_OF)
    assert decision.mode != "standard", [e.exercise_id for e in decision.exercises]
    assert decision.mode == "pain-relief"
    assert [r.ref for r in decision.mode_reasons] == ["PR-CONTINUE-RISING"]
