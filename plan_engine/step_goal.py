"""Step-goal rules: week-1 start, weekly progression from attainment, bounds and holds.

Attainment is judged on DAILY values over valid days only (never a weekly sum against a
daily goal), against the goal of the NEWEST previous plan (never the oldest).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import date, timedelta
from statistics import median

from plan_engine.config import StepGoalRules
from plan_engine.decision import Reason, StepGoalDecision
from plan_engine.snapshot import PreviousPlan, StepDay


@dataclass(frozen=True, slots=True)
class StepContext:
    """What the step rules need beyond step data: the newest plan and the holds in force."""

    previous: PreviousPlan | None
    fixed_goal: int | None
    hold_reasons: tuple[Reason, ...]  # pain-relief mode, safety findings, worsening
    patient_target: int | None = None  # the patient's own daily target (goal setting)


def round_up(value: float, step: int) -> int:
    return int(math.ceil(value / step) * step)


def clamp(value: int, rules: StepGoalRules) -> int:
    return max(rules.lower_bound_steps, min(rules.upper_bound_steps, value))


def band(goal: int, rules: StepGoalRules) -> tuple[int, int]:
    fraction = 0.0
    for start, frac in rules.band:
        if goal >= start:
            fraction = frac
    half = goal * fraction
    return int(round(goal - half)), int(round(goal + half))


def _rule(rule_id: str, text: str) -> Reason:
    return Reason("rule", rule_id, 1.0, text)


def starting_goal(days: tuple[StepDay, ...], as_of: date, rules: StepGoalRules) -> StepGoalDecision:
    window = [
        d.steps
        for d in days
        if d.valid and as_of - timedelta(days=rules.baseline_window_days) <= d.day < as_of
    ]
    if len(window) >= rules.start_min_valid_days:
        observed = median(window)
        goal = clamp(round_up(observed, rules.rounding_steps), rules)
        reason = _rule(
            "STEP-START-MEDIAN",
            f"Week 1: median of {len(window)} valid days ({observed:.0f} steps/day), "
            f"rounded up to {rules.rounding_steps} and kept within "
            f"{rules.lower_bound_steps}-{rules.upper_bound_steps}.",
        )
    else:
        goal = clamp(rules.start_default_steps, rules)
        reason = _rule(
            "STEP-START-DEFAULT",
            f"Week 1: only {len(window)} valid days (fewer than {rules.start_min_valid_days}), "
            f"so the default start of {rules.start_default_steps} steps/day.",
        )
    low, high = band(goal, rules)
    return StepGoalDecision(goal, low, high, None, (reason,))


def override_refusal(fixed_goal: int, rules: StepGoalRules) -> str | None:
    """The bound a clinician's fixed goal breaks, or None when it is within the bounds the
    rules allow for overrides (``override_min_steps``..``override_max_steps``). The server
    refuses such a Goal at write time with the same words (422)."""
    if fixed_goal < rules.override_min_steps:
        return (
            f"{fixed_goal} steps/day is below the lowest goal a clinician may set "
            f"(override_min_steps {rules.override_min_steps})"
        )
    if fixed_goal > rules.override_max_steps:
        return (
            f"{fixed_goal} steps/day is above the highest goal a clinician may set "
            f"(override_max_steps {rules.override_max_steps})"
        )
    return None


def next_goal(
    days: tuple[StepDay, ...], as_of: date, context: StepContext, rules: StepGoalRules
) -> StepGoalDecision:
    if context.fixed_goal is not None:
        refusal = override_refusal(context.fixed_goal, rules)
        if refusal is not None:
            decided = next_goal(days, as_of, replace(context, fixed_goal=None), rules)
            refused = Reason(
                "override",
                "OVERRIDE-STEP-GOAL-REFUSED",
                1.0,
                f"The clinician's fixed goal was not used: {refusal}.",
            )
            return replace(decided, reasons=(*decided.reasons, refused))
    previous = context.previous
    if context.fixed_goal is not None:
        goal = context.fixed_goal
        low, high = band(goal, rules)
        reason = Reason(
            "override",
            "OVERRIDE-STEP-GOAL",
            1.0,
            f"Goal fixed at {goal} steps/day by the clinician.",
        )
        return StepGoalDecision(
            goal, low, high, previous.step_goal if previous else None, (reason,)
        )
    if previous is None:
        return _towards_target(starting_goal(days, as_of, rules), None, context, rules)

    old = previous.step_goal
    window = [
        d
        for d in days
        if d.valid and as_of - timedelta(days=rules.attainment_window_days) <= d.day < as_of
    ]
    daily_mean = sum(d.steps for d in window) / len(window) if window else 0.0
    met = sum(1 for d in window if d.steps >= old)
    observed = (
        f"{met} of {len(window)} valid days at or above {old} steps/day "
        f"(daily mean {daily_mean:.0f} over valid days)"
    )
    reasons: tuple[Reason, ...]
    if len(window) < rules.min_valid_days_for_change:
        goal, reasons = (
            old,
            (
                _rule(
                    "STEP-HOLD-FEW-VALID-DAYS",
                    f"Goal held at {old}: only {len(window)} valid days "
                    f"(fewer than {rules.min_valid_days_for_change}).",
                ),
            ),
        )
    elif met >= rules.days_met_for_increase:
        rise = min(old * rules.increase_fraction, rules.max_increase_steps)
        goal = round_up(old + rise, rules.rounding_steps)
        goal = min(goal, old + rules.max_increase_steps)
        reasons = (
            _rule(
                "STEP-INCREASE",
                f"{observed}: goal met on at least {rules.days_met_for_increase} days, so up "
                f"{rules.increase_fraction:.0%} (at most {rules.max_increase_steps}).",
            ),
        )
    elif met >= rules.days_met_for_hold:
        goal, reasons = (
            old,
            (_rule("STEP-HOLD-PARTLY-MET", f"{observed}: goal partly met, so held at {old}."),),
        )
    else:
        halfway = round_up((old + daily_mean) / 2, rules.rounding_steps)
        goal = max(min(halfway, old), old - rules.max_decrease_steps)
        reasons = (
            _rule(
                "STEP-DECREASE-HALFWAY",
                f"{observed}: goal rarely met, so moved half way towards the daily mean "
                f"(at most {rules.max_decrease_steps} down, never up).",
            ),
        )
    if context.hold_reasons and goal >= old:
        # A hold stops the goal rising; it does not stop a fall (STEP-DECREASE-HALFWAY keeps
        # its reason, the hold's reasons are added to say why nothing went up).
        goal, reasons = (
            old,
            (
                _rule("STEP-HOLD", f"Goal held at {old}: the plan may not get harder this week."),
                *context.hold_reasons,
            ),
        )
    elif context.hold_reasons:
        reasons = (*reasons, *context.hold_reasons)
    bounded = clamp(goal, rules)
    if context.hold_reasons:
        bounded = min(bounded, old)  # a hold never raises, even an old goal below the bounds
    if bounded != goal:
        reasons = (
            *reasons,
            _rule(
                "STEP-BOUNDS",
                f"Kept within {rules.lower_bound_steps}-{rules.upper_bound_steps} steps/day.",
            ),
        )
    low, high = band(bounded, rules)
    return _towards_target(StepGoalDecision(bounded, low, high, old, reasons), old, context, rules)


def _towards_target(
    decided: StepGoalDecision, old: int | None, context: StepContext, rules: StepGoalRules
) -> StepGoalDecision:
    """GOAL-PATIENT-TARGET: the goal works towards the patient's own target (goal-setting
    questionnaire; selfBACK Table 1, goal setting) and never rises past it. A goal already
    above the target is not lowered for it; the target is kept within the rules' bounds."""
    if context.patient_target is None:
        return decided
    target = clamp(round_up(context.patient_target, rules.rounding_steps), rules)
    goal = decided.steps_per_day
    if goal <= target or (old is not None and goal <= old):
        return replace(
            decided,
            reasons=(
                *decided.reasons,
                _rule(
                    "GOAL-PATIENT-TARGET",
                    f"Working towards your own goal of {target} steps/day.",
                ),
            ),
        )
    capped = target if old is None else max(target, old)
    low, high = band(capped, rules)
    return replace(
        decided,
        steps_per_day=capped,
        band_low=low,
        band_high=high,
        reasons=(
            *decided.reasons,
            _rule(
                "GOAL-PATIENT-TARGET",
                f"Kept at {capped}: the patient's own goal is {target} steps/day, and the "
                "weekly goal does not rise past it.",
            ),
        ),
    )
