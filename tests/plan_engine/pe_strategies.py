"""Hypothesis strategies: random but well-formed patient snapshots around one week."""

from __future__ import annotations

from dataclasses import fields
from datetime import date, timedelta

from hypothesis import strategies as st
from pe_personas import AS_OF, START, baseline

from plan_engine import (
    ClinicianOverrides,
    EducationRecord,
    ExerciseLog,
    PatientSnapshot,
    PlannedExercise,
    PreviousPlan,
    RedFlagAnswers,
    StepDay,
    WeeklyReport,
    load_catalogue,
)

CATALOGUE = load_catalogue()
STRENGTH_TYPES = ("abdominal", "back-extensor", "core-stability", "gluteal", "flexibility")
FAMILIES = tuple(e for t in STRENGTH_TYPES for e in CATALOGUE.exercise_ids(t))
RELIEF = CATALOGUE.exercise_ids("pain-relief")
EDUCATION_IDS = tuple(e.definition_id for e in CATALOGUE.education)
FEEDBACK = (None, "easy", "difficult", "pain", "instruction-unclear")
RED_FLAG_FIELDS = tuple(
    f.name for f in fields(RedFlagAnswers) if f.name not in ("answered_on", "source")
)

pain = st.one_of(st.none(), st.integers(0, 10))


@st.composite
def previous_plans(draw: st.DrawFn) -> tuple[PreviousPlan, ...]:
    count = draw(st.integers(0, 3))
    plans = []
    for i in range(count):
        mode = draw(st.sampled_from(["standard", "standard", "pain-relief"]))
        if mode == "standard":
            families = draw(
                st.lists(st.sampled_from(FAMILIES), min_size=3, max_size=6, unique=True)
            )
            exercises = tuple(PlannedExercise(f, draw(st.integers(1, 6))) for f in families)
        else:
            families = draw(st.lists(st.sampled_from(RELIEF), min_size=1, max_size=5, unique=True))
            exercises = tuple(PlannedExercise(f, 1) for f in families)
        plans.append(
            PreviousPlan(
                plan_id=f"plan-{i}",
                week_start=AS_OF - timedelta(days=7 * (count - i)),
                step_goal=draw(st.integers(30, 100)) * 100,
                mode=mode,  # type: ignore[arg-type]
                exercises=exercises,
                education=tuple(
                    draw(st.lists(st.sampled_from(EDUCATION_IDS), max_size=7, unique=True))
                ),
            )
        )
    return tuple(plans)


@st.composite
def snapshots(
    draw: st.DrawFn, red_flags: bool | None = None, overrides: bool = False
) -> PatientSnapshot:
    plans = draw(previous_plans())
    last = plans[-1] if plans else None
    logs = []
    if last is not None:
        for planned in last.exercises:
            for day in draw(st.lists(st.integers(1, 7), max_size=3, unique=True)):
                reps = draw(st.sampled_from([(10, 10, 10), (8, 6, 5), (10, 10, 0)]))
                logs.append(
                    ExerciseLog(
                        AS_OF - timedelta(days=day),
                        planned.exercise_id,
                        planned.level,
                        reps,
                        feedback=draw(st.sampled_from(FEEDBACK)),
                    )
                )
    step_values = draw(st.lists(st.integers(0, 15000), min_size=14, max_size=14))
    valid = draw(st.lists(st.booleans(), min_size=14, max_size=14))
    days = tuple(
        StepDay(AS_OF - timedelta(days=14 - i), s, v)
        for i, (s, v) in enumerate(zip(step_values, valid, strict=True))
    )
    reports = tuple(
        WeeklyReport(
            reported_on=AS_OF - timedelta(days=d),
            pain_average=draw(pain),
            phq8=draw(st.one_of(st.none(), st.integers(0, 24))),
            rmdq=draw(st.one_of(st.none(), st.integers(0, 24))),
            barriers=frozenset(
                draw(st.lists(st.sampled_from(["time", "weather", "support"]), max_size=2))
            ),
        )
        for d in draw(st.lists(st.sampled_from([1, 8, 15]), max_size=3, unique=True))
    )
    want_flags = draw(st.booleans()) if red_flags is None else red_flags
    flags: tuple[RedFlagAnswers, ...] = ()
    if want_flags:
        answers = {f: draw(st.booleans()) for f in RED_FLAG_FIELDS}
        if red_flags:
            answers[
                draw(
                    st.sampled_from(
                        [
                            "saddle_numbness",
                            "bladder_bowel_dysfunction",
                            "sexual_dysfunction",
                            "fever",
                            "unexplained_weight_loss",
                            "significant_trauma",
                        ]
                    )
                )
            ] = True
        flags = (RedFlagAnswers(answered_on=AS_OF - timedelta(days=1), **answers),)
    records = tuple(
        EducationRecord(i, AS_OF - timedelta(days=3), draw(st.one_of(st.none(), st.booleans())))
        for i in draw(st.lists(st.sampled_from(EDUCATION_IDS), max_size=10, unique=True))
    )
    override = ClinicianOverrides()
    if overrides:
        override = ClinicianOverrides(
            fixed_step_goal=draw(st.one_of(st.none(), st.integers(20, 120).map(lambda x: x * 100))),
            excluded_exercises=frozenset(draw(st.lists(st.sampled_from(FAMILIES), max_size=3))),
        )
    start = draw(st.sampled_from([START, AS_OF - timedelta(days=7 * len(plans))]))
    return PatientSnapshot(
        patient_id=draw(st.sampled_from(["p-a", "p-b", "p-c"])),
        programme_start=min(start, AS_OF),
        programme_plan_id="programme",
        clinician_role_id="role-1",
        baseline=baseline(
            phq8=draw(st.integers(0, 24)),
            start_back_risk=draw(st.sampled_from(["low", "medium", "high"])),
            comorbidities=frozenset(
                draw(
                    st.lists(
                        st.sampled_from(["osteoporosis", "knee-problems", "cancer"]), max_size=1
                    )
                )
            ),
        ),
        exercise_minutes=draw(st.integers(5, 60)),
        language=draw(st.sampled_from(["en", "da"])),
        weekly_reports=reports,
        step_days=days,
        exercise_logs=tuple(logs),
        education=records,
        previous_plans=plans,
        overrides=override,
        red_flags=flags,
        last_app_use=draw(st.one_of(st.none(), st.just(AS_OF - timedelta(days=1)))),
    )


def shuffled(snapshot: PatientSnapshot, order: list[int]) -> PatientSnapshot:
    """The same snapshot with every collection given in another order."""
    from dataclasses import replace

    def perm(items: tuple) -> tuple:  # type: ignore[type-arg]
        keyed = sorted(range(len(items)), key=lambda i: order[i % len(order)] * 1000 + i)
        return tuple(items[i] for i in keyed)

    return replace(
        snapshot,
        weekly_reports=perm(snapshot.weekly_reports),
        step_days=perm(snapshot.step_days),
        exercise_logs=perm(snapshot.exercise_logs),
        education=perm(snapshot.education),
        previous_plans=perm(snapshot.previous_plans),
    )


__all__ = ["AS_OF", "date", "shuffled", "snapshots"]
