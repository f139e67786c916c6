"""The weekly loop for one patient: assemble the snapshot, ask the engine for a plan, check
the plan against the oracle, store it as the newest plan, then live the week.

The engine is passed in (``decide``), so a benchmark can time it and a test can wrap it;
the loop itself reads no clock and does no I/O.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import date, timedelta

from plan_engine import decide_plan, load_catalogue
from plan_engine.config import load_rules
from plan_engine.decision import PlanDecision
from plan_engine.simulation.assembly import PatientRecord, assemble_snapshot
from plan_engine.simulation.behaviour import (
    LivedWeek,
    check_in,
    education_week,
    exercise_week,
    red_flag_screen,
    step_days,
)
from plan_engine.simulation.course import SymptomState, advance, start_course, true_rmdq
from plan_engine.simulation.oracle import (
    PlanShape,
    expected_findings,
    harder,
    last_levels,
    symptoms_worsened,
)
from plan_engine.simulation.population import (
    STRENGTH_TYPES,
    SyntheticPatient,
    draw_patient,
    programme_week_start,
)
from plan_engine.simulation.spec import CohortSpec
from plan_engine.snapshot import PatientSnapshot

Decide = Callable[[PatientSnapshot, date], PlanDecision]
PRE_PROGRAMME_DAYS = 14  # steps the phone already holds when the patient starts


@dataclass(frozen=True, slots=True)
class WeekRecord:
    """One plan week of one patient: what the engine decided and what the checks found."""

    week: int
    status: str
    mode: str
    goal: int
    previous_goal: int | None
    exercises: tuple[tuple[str, str, int, int | None], ...]  # id, type, level, previous level
    education: tuple[tuple[str, str, bool], ...]  # item, theme, as quiz
    findings: tuple[tuple[str, str], ...]  # finding id, severity
    clinician_priorities: tuple[str, ...]
    expected: tuple[tuple[str, str], ...]  # oracle: finding id, severity class
    injected: str | None  # the urgent finding an injected red flag must raise this week
    near_miss: bool  # a lone sign that must not stop the plan was reported this week
    awaiting_review: bool  # on hold because a stop-and-refer was not reviewed yet
    worsened: bool  # the data show worse pain or RMDQ than the previous measure
    harder_than_before: tuple[str, ...]  # what got harder than the previous plan
    counterfactual: tuple[str, ...] | None  # None: not sampled; (): pain + 1 was not harder
    valid_days: int  # of the week lived with this plan
    met_days: int
    sessions_done: int
    sessions_prescribed: int
    pain: float  # true average pain in the week lived with this plan


@dataclass(frozen=True, slots=True)
class PatientTrace:
    index: int
    age: int
    sex: str
    age_band: str
    start_back_risk: str
    baseline_pain: float
    baseline_rmdq: float
    final_pain: float
    final_rmdq: float
    weeks: tuple[WeekRecord, ...]


class PatientRun:
    """One patient stepping through the programme. Call :meth:`snapshot`, decide, then
    :meth:`record`, once per week."""

    def __init__(self, spec: CohortSpec, index: int) -> None:
        self.spec = spec
        self.patient: SyntheticPatient = draw_patient(spec, index)
        self.rules = load_rules()
        self.type_of = {e.exercise_id: e.type for e in load_catalogue().exercises}
        self.stored = PatientRecord()
        self.week = 1
        self.state: SymptomState = start_course(self.patient)
        self.capability = dict(self.patient.capability)
        self.weeks: list[WeekRecord] = []
        self.pending_near_miss = False
        rng = random.Random(spec.stream(index, "pre-programme"))
        self.stored.step_days += step_days(
            self.patient,
            1,
            spec.start - timedelta(days=PRE_PROGRAMME_DAYS),
            PRE_PROGRAMME_DAYS,
            0,
            self.state.pain,
            False,
            rng,
        )

    @property
    def as_of(self) -> date:
        return programme_week_start(self.spec.start, self.week)

    def snapshot(self) -> PatientSnapshot:
        return assemble_snapshot(self.patient, self.stored, self.spec.start, self.as_of)

    def record(self, snapshot: PatientSnapshot, decision: PlanDecision, decide: Decide) -> None:
        """Check ``decision``, store it as the newest plan, and live its week."""
        as_of = self.as_of
        previous = self.stored.plans[-1] if self.stored.plans else None
        levels_before = last_levels(self.stored.plans, self.type_of)
        shape = _shape(decision)
        worsened = symptoms_worsened(snapshot, as_of, self.rules)
        harder_than_before: tuple[str, ...] = ()
        if previous is not None and worsened:
            old = PlanShape.of(
                previous.mode,
                previous.step_goal,
                tuple((self.type_of[p.exercise_id], p.level) for p in previous.exercises),
            )
            harder_than_before = harder(shape, old, levels_before)
        counterfactual = self._counterfactual(snapshot, decision, shape, decide)
        expected = expected_findings(snapshot, as_of, self.rules)
        event = self.patient.red_flag
        injected = event.finding_id if event is not None and event.week == self.week else None

        self.stored.store_plan(decision)
        if any(f.severity in ("emergency", "urgent") for f in decision.findings):
            self.stored.safety_reviews.append(self._review_day(as_of))
        lived, met, valid = self._live(decision)
        goal = decision.step_goal.steps_per_day if decision.step_goal else 0
        self.weeks.append(
            WeekRecord(
                week=self.week,
                status=decision.status,
                mode=decision.mode,
                goal=goal,
                previous_goal=previous.step_goal if previous else None,
                exercises=tuple(
                    (e.exercise_id, e.type, e.level, e.previous_level) for e in decision.exercises
                ),
                education=tuple((e.item_id, e.theme, e.as_quiz) for e in decision.education),
                findings=tuple((f.id, f.severity) for f in decision.findings),
                clinician_priorities=tuple(m.priority for m in decision.clinician_messages),
                expected=tuple(sorted(expected.items())),
                injected=injected,
                near_miss=self.pending_near_miss,
                awaiting_review=any(
                    r.ref == "SAFE-HOLD-UNTIL-REVIEW" for r in decision.mode_reasons
                ),
                worsened=worsened,
                harder_than_before=harder_than_before,
                counterfactual=counterfactual,
                valid_days=valid,
                met_days=met,
                sessions_done=lived.sessions_done,
                sessions_prescribed=lived.sessions_prescribed,
                pain=round(self.state.pain, 3),
            )
        )
        self.pending_near_miss = lived.near_miss
        adherence = (
            lived.sessions_done / lived.sessions_prescribed if lived.sessions_prescribed else 0
        )
        self.state = advance(
            self.state,
            self.patient,
            adherence,
            random.Random(self.spec.stream(self.patient.index, "course", self.week)),
        )
        self.week += 1

    def _review_day(self, as_of: date) -> date:
        """When the clinician records the review of this week's stop-and-refer [D]."""
        rng = random.Random(self.spec.stream(self.patient.index, "review", self.week))
        late = rng.random() < self.spec.late_review_rate
        return as_of + timedelta(days=rng.randint(8, 13) if late else rng.randint(1, 5))

    def _counterfactual(
        self,
        snapshot: PatientSnapshot,
        decision: PlanDecision,
        shape: PlanShape,
        decide: Decide,
    ) -> tuple[str, ...] | None:
        """Metamorphic check: the same week with the newest pain one point higher must not
        give a harder plan than the week as it was."""
        rng = random.Random(self.spec.stream(self.patient.index, "metamorphic", self.week))
        if rng.random() >= self.spec.metamorphic_sample or not snapshot.weekly_reports:
            return None
        newest = snapshot.weekly_reports[-1]
        window = timedelta(days=self.rules.safety.new_data_window_days)
        if (
            newest.pain_average is None
            or newest.pain_average >= 10
            or newest.reported_on < self.as_of - window
            or decision.step_goal is None
        ):
            return None
        worse = replace(
            snapshot,
            weekly_reports=(
                *snapshot.weekly_reports[:-1],
                replace(newest, pain_average=newest.pain_average + 1),
            ),
        )
        return harder(_shape(decide(worse, self.as_of)), shape)

    def _live(self, decision: PlanDecision) -> tuple[LivedWeek, int, int]:
        spec, patient, week = self.spec, self.patient, self.week
        rng = random.Random(spec.stream(patient.index, "week", week))
        silent = week in patient.silent_weeks
        goal = decision.step_goal.steps_per_day if decision.step_goal else 0
        on_hold = decision.status == "on-hold"
        lived = LivedWeek()
        lived.step_days = (
            []
            if silent
            else step_days(
                patient, week, decision.week_start, 7, goal, self.state.pain, on_hold, rng
            )
        )
        done_by_type = exercise_week(
            patient, decision, self.capability, self.state, silent, rng, lived
        )
        for exercise_type in STRENGTH_TYPES:
            practice = min(1.0, done_by_type.get(exercise_type, 0) / 3)
            self.capability[exercise_type] = min(
                6.0, self.capability[exercise_type] + 0.2 * practice
            )
        education_week(patient, decision, self.stored.education, silent, rng, lived)

        valid = [d for d in lived.step_days if d.valid]
        met = sum(1 for d in valid if d.steps >= goal)
        valid_mean = sum(d.steps for d in valid) / len(valid) if valid else None
        next_start = decision.week_start + timedelta(days=7)
        check_in_day = next_start - timedelta(days=rng.randint(1, 7))
        event_next = patient.red_flag is not None and patient.red_flag.week == week + 1
        if event_next or (not silent and rng.random() < patient.report_probability):
            lived.report = check_in(patient, week, check_in_day, self.state, goal, valid_mean, rng)
            lived.red_flags, lived.near_miss = red_flag_screen(
                patient, week + 1, check_in_day, spec.near_miss_rate, rng
            )

        record = self.stored
        record.step_days += lived.step_days
        record.exercise_logs += lived.exercise_logs
        for item in lived.education:
            record.education[item.item_id] = item
        if lived.report is not None:
            record.weekly_reports.append(lived.report)
        if lived.red_flags is not None:
            record.red_flags.append(lived.red_flags)
        used = [e.day for e in lived.exercise_logs] + [
            e.read_on for e in lived.education if e.read_on
        ]
        used += [lived.report.reported_on] if lived.report is not None else []
        if used:
            record.last_app_use = max(used)
        return lived, met, len(valid)

    def trace(self) -> PatientTrace:
        patient = self.patient
        start = start_course(patient)
        return PatientTrace(
            index=patient.index,
            age=patient.baseline.age or 0,
            sex=patient.baseline.sex or "unknown",
            age_band=patient.age_band,
            start_back_risk=patient.baseline.start_back_risk or "unknown",
            baseline_pain=start.pain,
            baseline_rmdq=true_rmdq(start, patient),
            final_pain=round(self.state.pain, 3),
            final_rmdq=round(true_rmdq(self.state, patient), 3),
            weeks=tuple(self.weeks),
        )


def _shape(decision: PlanDecision) -> PlanShape:
    goal = decision.step_goal.steps_per_day if decision.step_goal else 0
    return PlanShape.of(decision.mode, goal, tuple((e.type, e.level) for e in decision.exercises))


def simulate_patient(spec: CohortSpec, index: int, decide: Decide = decide_plan) -> PatientTrace:
    run = PatientRun(spec, index)
    for _ in range(spec.weeks):
        snapshot = run.snapshot()
        run.record(snapshot, decide(snapshot, run.as_of), decide)
    return run.trace()


def simulate_cohort(
    spec: CohortSpec, decide: Decide = decide_plan, indices: range | None = None
) -> Iterator[PatientTrace]:
    """Every patient of the cohort (or of ``indices``), one after the other."""
    for index in indices if indices is not None else range(spec.patients):
        yield simulate_patient(spec, index, decide)
