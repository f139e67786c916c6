"""The app's side of the weekly loop: what it has stored about a patient, and the snapshot it
hands the engine on the first day of each plan week.

Windows (what a server would load): steps, exercise logs and red-flag screens of the last 28
days; of the weekly reports, earlier plans and education records only the window the engine
plans from (:func:`plan_engine.history.bounded_snapshot`, as the server's snapshot builder
does). The newest plan a decision made is fed back as a :class:`PreviousPlan` with the
findings it raised, exactly like the real loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

from plan_engine import codes
from plan_engine.decision import PlanDecision
from plan_engine.history import bounded_snapshot
from plan_engine.simulation.population import SyntheticPatient
from plan_engine.snapshot import (
    EducationRecord,
    ExerciseLog,
    PatientSnapshot,
    PlannedExercise,
    PreviousPlan,
    RaisedFinding,
    RedFlagAnswers,
    StepDay,
    WeeklyReport,
)

WINDOW_DAYS = 28
PLAN_MODES = (codes.MODE_STANDARD, codes.MODE_PAIN_RELIEF, codes.MODE_SAFETY_HOLD)


@dataclass(slots=True)
class PatientRecord:
    """Everything the app has stored about one patient so far."""

    step_days: list[StepDay] = field(default_factory=list)
    weekly_reports: list[WeeklyReport] = field(default_factory=list)
    exercise_logs: list[ExerciseLog] = field(default_factory=list)
    education: dict[str, EducationRecord] = field(default_factory=dict)
    plans: list[PreviousPlan] = field(default_factory=list)
    red_flags: list[RedFlagAnswers] = field(default_factory=list)
    last_app_use: date | None = None
    safety_reviews: list[date] = field(default_factory=list)  # a clinician reviewed a stop

    def store_plan(self, decision: PlanDecision) -> PreviousPlan:
        plan = previous_plan_of(decision)
        self.plans.append(plan)
        return plan


def previous_plan_of(decision: PlanDecision) -> PreviousPlan:
    """The decision as next week's snapshot carries it (the stored CarePlan)."""
    if decision.step_goal is None or decision.mode not in PLAN_MODES:
        raise ValueError(f"decision {decision.decision_id} made no plan ({decision.status})")
    care_plan = decision.resources_of("CarePlan")[0]
    return PreviousPlan(
        plan_id=str(care_plan["id"]),
        week_start=decision.week_start,
        step_goal=decision.step_goal.steps_per_day,
        mode=decision.mode,  # type: ignore[arg-type]
        exercises=tuple(PlannedExercise(e.exercise_id, e.level) for e in decision.exercises),
        education=tuple(e.item_id for e in decision.education),
        findings=tuple(RaisedFinding(f.id, f.evidence) for f in decision.findings),
    )


def assemble_snapshot(
    patient: SyntheticPatient, record: PatientRecord, programme_start: date, as_of: date
) -> PatientSnapshot:
    """The snapshot the app hands the engine: only the window of history it plans from."""
    return bounded_snapshot(full_snapshot(patient, record, programme_start, as_of), as_of)


def full_snapshot(
    patient: SyntheticPatient, record: PatientRecord, programme_start: date, as_of: date
) -> PatientSnapshot:
    """Everything stored (steps, logs and screens of 28 days): the unbounded snapshot."""
    since = as_of - timedelta(days=WINDOW_DAYS)
    reports = tuple(record.weekly_reports)
    return PatientSnapshot(
        patient_id=patient.patient_id,
        programme_start=programme_start,
        programme_plan_id=f"programme-{patient.patient_id}",
        clinician_role_id=f"role-{patient.index % 40:02d}",
        baseline=patient.baseline,
        exercise_minutes=patient.exercise_minutes,
        language=patient.language,  # type: ignore[arg-type]
        condition_id=f"lbp-{patient.patient_id}",
        weekly_reports=reports,
        step_days=tuple(d for d in record.step_days if since <= d.day < as_of),
        exercise_logs=tuple(e for e in record.exercise_logs if since <= e.day < as_of),
        education=tuple(record.education.values()),
        previous_plans=tuple(record.plans),
        red_flags=tuple(r for r in record.red_flags if since <= r.answered_on <= as_of),
        last_app_use=record.last_app_use,
        inputs=tuple(r.source for r in reports[-4:] if r.source),
        safety_reviews=tuple(d for d in record.safety_reviews if d <= as_of),
    )
