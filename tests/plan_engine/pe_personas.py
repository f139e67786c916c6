"""Snapshot builders and the personas used by the golden and rule tests."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

from plan_engine import (
    BaselineScores,
    ClinicianOverrides,
    ExerciseLog,
    PatientSnapshot,
    PlannedExercise,
    PreviousPlan,
    RedFlagAnswers,
    StepDay,
    WeeklyReport,
)

AS_OF = date(2026, 3, 2)  # a Monday
START = AS_OF - timedelta(days=21)  # week 4 of the programme


def steps(values: list[int | None], end: date = AS_OF) -> tuple[StepDay, ...]:
    """Daily steps ending the day before ``end``; ``None`` marks a non-valid (non-wear) day."""
    first = end - timedelta(days=len(values))
    return tuple(
        StepDay(first + timedelta(days=i), v if v is not None else 150, v is not None)
        for i, v in enumerate(values)
    )


def baseline(**changes: object) -> BaselineScores:
    base = BaselineScores(
        completed_on=START - timedelta(days=1),
        age=47,
        sex="female",
        pain_average=5,
        pain_worst=7,
        rmdq=11,
        pseq=34,
        pseq2=8,
        fabq_pa=12,
        phq8=5,
        pss10=14,
        wai=7,
        saltin_grimby=2,
        episode_duration="5-12w",
        start_back_risk="medium",
        start_back_assessed_on=START - timedelta(days=1),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def plan(
    plan_id: str,
    week_start: date,
    goal: int,
    exercises: tuple[tuple[str, int], ...] = (),
    mode: str = "standard",
    education: tuple[str, ...] = (),
) -> PreviousPlan:
    return PreviousPlan(
        plan_id=plan_id,
        week_start=week_start,
        step_goal=goal,
        mode=mode,  # type: ignore[arg-type]
        exercises=tuple(PlannedExercise(e, lvl) for e, lvl in exercises),
        education=education,
    )


def report(days_before: int, pain: int | None = None, **changes: object) -> WeeklyReport:
    return replace(
        WeeklyReport(reported_on=AS_OF - timedelta(days=days_before), pain_average=pain),
        **changes,  # type: ignore[arg-type]
    )


LAST_WEEK = AS_OF - timedelta(days=7)
WEEK_1_EDUCATION = (
    "edu-facts-warning-signs",
    "edu-self-stay-active",
    "edu-pacing-boom-bust",
    "edu-mind-hurt-harm",
    "edu-goal-small-goals",
    "edu-facts-common",
    "edu-busy-small-breaks",
)
WEEK_2_EDUCATION = (
    "edu-first-aid-flare",
    "edu-relax-breathing",
    "edu-sleep-routine",
    "edu-social-tell-others",
    "edu-problem-steps",
    "edu-barriers-name-them",
    "edu-thoughts-catastrophising",
)
WEEK_3_EDUCATION = (
    "edu-comorbid-exercise-helps",
    "edu-goal-action-plan",
    "edu-facts-scans",
    "edu-mind-fear",
    "edu-self-start-exercise",
    "edu-busy-work",
    "edu-pacing-split-tasks",
)
STANDARD_EXERCISES = (("ab-dead-bug", 2), ("back-hip-hinge", 2), ("core-bird-dog", 2))


def standard(**changes: object) -> PatientSnapshot:
    """Week 4, stable symptoms, a standard plan last week, goal 5000 steps/day."""
    snapshot = PatientSnapshot(
        patient_id="p-standard",
        programme_start=START,
        programme_plan_id="programme-1",
        clinician_role_id="role-physio-1",
        condition_id="lbp-1",
        baseline=baseline(),
        exercise_minutes=15,
        weekly_reports=(report(15, 5), report(8, 5), report(1, 5)),
        step_days=steps(
            [4800, 5100, None, 5000, 4900, 5200, 5050, 5300, 4700, 5000, 5100, 4800, 5000, 5000]
        ),
        previous_plans=(
            plan("week-1", START, 4500, STANDARD_EXERCISES, education=WEEK_1_EDUCATION),
            plan(
                "week-2",
                START + timedelta(days=7),
                4800,
                STANDARD_EXERCISES,
                education=WEEK_2_EDUCATION,
            ),
            plan("week-3", LAST_WEEK, 5000, STANDARD_EXERCISES, education=WEEK_3_EDUCATION),
        ),
        inputs=("QuestionnaireResponse/weekly-3",),
    )
    return replace(snapshot, **changes)  # type: ignore[arg-type]


def new_starter() -> PatientSnapshot:
    """Week 1: baseline done today, two weeks of steps from the phone, no plan yet."""
    return PatientSnapshot(
        patient_id="p-new",
        programme_start=AS_OF,
        programme_plan_id="programme-2",
        clinician_role_id="role-gp-2",
        baseline=baseline(completed_on=AS_OF, start_back_assessed_on=AS_OF, start_back_risk="low"),
        exercise_minutes=20,
        step_days=steps(
            [3900, 4200, None, 4100, 4500, None, 3800, 4000, 4300, 4600, None, 4400, 4100, 3700]
        ),
        last_app_use=AS_OF - timedelta(days=1),
        inputs=("QuestionnaireResponse/baseline-2",),
    )


def progressing() -> PatientSnapshot:
    """Goal met 6 of 7 days, feedback: easy (ab), difficult (back), pain (core)."""
    logs = []
    for offset in (6, 4, 2):
        day = AS_OF - timedelta(days=offset)
        logs += [
            ExerciseLog(day, "ab-dead-bug", 2, (10, 10, 10), feedback="easy"),
            ExerciseLog(day, "back-hip-hinge", 2, (6, 5, 5), feedback="difficult"),
            ExerciseLog(
                day, "core-bird-dog", 2, (10, 8, 0), feedback="pain" if offset == 2 else None
            ),
        ]
    return standard(
        patient_id="p-progress",
        exercise_minutes=20,
        weekly_reports=(report(15, 5), report(8, 4), report(1, 4)),
        step_days=steps(
            [5200, 5400, 5100, 5600, 5000, 5300, 5500, 5200, 5400, 5100, 5600, 4900, 5300, 5500]
        ),
        exercise_logs=tuple(logs),
    )


def flare() -> PatientSnapshot:
    """Average pain up to 8: pain-relief mode, goal held."""
    return standard(
        patient_id="p-flare", weekly_reports=(report(15, 4), report(8, 4), report(1, 8))
    )


def red_flag() -> PatientSnapshot:
    """Saddle numbness reported this week: stop and refer."""
    return standard(
        patient_id="p-red-flag",
        red_flags=(
            RedFlagAnswers(
                answered_on=AS_OF - timedelta(days=1),
                saddle_numbness=True,
                bladder_bowel_dysfunction=False,
                source="QuestionnaireResponse/red-flags-9",
            ),
        ),
    )


def low_mood_danish() -> PatientSnapshot:
    """Danish speaker, PHQ-8 16 this week, works with a time barrier; goal fixed by clinician."""
    return standard(
        patient_id="p-mood",
        language="da",
        weekly_reports=(
            report(15, 5),
            report(8, 5),
            report(1, 5, phq8=16, barriers=frozenset({"time"})),
        ),
        overrides=ClinicianOverrides(
            fixed_step_goal=4000, excluded_exercises=frozenset({"core-bird-dog"})
        ),
    )


def silent() -> PatientSnapshot:
    """Nothing since 20 days ago: nudge, goal held."""
    old = AS_OF - timedelta(days=20)
    return standard(
        patient_id="p-silent",
        weekly_reports=(report(29, 5), report(22, 5)),
        step_days=steps([5000] * 7 + [None] * 7, end=old + timedelta(days=1)) + steps([None] * 14),
        previous_plans=(plan("week-3", LAST_WEEK, 5000, STANDARD_EXERCISES),),
    )


PERSONAS = {
    "new_starter": new_starter,
    "progressing": progressing,
    "flare": flare,
    "red_flag": red_flag,
    "low_mood_danish": low_mood_danish,
    "silent": silent,
}
