"""The engine's only input: a frozen, self-contained picture of one patient.

Collections are sorted on construction, so two snapshots holding the same facts in a
different order are equal and hash the same (input-order independence by construction).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from datetime import date
from typing import Any, Literal

StartBackRisk = Literal["low", "medium", "high"]
FeedbackReason = Literal["easy", "difficult", "pain", "instruction-unclear"]
# How a completed exercise felt (exercise-feedback item ``exercise-rating``).
ExerciseRating = Literal["easy", "just-right", "hard", "painful"]
Language = Literal["en", "da"]


def _sorted(items: Any, key: Any) -> tuple[Any, ...]:
    """Sorted by the explicit ``key`` (cheap: dates, ids); only items whose keys tie are
    ordered by their full plain form. The order stays total, so equal facts in any input
    order give equal snapshots, without building a ``repr`` of every item (engine finding 6,
    docs/SIMULATION.md)."""
    ordered = sorted(items, key=key)
    out: list[Any] = []
    start = 0
    for index in range(1, len(ordered) + 1):
        if index == len(ordered) or key(ordered[index]) != key(ordered[start]):
            run = ordered[start:index]
            out += sorted(run, key=_key) if len(run) > 1 else run
            start = index
    return tuple(out)


@dataclass(frozen=True, slots=True)
class BaselineScores:
    """Baseline questionnaire results (selfBACK web questionnaire + STarT Back)."""

    completed_on: date
    age: int | None = None
    sex: Literal["female", "male"] | None = None
    pain_average: int | None = None
    pain_worst: int | None = None
    rmdq: int | None = None
    pseq: int | None = None
    pseq2: int | None = None
    fabq_pa: int | None = None
    phq8: int | None = None
    pss10: int | None = None
    wai: int | None = None
    saltin_grimby: int | None = None
    episode_duration: Literal["<1w", "1-4w", "5-12w", ">12w"] | None = None
    start_back_risk: StartBackRisk | None = None
    start_back_assessed_on: date | None = None
    comorbidities: frozenset[str] = frozenset()
    # Standing red-flag answers given at baseline (cancer history, steroid use or
    # immunosuppression, onset age): RedFlagAnswers field names answered yes.
    red_flag_history: frozenset[str] = frozenset()
    # The baseline response (e.g. "QuestionnaireResponse/12"): the evidence of findings from
    # baseline scores, and how the next plan knows it already raised them (finding 4).
    source: str | None = None


@dataclass(frozen=True, slots=True)
class WeeklyReport:
    """One set of weekly tailoring answers (selfBACK schedule: not every item every week)."""

    reported_on: date
    pain_average: int | None = None
    pain_interference: int | None = None
    fear_of_movement: int | None = None
    pseq2: int | None = None
    pss4: int | None = None
    phq2: int | None = None
    phq8: int | None = None
    wai: int | None = None
    rmdq: int | None = None
    sleep_problem: bool | None = None
    barriers: frozenset[str] = frozenset()
    source: str | None = None  # e.g. "QuestionnaireResponse/123"


@dataclass(frozen=True, slots=True)
class StepDay:
    """Steps of one calendar day; ``valid`` is the wear-time / data-coverage flag."""

    day: date
    steps: int
    valid: bool


@dataclass(frozen=True, slots=True)
class ExerciseLog:
    """One logged session of one exercise (selfBACK: reps per set, skip, skip-and-replace)."""

    day: date
    exercise_id: str  # catalogue exercise id without level, e.g. "ab-curl"
    level: int
    reps_done: tuple[int, ...] = ()
    reps_prescribed: int = 10
    skipped: bool = False
    feedback: FeedbackReason | None = None  # why it was skipped and replaced
    rating: ExerciseRating | None = None  # how a completed session felt


@dataclass(frozen=True, slots=True)
class EducationRecord:
    """What the patient did with one education item."""

    item_id: str
    read_on: date | None = None
    quiz_passed: bool | None = None
    # The newest week an earlier plan delivered the item, when that plan itself is older than
    # the engine's plan window (plan_engine.history folds such plans into these records).
    delivered_on: date | None = None


@dataclass(frozen=True, slots=True)
class RaisedFinding:
    """A safety finding an earlier plan raised, with the data it was raised from (the
    DetectedIssue's evidence). A finding is raised once per source item (finding 4)."""

    finding_id: str
    evidence: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "evidence", tuple(sorted(set(self.evidence))))


@dataclass(frozen=True, slots=True)
class PlannedExercise:
    exercise_id: str
    level: int


@dataclass(frozen=True, slots=True)
class PreviousPlan:
    """A weekly plan the engine made before (the newest one is ``replaces`` of the next)."""

    plan_id: str  # CarePlan logical id
    week_start: date
    step_goal: int
    mode: Literal["standard", "pain-relief", "safety-hold"] = "standard"
    exercises: tuple[PlannedExercise, ...] = ()
    education: tuple[str, ...] = ()
    findings: tuple[RaisedFinding, ...] = ()  # the safety findings this plan raised

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "exercises", _sorted(self.exercises, lambda e: (e.exercise_id, e.level))
        )
        object.__setattr__(self, "education", tuple(sorted(self.education)))
        object.__setattr__(
            self,
            "findings",
            tuple(sorted(set(self.findings), key=lambda f: (f.finding_id, f.evidence))),
        )


@dataclass(frozen=True, slots=True)
class ClinicianOverrides:
    fixed_step_goal: int | None = None
    excluded_exercises: frozenset[str] = frozenset()
    note: str | None = None


@dataclass(frozen=True, slots=True)
class ConsentState:
    programme: bool = True  # consent to processing for the self-management programme
    research: bool = False  # consent to de-identified use in the case base


@dataclass(frozen=True, slots=True)
class RedFlagAnswers:
    """One safety screen (baseline or weekly check-in; ``True`` = present, ``None`` = not
    asked). Each field is one red-flag code of terminology's ``red-flag`` CodeSystem
    (``plan_engine.codes.RED_FLAG_ANSWER_CODES``); the rules in config/rules.json
    (``safety.red_flag_rules``) combine them (NICE CKS low back pain / sciatica red flags)."""

    answered_on: date
    # Possible cauda equina syndrome (emergency).
    bladder_bowel_dysfunction: bool | None = None
    saddle_numbness: bool | None = None
    sexual_dysfunction: bool | None = None
    progressive_leg_weakness: bool | None = None
    bilateral_leg_symptoms: bool | None = None
    # Possible infection, cancer or fracture.
    fever: bool | None = None
    unexplained_weight_loss: bool | None = None
    significant_trauma: bool | None = None
    night_pain: bool | None = None
    thoracic_pain: bool | None = None
    new_pain: bool | None = None  # new, different or steadily worsening back pain
    # Standing facts (config ``safety.standing_answers``): once reported they count with
    # every later screen (BaselineScores.red_flag_history).
    cancer_history: bool | None = None
    steroid_or_immunosuppression: bool | None = None
    onset_age_outside_20_55: bool | None = None
    self_harm_thoughts: bool | None = None  # PHQ-9 item 9 answered above 0
    source: str | None = None


@dataclass(frozen=True, slots=True)
class PatientGoals:
    """The patient's own answers to the goal-setting questionnaire (after the baseline;
    selfBACK Table 1, "goal setting"): the newest response counts."""

    step_target: int | None = None  # the daily steps the patient wants to reach
    preferred_days: tuple[str, ...] = ()  # FHIR days-of-week codes (mon, tue, ...)
    what_matters: str | None = None  # in the patient's own words
    source: str | None = None


@dataclass(frozen=True, slots=True)
class PatientSnapshot:
    """Everything the engine may look at for one patient's next weekly plan."""

    patient_id: str
    programme_start: date
    programme_plan_id: str  # the programme-level CarePlan the weekly plans are based on
    clinician_role_id: str  # PractitionerRole responsible for safety messages
    baseline: BaselineScores
    exercise_minutes: int  # the time the patient chose for exercise per session
    language: Language = "en"
    condition_id: str | None = None
    weekly_reports: tuple[WeeklyReport, ...] = ()
    step_days: tuple[StepDay, ...] = ()
    exercise_logs: tuple[ExerciseLog, ...] = ()
    education: tuple[EducationRecord, ...] = ()
    previous_plans: tuple[PreviousPlan, ...] = ()
    overrides: ClinicianOverrides = field(default_factory=ClinicianOverrides)
    consent: ConsentState = field(default_factory=ConsentState)
    red_flags: tuple[RedFlagAnswers, ...] = ()
    last_app_use: date | None = None
    inputs: tuple[str, ...] = ()  # references of the resources this snapshot was built from
    # Days a clinician recorded a review of a stop-and-refer finding. After a safety hold the
    # plan stays on hold until a review dated on or after the hold began (SAFE-HOLD-UNTIL-REVIEW).
    safety_reviews: tuple[date, ...] = ()
    goals: PatientGoals = field(default_factory=PatientGoals)

    def __post_init__(self) -> None:
        normalised = {
            "weekly_reports": _sorted(
                self.weekly_reports, lambda r: (r.reported_on, r.source or "")
            ),
            "step_days": _sorted(self.step_days, lambda d: (d.day, d.steps, d.valid)),
            "exercise_logs": _sorted(self.exercise_logs, lambda e: (e.day, e.exercise_id, e.level)),
            "education": _sorted(self.education, lambda r: r.item_id),
            "previous_plans": _sorted(self.previous_plans, lambda p: (p.week_start, p.plan_id)),
            "red_flags": _sorted(self.red_flags, lambda r: (r.answered_on, r.source or "")),
            "inputs": tuple(sorted(set(self.inputs))),
            "safety_reviews": tuple(sorted(set(self.safety_reviews))),
        }
        for name, value in normalised.items():
            object.__setattr__(self, name, value)


def _key(value: Any) -> str:
    return repr(to_plain(value))


def to_plain(value: Any) -> Any:
    """JSON-ready form of a snapshot value (dates as ISO strings, sets sorted)."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, frozenset | set):
        return sorted(to_plain(v) for v in value)
    if isinstance(value, tuple | list):
        return [to_plain(v) for v in value]
    return value
