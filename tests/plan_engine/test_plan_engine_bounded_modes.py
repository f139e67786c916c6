"""Bounded modes and overrides (issue 11 item 3) and exercise ratings (item 5), table-driven.

- PR-MAX-WEEKS / REV-PAIN-RELIEF-LIMIT / PR-GRADED-RETURN: pain-relief mode lasts at most
  ``pain_relief_mode.max_consecutive_weeks`` weeks (NICE NG59 1.2.1, stay active), then a
  clinician review is requested and a graded return is planned.
- EX-CONTRAINDICATED: osteoporosis and vertebral fracture exclude loaded or repeated spinal
  flexion (ROS2019), in standard and in pain-relief mode.
- OVERRIDE-STEP-GOAL-REFUSED: a clinician's goal outside the override bounds is ignored.
- EX-RATED-*: a completed exercise rated easy / just right / hard / painful.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from pe_personas import (
    AS_OF,
    LAST_WEEK,
    STANDARD_EXERCISES,
    START,
    baseline,
    plan,
    report,
    standard,
)

from plan_engine import (
    ClinicianOverrides,
    ExerciseLog,
    PatientGoals,
    PatientSnapshot,
    RaisedFinding,
    decide_plan,
    load_catalogue,
)
from plan_engine.config import load_rules

RULES = load_rules()
CATALOGUE = load_catalogue()
LIMIT = RULES.pain_relief.max_weeks
RELIEF = (("relief-breathing", 1), ("relief-knee-rolls", 1), ("relief-rest-position", 1))
WEEK_2 = START + timedelta(days=7)


def _relief_history(relief_weeks: int) -> tuple:
    """Weeks 1-3 before AS_OF; the last ``relief_weeks`` of them in pain-relief mode."""
    starts = (START, WEEK_2, LAST_WEEK)
    plans = []
    for index, week_start in enumerate(starts):
        relief = index >= len(starts) - relief_weeks
        plans.append(
            plan(
                f"week-{index + 1}",
                week_start,
                5000,
                RELIEF if relief else STANDARD_EXERCISES,
                mode="pain-relief" if relief else "standard",
            )
        )
    return tuple(plans)


def _refs(reasons: tuple) -> list[str]:
    return [r.ref for r in reasons]


def test_the_limit_is_configured_below_the_history_window() -> None:
    # The run of pain-relief weeks must be visible in the bounded snapshot.
    assert 1 <= LIMIT <= RULES.pain_relief.window_weeks <= RULES.history.plan_weeks


@pytest.mark.parametrize(
    ("relief_weeks", "pain", "mode", "limit_finding"),
    [
        (0, 8, "pain-relief", False),  # PR-HIGH-PAIN enters
        (LIMIT - 1, 8, "pain-relief", False),  # still within the limit
        (LIMIT, 8, "standard", True),  # PR-MAX-WEEKS: review + graded return
        (LIMIT, 7, "standard", True),
        (LIMIT, 4, "standard", False),  # pain settled: ordinary end, graded return only
    ],
)
def test_pain_relief_mode_lasts_at_most_the_configured_weeks(
    relief_weeks: int, pain: int, mode: str, limit_finding: bool
) -> None:
    snapshot = standard(
        previous_plans=_relief_history(relief_weeks),
        weekly_reports=(report(8, pain), report(1, pain)),
    )
    decision = decide_plan(snapshot, AS_OF)
    assert decision.mode == mode
    ids = [f.id for f in decision.findings]
    assert ("REV-PAIN-RELIEF-LIMIT" in ids) is limit_finding
    if limit_finding:
        assert "PR-MAX-WEEKS" in _refs(decision.mode_reasons)
        assert decision.status == "active"
        assert decision.patient_message == RULES.patient_messages.text("review", "en")
    if mode == "standard" and relief_weeks:
        assert "PR-GRADED-RETURN" in _refs(decision.mode_reasons)
        assert all(e.type != "pain-relief" or e.level == 1 for e in decision.exercises)


def test_pain_relief_does_not_start_again_the_week_after_the_limit_and_asks_once() -> None:
    """Weeks 2-3 pain-relief, week 4 the limit (review, graded return); pain still 8 in
    week 5: still standard (2 of the last 4 weeks were pain-relief), no second review for
    the same run of plans. Week 7 (one pain-relief week left in the window): allowed again."""
    limit_week = decide_plan(
        standard(
            previous_plans=_relief_history(LIMIT), weekly_reports=(report(8, 8), report(1, 8))
        ),
        AS_OF,
    )
    assert "REV-PAIN-RELIEF-LIMIT" in [f.id for f in limit_week.findings]
    later = AS_OF + timedelta(days=7)
    plans = (
        *_relief_history(LIMIT),
        plan("week-4", AS_OF, 5000, STANDARD_EXERCISES),
    )
    raised = tuple(
        replace(
            p,
            findings=(
                RaisedFinding("REV-PAIN-RELIEF-LIMIT", ("CarePlan/week-2", "CarePlan/week-3")),
            ),
        )
        if p.plan_id == "week-4"
        else p
        for p in plans
    )
    week_5 = decide_plan(
        standard(previous_plans=raised, weekly_reports=(report(1, 8), report(-6, 8))), later
    )
    assert week_5.mode == "standard"
    assert "PR-MAX-WEEKS" in _refs(week_5.mode_reasons)
    assert "REV-PAIN-RELIEF-LIMIT" not in [f.id for f in week_5.findings]
    week_7 = AS_OF + timedelta(days=21)
    allowed = decide_plan(
        standard(
            previous_plans=(
                plan("week-3", LAST_WEEK, 5000, RELIEF, mode="pain-relief"),
                plan("week-4", AS_OF, 5000, STANDARD_EXERCISES),
                plan("week-5", later, 5000, STANDARD_EXERCISES),
                plan("week-6", later + timedelta(days=7), 5000, STANDARD_EXERCISES),
            ),
            weekly_reports=(report(-13, 8), report(-20, 8)),
        ),
        week_7,
    )
    assert allowed.mode == "pain-relief"


def test_the_limit_review_is_a_flag_a_detected_issue_and_a_communication() -> None:
    snapshot = standard(
        previous_plans=_relief_history(LIMIT), weekly_reports=(report(8, 8), report(1, 8))
    )
    decision = decide_plan(snapshot, AS_OF)
    finding = next(f for f in decision.findings if f.id == "REV-PAIN-RELIEF-LIMIT")
    assert finding.severity == "review"
    assert set(finding.evidence) == {"CarePlan/week-2", "CarePlan/week-3"}
    by_type: dict[str, list[dict]] = {}
    for resource in decision.resources:
        by_type.setdefault(resource["resourceType"], []).append(resource)
    codes_of = [c["code"] for flag in by_type["Flag"] for c in flag["code"]["coding"]]
    assert "REV-PAIN-RELIEF-LIMIT" in codes_of
    issue = next(
        i
        for i in by_type["DetectedIssue"]
        if any(c["code"] == "REV-PAIN-RELIEF-LIMIT" for c in i["code"]["coding"])
    )
    details = [d["reference"] for e in issue["evidence"] for d in e["detail"]]
    assert details == ["CarePlan/week-2", "CarePlan/week-3"]
    assert any(
        c["priority"] == "routine"  # review findings: routine (issue 11 item 1)
        and "Pain-relief mode for 2 weeks" in c["payload"][0]["contentString"]
        for c in by_type["Communication"]
    )


def test_graded_return_holds_the_goal_and_lowers_levels_then_climbs_with_the_usual_rules() -> None:
    before = plan(
        "week-2", WEEK_2, 6000, (("ab-dead-bug", 4), ("back-hip-hinge", 3), ("core-plank", 1))
    )
    relief = plan("week-3", LAST_WEEK, 5000, RELIEF, mode="pain-relief")
    snapshot = standard(
        previous_plans=(before, relief),
        weekly_reports=(report(8, 7), report(1, 3)),
        step_days=tuple(
            d for d in standard().step_days
        ),  # the goal of 5000 was met on most days: without the graded return it would rise
    )
    decision = decide_plan(snapshot, AS_OF)
    assert decision.mode == "standard"
    levels = {e.exercise_id: e.level for e in decision.exercises}
    assert levels == {"ab-dead-bug": 3, "back-hip-hinge": 2, "core-plank": 1}  # floor at 1
    assert decision.step_goal.steps_per_day == 5000
    assert "PR-GRADED-RETURN" in _refs(decision.step_goal.reasons)

    # The week after: a standard plan again, so the usual rules move levels and the goal.
    back = plan(
        "week-4",
        AS_OF,
        5000,
        tuple((e.exercise_id, e.level) for e in decision.exercises),
    )
    later = AS_OF + timedelta(days=7)
    logs = tuple(
        ExerciseLog(later - timedelta(days=d), "ab-dead-bug", 3, (10, 10, 10), rating="easy")
        for d in (6, 4)
    )
    next_week = decide_plan(
        standard(
            patient_id="p-standard",
            previous_plans=(before, relief, back),
            weekly_reports=(report(1, 3), report(-6, 3)),
            exercise_logs=logs,
            step_days=tuple(
                type(d)(d.day + timedelta(days=7), d.steps, d.valid) for d in standard().step_days
            ),
        ),
        later,
    )
    assert next_week.mode == "standard"
    assert "PR-GRADED-RETURN" not in _refs(next_week.mode_reasons)
    ab = next(e for e in next_week.exercises if e.exercise_id == "ab-dead-bug")
    assert ab.level == 4 and "EX-RATED-EASY-UP" in _refs(ab.reasons)


SPINAL_FLEXION = {"loaded-spinal-flexion", "repeated-spinal-flexion"}


def _tags(decision) -> set[str]:
    tags: set[str] = set()
    for e in decision.exercises:
        tags |= CATALOGUE.exercise(e.exercise_id, e.level).contraindications
    return tags


def test_the_catalogue_tags_curl_ups_and_forward_bends() -> None:
    tagged = {
        (e, level)
        for e in CATALOGUE.exercise_ids("abdominal")
        + CATALOGUE.exercise_ids("flexibility")
        + CATALOGUE.exercise_ids("pain-relief")
        for level in CATALOGUE.levels(e)
        if CATALOGUE.exercise(e, level).contraindications & SPINAL_FLEXION
    }
    assert {("ab-curl", lvl) for lvl in range(2, 7)} <= tagged
    assert ("relief-cat-camel", 1) in tagged and ("relief-knees-to-chest", 1) in tagged
    assert ("ab-curl", 1) not in tagged  # a pelvic tilt, no trunk flexion


@pytest.mark.parametrize("condition", ["osteoporosis", "vertebral-fracture"])
@pytest.mark.parametrize(
    ("mode_reports", "expected_mode"),
    [((report(8, 4), report(1, 4)), "standard"), ((report(8, 4), report(1, 8)), "pain-relief")],
)
def test_spinal_flexion_is_never_planned_with_osteoporosis_or_vertebral_fracture(
    condition: str, mode_reports: tuple, expected_mode: str
) -> None:
    for minutes in (15, 60):
        snapshot = standard(
            baseline=baseline(comorbidities=frozenset({condition})),
            exercise_minutes=minutes,
            weekly_reports=mode_reports,
            previous_plans=(
                plan("week-3", LAST_WEEK, 5000, (("ab-curl", 3), ("back-hip-hinge", 2))),
            ),
        )
        decision = decide_plan(snapshot, AS_OF)
        assert decision.mode == expected_mode
        assert not _tags(decision) & SPINAL_FLEXION
        assert decision.exercises
    without = decide_plan(
        standard(
            exercise_minutes=60,
            previous_plans=(plan("week-3", LAST_WEEK, 5000, (("ab-curl", 3),)),),
        ),
        AS_OF,
    )
    assert _tags(without) & SPINAL_FLEXION  # the same plan without the condition has them


def test_a_contraindicated_carried_exercise_is_replaced_with_the_reason() -> None:
    snapshot = standard(
        baseline=baseline(comorbidities=frozenset({"osteoporosis"})),
        previous_plans=(
            plan(
                "week-3",
                LAST_WEEK,
                5000,
                (("ab-curl", 3), ("back-hip-hinge", 2), ("core-bird-dog", 2)),
            ),
        ),
    )
    decision = decide_plan(snapshot, AS_OF)
    ab = next(e for e in decision.exercises if e.type == "abdominal")
    assert ab.exercise_id == "ab-dead-bug" and ab.level == 3
    assert "EX-CONTRAINDICATED" in _refs(ab.reasons)


@pytest.mark.parametrize(
    ("fixed", "used"),
    [
        (500, False),
        (RULES.step_goal.override_min_steps - 1, False),
        (RULES.step_goal.override_min_steps, True),
        (8000, True),
        (RULES.step_goal.override_max_steps, True),
        (RULES.step_goal.override_max_steps + 1, False),
        (25000, False),
    ],
)
def test_clinician_goal_is_used_only_within_the_override_bounds(fixed: int, used: bool) -> None:
    decision = decide_plan(standard(overrides=ClinicianOverrides(fixed_step_goal=fixed)), AS_OF)
    refs = _refs(decision.step_goal.reasons)
    if used:
        assert decision.step_goal.steps_per_day == fixed
        assert refs == ["OVERRIDE-STEP-GOAL"]
    else:
        assert decision.step_goal.steps_per_day != fixed
        low, high = RULES.step_goal.lower_bound_steps, RULES.step_goal.upper_bound_steps
        assert low <= decision.step_goal.steps_per_day <= high
        refused = next(
            r for r in decision.step_goal.reasons if r.ref == "OVERRIDE-STEP-GOAL-REFUSED"
        )
        bound = (
            "override_min_steps"
            if fixed < RULES.step_goal.override_min_steps
            else "override_max_steps"
        )
        assert bound in refused.text and str(fixed) in refused.text


def _rated(
    level: int, ratings: tuple[str | None, ...], reps: tuple[int, ...] = (8, 8, 8)
) -> PatientSnapshot:
    logs = tuple(
        ExerciseLog(AS_OF - timedelta(days=6 - 2 * i), "ab-dead-bug", level, reps, rating=r)  # type: ignore[arg-type]
        for i, r in enumerate(ratings)
    )
    return standard(
        previous_plans=(
            plan(
                "week-3",
                LAST_WEEK,
                5000,
                (("ab-dead-bug", level), ("back-hip-hinge", 2), ("core-bird-dog", 2)),
            ),
        ),
        exercise_logs=logs,
    )


@pytest.mark.parametrize(
    ("level", "ratings", "reps", "exercise", "new_level", "rule"),
    [
        (3, ("easy", "easy"), (8, 8, 8), "ab-dead-bug", 4, "EX-RATED-EASY-UP"),
        (3, ("easy",), (8, 8, 8), "ab-dead-bug", 3, "EX-RATED-EASY-ONCE"),
        (3, ("easy", "just-right", "just-right"), (10, 10, 10), "ab-dead-bug", 4, "EX-MASTERY-UP"),
        (3, ("just-right",), (8, 8, 8), "ab-dead-bug", 3, "EX-LEVEL-HOLD"),
        (3, ("hard", "easy", "easy"), (10, 10, 10), "ab-dead-bug", 3, "EX-RATED-HARD-HOLD"),
        (3, ("easy", "easy", "painful"), (10, 10, 10), "ab-curl", 2, "EX-RATED-PAINFUL"),
        (1, ("painful",), (8, 8, 8), "ab-curl", 1, "EX-RATED-PAINFUL"),
        (6, ("easy", "easy"), (8, 8, 8), "ab-dead-bug", 6, "EX-LEVEL-CEILING"),
    ],
)
def test_exercise_ratings_move_levels(
    level: int,
    ratings: tuple[str, ...],
    reps: tuple[int, ...],
    exercise: str,
    new_level: int,
    rule: str,
) -> None:
    decision = decide_plan(_rated(level, ratings, reps), AS_OF)
    ab = next(e for e in decision.exercises if e.type == "abdominal")
    assert (ab.exercise_id, ab.level) == (exercise, new_level)
    assert rule in _refs(ab.reasons)


def test_rated_easy_does_not_rise_under_a_hold() -> None:
    snapshot = _rated(3, ("easy", "easy"))
    worse = decide_plan(
        standard(
            previous_plans=snapshot.previous_plans,
            exercise_logs=snapshot.exercise_logs,
            weekly_reports=(report(8, 4), report(1, 5)),
        ),
        AS_OF,
    )
    ab = next(e for e in worse.exercises if e.type == "abdominal")
    assert ab.level == 3 and "EX-LEVEL-HOLD-SAFETY" in _refs(ab.reasons)


@pytest.mark.parametrize(
    ("target", "expected", "capped"),
    [
        (None, 5500, False),  # STEP-INCREASE from 5000, no own target
        (9000, 5500, False),  # works towards 9000: the usual rise
        (5200, 5200, True),  # the rise stops at the patient's own goal
        (4000, 5000, True),  # an own goal below the current goal: not raised, not lowered
        (1000, 5000, True),  # kept within the bounds (3000) and never lowered below last week
    ],
)
def test_the_patients_own_step_target_caps_the_weekly_rise(
    target: int | None, expected: int, capped: bool
) -> None:
    met = standard().step_days  # the 5000 goal met on most valid days
    snapshot = standard(
        step_days=tuple(type(d)(d.day, d.steps + 1000, d.valid) for d in met),
        goals=PatientGoals(step_target=target, source="QuestionnaireResponse/goals-1"),
    )
    decision = decide_plan(snapshot, AS_OF)
    assert decision.step_goal.steps_per_day == expected
    refs = _refs(decision.step_goal.reasons)
    assert ("GOAL-PATIENT-TARGET" in refs) is (target is not None)
    if capped:
        text = next(r.text for r in decision.step_goal.reasons if r.ref == "GOAL-PATIENT-TARGET")
        assert text.startswith("Kept at") or expected == 5000


def test_goal_description_and_schedule_carry_the_patients_words_and_days() -> None:
    snapshot = standard(
        goals=PatientGoals(
            step_target=8000,
            preferred_days=("mon", "wed", "sat"),
            what_matters="Walking my dog without stopping",
        )
    )
    decision = decide_plan(snapshot, AS_OF)
    goal = next(r for r in decision.resources if r["resourceType"] == "Goal")
    assert "Walking my dog without stopping" in goal["description"]["text"]
    assert "your own goal of 8000" in goal["description"]["text"]
    plan_resource = next(r for r in decision.resources if r["resourceType"] == "CarePlan")
    exercise_days = [
        a["detail"]["scheduledTiming"]["repeat"].get("dayOfWeek")
        for a in plan_resource["activity"]
        if "scheduledTiming" in a["detail"]
        and a["detail"]["scheduledTiming"]["repeat"].get("periodUnit") == "wk"
    ]
    assert exercise_days and all(d == ["mon", "wed", "sat"] for d in exercise_days)


def test_a_preferred_day_that_is_not_a_day_is_refused() -> None:
    from plan_engine import SnapshotError

    with pytest.raises(SnapshotError, match="days-of-week"):
        decide_plan(standard(goals=PatientGoals(preferred_days=("someday",))), AS_OF)
