"""One simulated week of a patient living with a plan: steps, exercise sessions and their
feedback, education read, and the check-in at the end of the week (weekly report and the
red-flag screen). Everything is drawn from a random stream of that patient and week.

The check-in schedule follows research/selfback-domain.md section 1 ([S] schedule of the
descendant app): pain every week, interference and PSEQ-2 every 2nd week, fear, PHQ-2 and
sleep every 4th week, PSS-4 and WAI every 8th week, barriers when steps fell below 75 % of
the goal; RMDQ at the research follow-ups (6 weeks, 3 and 6 months; section 1 [V]).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, timedelta

from plan_engine import codes, load_catalogue
from plan_engine.decision import PlanDecision
from plan_engine.simulation.course import SymptomState, true_rmdq
from plan_engine.simulation.population import (
    NEAR_MISS_ANSWERS,
    SyntheticPatient,
)
from plan_engine.snapshot import (
    EducationRecord,
    ExerciseLog,
    FeedbackReason,
    RedFlagAnswers,
    StepDay,
    WeeklyReport,
)

SESSION_DAYS = (0, 2, 4)  # days of the plan week with an exercise session (3 a week)
RMDQ_FOLLOW_UP_WEEKS = frozenset({6, 12, 26})
BARRIERS = ("time", "tiredness", "support", "family-work", "weather", "facilities")
SYNC_GAP_PROBABILITY = 0.03  # a day that never reaches the app [D]
QUIZ_PASS_PROBABILITY = 0.75  # [D]
CAPABILITY_GAIN_PER_WEEK = 0.2  # levels gained by a fully practised exercise type [D]


@dataclass(slots=True)
class LivedWeek:
    """What one week left behind, in the app's data model, plus the figures the report needs."""

    step_days: list[StepDay] = field(default_factory=list)
    exercise_logs: list[ExerciseLog] = field(default_factory=list)
    education: list[EducationRecord] = field(default_factory=list)
    report: WeeklyReport | None = None
    red_flags: RedFlagAnswers | None = None
    near_miss: bool = False
    sessions_done: int = 0
    sessions_prescribed: int = 0
    app_use: date | None = None


def habitual_steps_in_week(patient: SyntheticPatient, week: int) -> float:
    """Habit drifts up a little with engagement as the programme goes on [D]."""
    return patient.habitual_steps * (1.0 + 0.01 * patient.engagement * (week - 1))


def _pain_factor(pain: float) -> float:
    return max(0.4, 1.0 - 0.06 * max(0.0, pain - 4.0))


def _day_steps(
    patient: SyntheticPatient,
    week: int,
    goal: int,
    pain: float,
    on_hold: bool,
    rng: random.Random,
) -> float:
    habit = habitual_steps_in_week(patient, week) * _pain_factor(pain)
    target = habit
    if not on_hold and goal > habit and rng.random() < 0.5 + 0.5 * patient.engagement:
        target = habit + patient.step_response * (goal - habit)
    if on_hold:
        target *= 0.85
    steps = target * rng.lognormvariate(0.0, 0.25)
    if rng.random() < 0.02:
        steps *= rng.uniform(1.5, 2.5)  # a long walk or a hike: a noisy outlier day
    return steps


def step_days(
    patient: SyntheticPatient,
    week: int,
    first_day: date,
    days: int,
    goal: int,
    pain: float,
    on_hold: bool,
    rng: random.Random,
) -> list[StepDay]:
    """Daily steps with non-wear days (valid = False) and days that never synced (absent)."""
    found = []
    for offset in range(days):
        day = first_day + timedelta(days=offset)
        if rng.random() < SYNC_GAP_PROBABILITY:
            continue
        if rng.random() < patient.invalid_day_probability:
            found.append(StepDay(day, rng.randint(0, 2500), False))
            continue
        steps = _day_steps(patient, week, goal, pain, on_hold, rng)
        found.append(StepDay(day, int(round(steps)), True))
    return found


def _feedback(
    level: int, capability: float, state: SymptomState, rng: random.Random
) -> FeedbackReason | None:
    pain_chance = 0.03 + (0.12 if state.flare > 0 else 0.0) + 0.02 * max(0.0, state.pain - 5)
    if rng.random() < pain_chance:
        return "pain"
    if rng.random() < 0.01:
        return "instruction-unclear"
    if level > capability + 0.5 and rng.random() < 0.5:
        return "difficult"
    if level <= capability - 1.0 and rng.random() < 0.4:
        return "easy"
    return None


def _reps(prescribed: int, sets: int, manages: bool, rng: random.Random) -> tuple[int, ...]:
    if manages and rng.random() < 0.85:
        return tuple(prescribed for _ in range(sets))
    return tuple(max(0, prescribed - rng.randint(1, prescribed // 2 + 1)) for _ in range(sets))


def exercise_week(
    patient: SyntheticPatient,
    decision: PlanDecision,
    capability: dict[str, float],
    state: SymptomState,
    silent: bool,
    rng: random.Random,
    lived: LivedWeek,
) -> dict[str, int]:
    """Sessions done and logged; returns sessions done per exercise type."""
    catalogue = load_catalogue()
    done_by_type: dict[str, int] = {}
    chance = patient.session_probability * (0.6 if state.pain >= 7 else 1.0)
    for day_offset in SESSION_DAYS:
        if not decision.exercises:
            break
        day = decision.week_start + timedelta(days=day_offset)
        lived.sessions_prescribed += 1
        done = not silent and rng.random() < chance
        if not done:
            if not silent and rng.random() < 0.25:  # an explicit "skip" in the app
                lived.exercise_logs += [
                    ExerciseLog(day, e.exercise_id, e.level, skipped=True)
                    for e in decision.exercises
                ]
            continue
        lived.sessions_done += 1
        for e in decision.exercises:
            entry = catalogue.exercise(e.exercise_id, e.level)
            prescribed = entry.repetitions or entry.hold_seconds or 10
            manages = True
            feedback: FeedbackReason | None = None
            if e.type != codes.EXERCISE_TYPE_PAIN_RELIEF:
                ability = capability[e.type]
                manages = e.level <= ability
                feedback = _feedback(e.level, ability, state, rng)
                done_by_type[e.type] = done_by_type.get(e.type, 0) + 1
            lived.exercise_logs.append(
                ExerciseLog(
                    day,
                    e.exercise_id,
                    e.level,
                    reps_done=_reps(prescribed, entry.sets, manages, rng),
                    reps_prescribed=prescribed,
                    feedback=feedback,
                )
            )
    return done_by_type


def education_week(
    patient: SyntheticPatient,
    decision: PlanDecision,
    known: dict[str, EducationRecord],
    silent: bool,
    rng: random.Random,
    lived: LivedWeek,
) -> None:
    catalogue = load_catalogue()
    for item in decision.education:
        if silent or rng.random() >= patient.read_probability:
            continue
        quiz = catalogue.education_item(item.item_id).quiz
        passed = (rng.random() < QUIZ_PASS_PROBABILITY) if quiz else None
        before = known.get(item.item_id)
        if before is not None and before.quiz_passed:
            passed = True  # a passed quiz stays passed
        lived.education.append(EducationRecord(item.item_id, item.day, passed))


def _clamp(value: float, low: int, high: int) -> int:
    return max(low, min(high, round(value)))


def check_in(
    patient: SyntheticPatient,
    week: int,
    check_in_day: date,
    state: SymptomState,
    goal: int | None,
    valid_mean: float | None,
    rng: random.Random,
) -> WeeklyReport:
    """The weekly tailoring answers given at the end of plan week ``week``."""
    b = patient.baseline
    pain = state.pain
    start_pain = max(1.0, float(b.pain_average or 1))
    better = (start_pain - pain) / start_pain  # > 0 when pain has eased
    n = week  # weeks since the start, at the end of this plan week
    barriers: frozenset[str] = frozenset()
    if goal and valid_mean is not None and valid_mean < 0.75 * goal:
        barriers = frozenset(rng.sample(BARRIERS, rng.randint(1, 2)))
    pseq2_base = b.pseq2 if b.pseq2 is not None else 6
    phq2_base = round((b.phq8 or 0) / 4)
    return WeeklyReport(
        reported_on=check_in_day,
        pain_average=_clamp(pain + rng.gauss(0.0, 0.6), 0, 10),
        pain_interference=_clamp(pain + rng.gauss(0.0, 1.0), 0, 10) if n % 2 == 0 else None,
        fear_of_movement=(
            _clamp((b.fabq_pa or 0) / 2.4 * (1 - 0.5 * better) + rng.gauss(0, 1), 0, 10)
            if n % 4 == 0 and (b.fabq_pa or 0) >= 10
            else None
        ),
        pseq2=(
            _clamp(pseq2_base + 3 * better + rng.gauss(0, 1), 0, 12)
            if n % 2 == 0 and (b.pseq or 60) <= 24
            else None
        ),
        pss4=(
            _clamp(0.4 * (b.pss10 or 0) + rng.gauss(0, 1.5), 0, 16)
            if n % 8 == 0 and (b.pss10 or 0) >= 14
            else None
        ),
        phq2=_clamp(phq2_base + rng.gauss(0, 0.8), 0, 6) if n % 4 == 0 and phq2_base >= 2 else None,
        wai=(
            _clamp((b.wai or 0) + 3 * better + rng.gauss(0, 1), 0, 10)
            if n % 8 == 0 and (b.wai or 10) <= 5
            else None
        ),
        rmdq=(
            _clamp(true_rmdq(state, patient) + rng.gauss(0, 1.5), 0, 24)
            if n in RMDQ_FOLLOW_UP_WEEKS
            else None
        ),
        sleep_problem=(
            rng.random() < 0.15 + 0.05 * max(0.0, pain - 4) + (0.2 if (b.pss10 or 0) >= 20 else 0)
            if n % 4 == 0
            else None
        ),
        barriers=barriers,
        source=f"QuestionnaireResponse/{patient.patient_id}-week-{week}",
    )


def red_flag_screen(
    patient: SyntheticPatient,
    next_week: int,
    check_in_day: date,
    near_miss_rate: float,
    rng: random.Random,
) -> tuple[RedFlagAnswers, bool]:
    """The safety screen at the check-in: all 'no', unless an event is injected for the
    plan of ``next_week`` or a near miss (one sign that needs new pain to count) is drawn."""
    answers: dict[str, bool] = {
        "bladder_bowel_dysfunction": False,
        "saddle_numbness": False,
        "sexual_dysfunction": False,
        "progressive_leg_weakness": False,
        "bilateral_leg_symptoms": False,
        "fever": False,
        "unexplained_weight_loss": False,
        "significant_trauma": False,
        "night_pain": False,
        "thoracic_pain": False,
        "new_pain": False,
        "steroid_or_immunosuppression": False,
        "self_harm_thoughts": False,
    }
    history = "cancer" in patient.baseline.comorbidities
    near_miss = False
    event = patient.red_flag
    if event is not None and event.week == next_week:
        answers.update({name: True for name in event.answers})
    elif rng.random() < near_miss_rate:
        options = [
            a
            for a in NEAR_MISS_ANSWERS
            # with a history of cancer, new pain or night pain is a real red flag
            if not (history and a in ("new_pain", "night_pain", "thoracic_pain"))
        ]
        if options:
            answers[rng.choice(options)] = True
            near_miss = True
    return (
        RedFlagAnswers(
            answered_on=check_in_day,
            source=f"QuestionnaireResponse/{patient.patient_id}-screen-{next_week}",
            **answers,
        ),
        near_miss,
    )
