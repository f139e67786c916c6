"""Step-goal rules at every threshold (config/rules.json step_goal)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from pe_personas import AS_OF, LAST_WEEK, new_starter, plan, report, standard, steps

from plan_engine import ClinicianOverrides, decide_plan
from plan_engine.config import load_rules
from plan_engine.step_goal import band

RULES = load_rules().step_goal


def week(values: list[int | None]) -> list[int | None]:
    """Seven days of last week behind seven unremarkable days of the week before."""
    return [5000] * 7 + values


def goal_after(previous_goal: int, last_week: list[int | None], **changes: object) -> int:
    snapshot = standard(
        step_days=steps(week(last_week)),
        previous_plans=(plan("week-3", LAST_WEEK, previous_goal),),
        **changes,
    )
    decision = decide_plan(snapshot, AS_OF)
    assert decision.step_goal is not None
    return decision.step_goal.steps_per_day


@pytest.mark.parametrize(
    ("valid_days", "expected_rule"),
    [(3, "STEP-START-DEFAULT"), (4, "STEP-START-MEDIAN")],
)
def test_week_one_uses_the_median_only_from_four_valid_days(
    valid_days: int, expected_rule: str
) -> None:
    values: list[int | None] = [None] * (14 - valid_days) + [6000] * valid_days
    decision = decide_plan(replace(new_starter(), step_days=steps(values)), AS_OF)
    assert decision.step_goal is not None
    assert decision.step_goal.reasons[0].ref == expected_rule
    expected = 6000 if valid_days >= 4 else RULES.start_default_steps
    assert decision.step_goal.steps_per_day == expected


@pytest.mark.parametrize(
    ("median", "goal"),
    [(2999, 3000), (3000, 3000), (3001, 3100), (9999, 10000), (10000, 10000), (14000, 10000)],
)
def test_week_one_goal_is_rounded_up_and_kept_within_bounds(median: int, goal: int) -> None:
    decision = decide_plan(replace(new_starter(), step_days=steps([median] * 14)), AS_OF)
    assert decision.step_goal is not None
    assert decision.step_goal.steps_per_day == goal


@pytest.mark.parametrize(
    ("days_met", "expected"),
    [
        (7, 5500),  # +10%
        (5, 5500),  # threshold: at least 5 days met -> increase
        (4, 5000),  # 3-4 days -> hold
        (3, 5000),
        (2, 4000),  # <= 2 days: half way to the daily mean (3000): (5000+3000)/2
        (0, 4000),
    ],
)
def test_progression_from_days_met_over_valid_days(days_met: int, expected: int) -> None:
    last_week: list[int | None] = [5000] * days_met + [3000] * (7 - days_met)
    if days_met <= 2:
        last_week = [3000] * 7
    assert goal_after(5000, last_week) == expected


def test_increase_is_capped_at_max_increase() -> None:
    # 10% of 9500 = 950 -> 10450, clamped to the upper bound 10000
    assert goal_after(9500, [9600] * 7) == RULES.upper_bound_steps
    assert goal_after(10000, [12000] * 7) == RULES.upper_bound_steps


def test_decrease_is_capped_and_never_below_the_lower_bound() -> None:
    assert goal_after(9000, [1000] * 7) == 9000 - RULES.max_decrease_steps
    assert goal_after(3200, [500] * 7) == RULES.lower_bound_steps


def test_fewer_than_four_valid_days_hold_the_goal() -> None:
    assert goal_after(5000, [9000, 9000, 9000, None, None, None, None]) == 5000
    assert goal_after(5000, [9000, 9000, 9000, 9000, None, None, None]) == 5000  # 4 met of 4 < 5


def test_invalid_days_never_count_even_with_high_steps() -> None:
    # three valid days met, four invalid days far above the goal: hold (not an increase)
    snapshot = standard(
        step_days=steps([5000] * 7 + [6000, 6000, 6000, 1000, 1000, 1000, 1000]),
        previous_plans=(plan("week-3", LAST_WEEK, 5000),),
    )
    invalid = tuple(
        d if i < 10 else replace(d, steps=20000, valid=False)
        for i, d in enumerate(snapshot.step_days)
    )
    decision = decide_plan(replace(snapshot, step_days=invalid), AS_OF)
    assert decision.step_goal is not None
    assert decision.step_goal.steps_per_day == 5000


def test_daily_averages_never_weekly_sums_against_the_daily_goal() -> None:
    # a weekly sum (7 x 2000 = 14000) would exceed the 5000 goal; the daily mean (2000) does not
    goal = goal_after(5000, [2000] * 7)
    assert goal < 5000


def test_the_newest_previous_plan_is_used_whatever_the_order() -> None:
    plans = (
        plan("week-3", LAST_WEEK, 6000),
        plan("week-1", LAST_WEEK - timedelta(days=14), 3000),
        plan("week-2", LAST_WEEK - timedelta(days=7), 4000),
    )
    snapshot = standard(step_days=steps(week([6000] * 7)), previous_plans=plans)
    decision = decide_plan(snapshot, AS_OF)
    assert decision.previous_plan_id == "week-3"
    assert decision.step_goal is not None
    assert decision.step_goal.previous == 6000
    assert decision.step_goal.steps_per_day == 6600


def test_goal_is_held_in_pain_relief_mode() -> None:
    snapshot = standard(
        weekly_reports=(report(8, 4), report(1, 7)),
        step_days=steps(week([9000] * 7)),
        previous_plans=(plan("week-3", LAST_WEEK, 5000),),
    )
    decision = decide_plan(snapshot, AS_OF)
    assert decision.mode == "pain-relief"
    assert decision.step_goal is not None
    assert decision.step_goal.steps_per_day == 5000
    assert decision.step_goal.reasons[0].ref == "STEP-HOLD"


def test_clinician_fixed_goal_wins() -> None:
    snapshot = standard(overrides=ClinicianOverrides(fixed_step_goal=2500))
    decision = decide_plan(snapshot, AS_OF)
    assert decision.step_goal is not None
    assert decision.step_goal.steps_per_day == 2500
    assert decision.step_goal.reasons[0].ref == "OVERRIDE-STEP-GOAL"


@pytest.mark.parametrize(
    ("goal", "low", "high"),
    [
        (5000, 4500, 5500),
        (5999, 5399, 6599),
        (6000, 5100, 6900),
        (7999, 6799, 9199),
        (8000, 6400, 9600),
    ],
)
def test_recommended_band_widens_with_the_goal(goal: int, low: int, high: int) -> None:
    assert band(goal, RULES) == (low, high)
