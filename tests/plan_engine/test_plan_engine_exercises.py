"""Exercise rules: time budget, composition, levels from feedback, pain-relief mode."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from pe_personas import AS_OF, LAST_WEEK, baseline, plan, report, standard

from plan_engine import (
    ClinicianOverrides,
    ExerciseLog,
    PatientSnapshot,
    decide_plan,
    load_catalogue,
)
from plan_engine.config import load_rules
from plan_engine.exercise_plan import exercise_count

RULES = load_rules().exercise
CATALOGUE = load_catalogue()


@pytest.mark.parametrize(
    ("minutes", "count"),
    [(5, 3), (10, 3), (15, 3), (16, 3), (19, 3), (20, 4), (25, 5), (30, 6), (60, 12), (90, 12)],
)
def test_exercise_count_from_the_time_budget(minutes: int, count: int) -> None:
    assert exercise_count(minutes, RULES)[0] == count
    decision = decide_plan(standard(exercise_minutes=minutes), AS_OF)
    assert len(decision.exercises) == count


def test_composition_starts_with_abdominal_back_and_core_then_new_types() -> None:
    decision = decide_plan(standard(exercise_minutes=30, previous_plans=()), AS_OF)
    types = [e.type for e in decision.exercises]
    assert types[:3] == ["abdominal", "back-extensor", "core-stability"]
    assert set(types[3:6]) == {"gluteal", "flexibility", "pain-relief"}
    assert all(e.reasons[0].ref == "EX-COMP-FIRST" for e in decision.exercises[:3])
    assert all(e.reasons[0].ref == "EX-COMP-NEW-TYPE" for e in decision.exercises[3:6])
    assert all(e.level == RULES.start_level for e in decision.exercises)


def _with_feedback(level: int, feedback: str | None, **changes: object) -> PatientSnapshot:
    logs = tuple(
        ExerciseLog(
            AS_OF - timedelta(days=d), "ab-dead-bug", level, (10, 10, 10), feedback=feedback
        )  # type: ignore[arg-type]
        for d in (6, 4, 2)
    )
    changes.setdefault("exercise_logs", logs)
    return standard(
        previous_plans=(
            plan(
                "week-3",
                LAST_WEEK,
                5000,
                (("ab-dead-bug", level), ("back-hip-hinge", 2), ("core-bird-dog", 2)),
            ),
        ),
        **changes,
    )


def _ab(snapshot: PatientSnapshot):  # type: ignore[no-untyped-def]
    decision = decide_plan(snapshot, AS_OF)
    return next(e for e in decision.exercises if e.type == "abdominal"), decision


@pytest.mark.parametrize(
    ("level", "feedback", "exercise", "new_level", "rule"),
    [
        (1, "easy", "ab-dead-bug", 2, "EX-EASY-UP"),
        (5, "easy", "ab-dead-bug", 6, "EX-EASY-UP"),
        (6, "easy", "ab-dead-bug", 6, "EX-LEVEL-CEILING"),
        (2, "difficult", "ab-dead-bug", 1, "EX-DIFFICULT-DOWN"),
        (1, "difficult", "ab-dead-bug", 1, "EX-LEVEL-FLOOR"),
        (6, "difficult", "ab-dead-bug", 5, "EX-DIFFICULT-DOWN"),
        (3, "pain", "ab-curl", 3, "EX-PAIN-SWITCH"),
        (6, "pain", "ab-curl", 6, "EX-PAIN-SWITCH"),
        (2, "instruction-unclear", "ab-curl", 2, "EX-UNCLEAR-SWITCH"),
        (3, None, "ab-dead-bug", 4, "EX-MASTERY-UP"),
    ],
)
def test_level_changes_from_feedback(
    level: int, feedback: str | None, exercise: str, new_level: int, rule: str
) -> None:
    ab, _ = _ab(_with_feedback(level, feedback))
    assert (ab.exercise_id, ab.level) == (exercise, new_level)
    assert rule in [r.ref for r in ab.reasons]


def test_pain_beats_easy_in_the_same_week() -> None:
    snapshot = _with_feedback(3, "easy")
    logs = (
        *snapshot.exercise_logs,
        ExerciseLog(AS_OF - timedelta(days=1), "ab-dead-bug", 3, (5,), feedback="pain"),
    )
    ab, _ = _ab(replace(snapshot, exercise_logs=logs))
    assert (ab.exercise_id, ab.level) == ("ab-curl", 3)


def test_no_level_rises_when_symptoms_worsened() -> None:
    snapshot = _with_feedback(3, "easy", weekly_reports=(report(8, 4), report(1, 5)))
    ab, decision = _ab(snapshot)
    assert ab.level == 3
    assert "SAFE-SYMPTOMS-WORSENED" in [r.ref for r in ab.reasons]
    assert decision.step_goal is not None and decision.step_goal.steps_per_day <= 5000


def test_feedback_from_before_the_newest_plan_is_ignored() -> None:
    old = tuple(
        ExerciseLog(LAST_WEEK - timedelta(days=d), "ab-dead-bug", 2, (10, 10, 10), feedback="easy")
        for d in (1, 2, 3)
    )
    ab, _ = _ab(replace(_with_feedback(2, None), exercise_logs=old))
    assert ab.level == 2


@pytest.mark.parametrize(
    ("previous_pain", "pain", "mode"),
    [
        (6, 6, "standard"),
        (6, 7, "pain-relief"),  # pain >= 7
        (9, 7, "pain-relief"),
        (1, 3, "standard"),  # rise 2
        (0, 3, "pain-relief"),  # 3..6 after a rise >= 3
        (3, 6, "pain-relief"),
        (4, 6, "standard"),
        (0, 2, "standard"),
    ],
)
def test_pain_relief_mode_thresholds(previous_pain: int, pain: int, mode: str) -> None:
    snapshot = standard(weekly_reports=(report(8, previous_pain), report(1, pain)))
    decision = decide_plan(snapshot, AS_OF)
    assert decision.mode == mode
    if mode == "pain-relief":
        assert {e.type for e in decision.exercises} == {"pain-relief"}
        assert all(e.level == 1 for e in decision.exercises)


def test_levels_resume_one_lower_after_pain_relief_mode_graded_return() -> None:
    plans = (
        plan(
            "week-2",
            LAST_WEEK - timedelta(days=7),
            5000,
            (("ab-dead-bug", 4), ("back-hip-hinge", 3), ("core-plank", 5)),
        ),
        plan(
            "week-3",
            LAST_WEEK,
            5000,
            (("relief-breathing", 1), ("relief-knee-rolls", 1), ("relief-rest-position", 1)),
            mode="pain-relief",
        ),
    )
    decision = decide_plan(
        standard(previous_plans=plans, weekly_reports=(report(8, 7), report(1, 4))), AS_OF
    )
    assert decision.mode == "standard"
    levels = {e.exercise_id: e.level for e in decision.exercises}
    # PR-GRADED-RETURN (NICE NG59 1.2.1): one level below the levels last used, then build up.
    assert levels == {"ab-dead-bug": 3, "back-hip-hinge": 2, "core-plank": 4}
    assert all("EX-GRADED-RETURN" in [r.ref for r in e.reasons] for e in decision.exercises)
    assert "PR-GRADED-RETURN" in [r.ref for r in decision.mode_reasons]
    assert decision.step_goal.steps_per_day <= 5000


def test_excluded_exercise_is_replaced_at_the_same_level() -> None:
    snapshot = _with_feedback(
        4,
        None,
        overrides=ClinicianOverrides(excluded_exercises=frozenset({"ab-dead-bug"})),
        exercise_logs=(),
    )
    ab, _ = _ab(snapshot)
    assert (ab.exercise_id, ab.level) == ("ab-curl", 4)
    assert "OVERRIDE-EXCLUDED" in [r.ref for r in ab.reasons]


def test_contraindicated_levels_are_never_planned() -> None:
    snapshot = standard(
        baseline=baseline(comorbidities=frozenset({"osteoporosis", "knee-problems"})),
        exercise_minutes=60,
        previous_plans=(
            plan(
                "week-3",
                LAST_WEEK,
                5000,
                (
                    ("ab-curl", 2),
                    ("back-hip-hinge", 2),
                    ("core-plank", 2),
                    ("glute-sit-to-stand", 2),
                ),
            ),
        ),
        exercise_logs=tuple(
            ExerciseLog(
                AS_OF - timedelta(days=d), "glute-sit-to-stand", 2, (10, 10, 10), feedback="easy"
            )
            for d in (1, 3)
        ),
    )
    decision = decide_plan(snapshot, AS_OF)
    blocked = {
        "loaded-spinal-flexion",
        "repeated-spinal-flexion",
        "kneeling",
        "deep-knee-flexion",
    }
    for e in decision.exercises:
        assert not CATALOGUE.exercise(e.exercise_id, e.level).contraindications & blocked
    # ab-curl level 2 is a repeated spinal flexion (osteoporosis): replaced, reason given.
    assert not [e for e in decision.exercises if e.exercise_id == "ab-curl"]
    sit = [e for e in decision.exercises if e.exercise_id == "glute-sit-to-stand"]
    assert sit and sit[0].level == 2  # level 3 needs deep knee flexion: held at 2


def test_catalogue_has_two_exercises_per_type_and_level_so_a_switch_is_possible() -> None:
    for exercise_type in ("abdominal", "back-extensor", "core-stability", "gluteal", "flexibility"):
        for level in range(1, 7):
            ids = [
                e for e in CATALOGUE.exercise_ids(exercise_type) if CATALOGUE.has_exercise(e, level)
            ]
            assert len(ids) >= 2, (exercise_type, level)
