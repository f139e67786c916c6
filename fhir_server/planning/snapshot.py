"""Stored FHIR resources -> :class:`plan_engine.PatientSnapshot`. Pure: no database, no clock.

:func:`build_snapshot` takes everything stored about one patient (a :class:`PatientRecord`,
which :mod:`fhir_server.planning.record` reads through the search engine) and the first
day of the plan week (``as_of``). What counts is decided here, with the dates the engine
expects: weekly reports and exercise logs dated before ``as_of``, red-flag answers up to
and including ``as_of``, 28 days of steps before ``as_of``, and only earlier weekly plans.
Data written after a plan was made but dated inside its week therefore never changes the
snapshot of that plan, and a re-run of the same trigger sees the same snapshot.

Where each input comes from (docs/PLAN_ENGINE.md, "In the server"):

- baseline: the oldest completed ``selfback-baseline`` response (age, sex, episode
  duration, comorbidities from its answers) and the oldest score Observation of each score
  (``Observation.method`` = scoring-algorithm code) from any response of the patient;
- weekly reports and red-flag answers: ``selfback-weekly`` responses with their scores;
  later baseline and mental-health responses add RMDQ and PHQ-8 follow-ups;
- exercise logs: ``selfback-exercise-feedback`` responses;
- steps: Observations LOINC 41950-7, the ``step-day-valid`` extension;
- education: completed Communications instantiating an education ActivityDefinition;
- earlier plans: the engine's CarePlans based on the programme CarePlan and their Goals;
- overrides: a clinician's step Goal and ``doNotPerform`` exercise activities on the
  programme CarePlan; consent: the newest treatment / research Consent;
- safety reviews: ``mitigation`` entries clinicians add to the engine's DetectedIssues;
- findings an earlier plan raised: the engine's DetectedIssues identified on that plan's
  first day, with their evidence (a finding is raised once per source item).

Only the window of history the engine plans from goes into the snapshot
(:func:`plan_engine.bounded_snapshot`, ``history`` in the engine's rules): the newest weekly
reports per answer, the plans of the last weeks, one education record per item, the newest
review. The references of left-out reports leave ``inputs`` with them, so the plan's
``supportingInfo`` names what it was made from (docs/SIMULATION.md, engine finding 6). The
reader fetches little more than that window (``record.read_history``, ``window.py``), so a
record may hold only part of the history: only the earlier plans the window keeps need
their Goal, and the rest is what the window reads, whatever else is stored.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from fhir_server.planning import conventions as fc
from fhir_server.planning.settings import planning_settings
from mappings import red_flag_items
from plan_engine import (
    BaselineScores,
    ClinicianOverrides,
    ConsentState,
    EducationRecord,
    ExerciseLog,
    PatientGoals,
    PatientSnapshot,
    PlannedExercise,
    PreviousPlan,
    RaisedFinding,
    RedFlagAnswers,
    StepDay,
    WeeklyReport,
    bounded_snapshot,
    codes,
    load_catalogue,
)
from plan_engine.config import load_rules
from plan_engine.history import kept_plan_ids

STEP_WINDOW = timedelta(days=28)
LOG_WINDOW = timedelta(days=28)
BASELINE_SPAN = timedelta(days=14)
_SCORED_STATUSES = ("completed", "amended")
_PLAN_STATUSES = ("active", "on-hold", "completed", "revoked")


class PlanningInputError(ValueError):
    """The stored data are not enough to plan from (no programme CarePlan, no baseline, ...);
    the server answers 422 with this message."""


@dataclass(frozen=True, slots=True)
class PatientRecord:
    """What is stored about one patient, as FHIR JSON, in no particular order."""

    patient: dict[str, Any]
    programme_plan: dict[str, Any]
    responses: tuple[dict[str, Any], ...] = ()
    observations: tuple[dict[str, Any], ...] = ()  # score Observations and daily steps
    weekly_plans: tuple[dict[str, Any], ...] = ()  # CarePlans based on the programme plan
    goals: tuple[dict[str, Any], ...] = ()  # the engine's step Goals and clinicians' Goals
    communications: tuple[dict[str, Any], ...] = ()  # education read reports
    consents: tuple[dict[str, Any], ...] = ()
    detected_issues: tuple[dict[str, Any], ...] = ()  # the engine's, with clinicians' reviews
    extra_inputs: tuple[str, ...] = field(default=())


def day_of(value: str | None) -> date | None:
    """The calendar date of a FHIR date/dateTime as written (its own time zone)."""
    if not value or len(value) < 10:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def _ref(resource: dict[str, Any]) -> str:
    return f"{resource['resourceType']}/{resource['id']}"


def _ref_id(reference: Any, rtype: str) -> str | None:
    if not isinstance(reference, dict):
        return None
    value = reference.get("reference")
    if isinstance(value, str) and value.startswith(rtype + "/"):
        return value.split("/", 2)[1]
    return None


def _questionnaire(response: dict[str, Any]) -> str:
    return str(response.get("questionnaire") or "").split("|", 1)[0]


def answers(response: dict[str, Any]) -> dict[str, list[Any]]:
    """linkId -> the answer values (booleans, numbers, codes, strings), nested items too."""
    found: dict[str, list[Any]] = {}

    def walk(items: Iterable[dict[str, Any]]) -> None:
        for item in items:
            for answer in item.get("answer") or []:
                for key, value in answer.items():
                    if key == "valueCoding":
                        found.setdefault(item["linkId"], []).append(value.get("code"))
                    elif key.startswith("value"):
                        found.setdefault(item["linkId"], []).append(value)
                walk(answer.get("item") or [])
            walk(item.get("item") or [])

    walk(response.get("item") or [])
    return found


def _first(values: dict[str, list[Any]], link_id: str) -> Any:
    got = values.get(link_id)
    return got[0] if got else None


def _int_or_none(value: Any) -> int | None:
    # Numbers may arrive as Decimal (decimals keep their precision, formats/fhir_json.py);
    # each use below is int() or a comparison with an int, both exact for Decimal.
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float | Decimal):
        return int(round(value))
    return None


def _score_id(observation: dict[str, Any]) -> str | None:
    for coding in (observation.get("method") or {}).get("coding") or []:
        if coding.get("system") == fc.SCORING_ALGORITHM:
            return str(coding.get("code"))
    return None


def _score_value(observation: dict[str, Any]) -> Any:
    if "valueInteger" in observation:
        return observation["valueInteger"]
    if "valueQuantity" in observation:
        return observation["valueQuantity"].get("value")
    if "valueCodeableConcept" in observation:
        for coding in observation["valueCodeableConcept"].get("coding") or []:
            if str(coding.get("system", "")).endswith("/CodeSystem/score-band"):
                return coding.get("code")
    return None


def _has_code(resource: dict[str, Any], element: str, system: str, code: str) -> bool:
    concepts = resource.get(element) or []
    if isinstance(concepts, dict):
        concepts = [concepts]
    return any(
        c.get("system") == system and c.get("code") == code
        for concept in concepts
        for c in concept.get("coding") or []
    )


def _extension(resource: dict[str, Any], url: str) -> dict[str, Any] | None:
    return next((e for e in resource.get("extension") or [] if e.get("url") == url), None)


@dataclass(frozen=True, slots=True)
class _Scored:
    response: dict[str, Any]
    day: date
    questionnaire: str
    answers: dict[str, list[Any]]
    scores: dict[str, Any]


def _scored_responses(record: PatientRecord) -> list[_Scored]:
    by_response: dict[str, dict[str, Any]] = {}
    for observation in record.observations:
        score = _score_id(observation)
        if score is None or observation.get("status") not in ("final", "amended", "corrected"):
            continue
        for source in observation.get("derivedFrom") or []:
            qr_id = _ref_id(source, "QuestionnaireResponse")
            if qr_id is not None:
                by_response.setdefault(qr_id, {})[score] = _score_value(observation)
    out = []
    for response in record.responses:
        day = day_of(response.get("authored")) or day_of(
            (response.get("meta") or {}).get("lastUpdated")
        )
        if response.get("status") not in _SCORED_STATUSES or day is None:
            continue
        out.append(
            _Scored(
                response,
                day,
                _questionnaire(response),
                answers(response),
                by_response.get(response["id"], {}),
            )
        )
    out.sort(key=lambda s: (s.day, str(s.response.get("authored")), s.response["id"]))
    return out


_EPISODES = {
    "episode-lt-1w": "<1w",
    "episode-1-4w": "1-4w",
    "episode-5-12w": "5-12w",
    "episode-gt-12w": ">12w",
}
_RISK = {"sbst-low": "low", "sbst-medium": "medium", "sbst-high": "high"}
_CANCER_COMORBIDITY = "cancer"


def _red_flag_items(questionnaire: str) -> dict[str, str]:
    """linkId -> RedFlagAnswers field of the items of this Questionnaire that ask a red
    flag: by the red-flag code in ``Questionnaire.item.code`` (mappings.red_flag_items), so
    a new item needs no change here, only a code the engine knows."""
    return {
        link_id: codes.RED_FLAG_ANSWER_BY_CODE[code]
        for link_id, code in red_flag_items().get(questionnaire, {}).items()
        if code in codes.RED_FLAG_ANSWER_BY_CODE
    }


def _baseline(scored: list[_Scored]) -> tuple[BaselineScores, set[str]]:
    """The baseline and the responses it used (they are not weekly reports)."""
    first = next((s for s in scored if s.questionnaire == fc.BASELINE_QUESTIONNAIRE), None)
    if first is None:
        raise PlanningInputError(
            "No completed baseline questionnaire (selfback-baseline) for this patient: "
            "the first plan needs the baseline scores"
        )
    oldest: dict[str, tuple[Any, str]] = {}
    for s in scored:
        # The baseline is the baseline questionnaire plus the other baseline-time
        # questionnaires (mental health, everyday health, ...) answered within
        # BASELINE_SPAN of it; weekly check-ins and exercise feedback never count.
        if s.questionnaire in (fc.WEEKLY_QUESTIONNAIRE, fc.EXERCISE_FEEDBACK_QUESTIONNAIRE):
            continue
        if s is not first and not first.day <= s.day <= first.day + BASELINE_SPAN:
            continue
        for score_id, value in s.scores.items():
            if score_id not in oldest and value is not None:
                oldest[score_id] = (value, s.response["id"])
    used = {first.response["id"]} | {
        rid for score_id, (_, rid) in oldest.items() if score_id in ("phq8-total", "pss10-total")
    }
    values = first.answers
    comorbidities = frozenset(
        str(c) for c in values.get("comorbidity", []) if c and c != "comorbidity-none"
    )
    screen = _red_flags(first)
    standing = load_rules().safety.standing_answers
    history = frozenset(
        name for name in standing if screen is not None and getattr(screen, name) is True
    )
    sex = _first(values, "sex")
    risk = oldest.get("startback-risk", (None, ""))[0]

    def score(name: str) -> int | None:
        return _int_or_none(oldest.get(name, (None, ""))[0])

    baseline = BaselineScores(
        completed_on=first.day,
        age=_int_or_none(_first(values, "age")),
        sex=sex if sex in ("female", "male") else None,
        pain_average=_int_or_none(first.scores.get("nrs-pain-average")),
        pain_worst=_int_or_none(first.scores.get("nrs-pain-worst")),
        rmdq=_int_or_none(first.scores.get("rmdq-total")),
        pseq=score("pseq-total"),
        pseq2=score("pseq2-total"),
        fabq_pa=score("fabq-pa-total"),
        phq8=score("phq8-total"),
        pss10=score("pss10-total"),
        wai=score("wai-current"),
        saltin_grimby=score("saltin-grimby-level"),
        episode_duration=_EPISODES.get(str(_first(values, "episode-duration"))),  # type: ignore[arg-type]
        start_back_risk=_RISK.get(str(risk)),  # type: ignore[arg-type]
        comorbidities=comorbidities,
        red_flag_history=history,
        source=_ref(first.response),
    )
    return baseline, used


def _weekly_report(s: _Scored, sleep_problem_at_or_below: int) -> WeeklyReport | None:
    source = _ref(s.response)
    if s.questionnaire == fc.WEEKLY_QUESTIONNAIRE:
        sleep = _int_or_none(_first(s.answers, "sleep-weekly"))
        return WeeklyReport(
            reported_on=s.day,
            pain_average=_int_or_none(s.scores.get("nrs-pain-average")),
            pain_interference=_int_or_none(s.scores.get("pain-interference")),
            fear_of_movement=_int_or_none(s.scores.get("fear-avoidance-item")),
            pseq2=_int_or_none(s.scores.get("pseq2-total")),
            pss4=_int_or_none(s.scores.get("pss4-total")),
            phq2=_int_or_none(s.scores.get("phq2-total")),
            wai=_int_or_none(s.scores.get("wai-current")),
            sleep_problem=None if sleep is None else sleep <= sleep_problem_at_or_below,
            barriers=frozenset(str(b) for b in s.answers.get("barriers", []) if b),
            source=source,
        )
    rmdq = _int_or_none(s.scores.get("rmdq-total"))
    phq8 = _int_or_none(s.scores.get("phq8-total"))
    if rmdq is None and phq8 is None:
        return None
    return WeeklyReport(reported_on=s.day, rmdq=rmdq, phq8=phq8, source=source)


@dataclass(frozen=True, slots=True)
class ResponseInputs:
    """What a patient's questionnaire responses give the snapshot of the week of ``as_of``,
    before the history window: the baseline, every weekly report dated before ``as_of``,
    the red-flag answers and exercise logs of the last 28 days, the references used and the
    days a scored response was given before ``as_of`` (app use)."""

    baseline: BaselineScores
    reports: list[WeeklyReport]
    flags: list[RedFlagAnswers]
    logs: list[ExerciseLog]
    inputs: list[str]
    used_days: list[date]
    weekly_sources: frozenset[str]  # the reports made from a weekly check-in
    goals: PatientGoals = PatientGoals()  # the newest goal-setting answers before as_of
    goal_minutes: int | None = None  # the exercise minutes chosen there


def response_inputs(record: PatientRecord, as_of: date) -> ResponseInputs:
    """Raises ``PlanningInputError`` when there is no baseline."""
    sleep_at_or_below = planning_settings().sleep_problem_at_or_below
    scored = _scored_responses(record)
    baseline, baseline_responses = _baseline(scored)
    reports, flags, logs, inputs, weekly = [], [], [], [], set()
    goal_setting: _Scored | None = None
    for s in scored:
        # Red-flag answers count from any screen: the baseline's safety check and every
        # weekly check-in (NICE CKS: a red flag is acted on whenever it is reported).
        answers_given = _red_flags(s)
        if answers_given is not None and as_of - LOG_WINDOW <= s.day <= as_of:
            flags.append(answers_given)
        if s.response["id"] in baseline_responses:
            inputs.append(_ref(s.response))
            continue
        if s.questionnaire == fc.GOAL_SETTING_QUESTIONNAIRE:
            if s.day < as_of and (goal_setting is None or _newer(s, goal_setting)):
                goal_setting = s
            continue
        if s.questionnaire == fc.EXERCISE_FEEDBACK_QUESTIONNAIRE:
            log = _exercise_log(s)
            if log is not None and as_of - LOG_WINDOW <= s.day < as_of:
                logs.append(log)
                inputs.append(_ref(s.response))
            continue
        if s.questionnaire == fc.WEEKLY_QUESTIONNAIRE:
            weekly.add(_ref(s.response))
        if s.day < as_of:
            report = _weekly_report(s, sleep_at_or_below)
            if report is not None:
                reports.append(report)
                inputs.append(_ref(s.response))
    used_days = [s.day for s in scored if s.day < as_of]
    goals, goal_minutes = PatientGoals(), None
    if goal_setting is not None:
        inputs.append(_ref(goal_setting.response))
        goals, goal_minutes = _patient_goals(goal_setting)
    return ResponseInputs(
        baseline,
        reports,
        flags,
        logs,
        inputs,
        used_days,
        frozenset(weekly),
        goals,
        goal_minutes,
    )


def _newer(a: _Scored, b: _Scored) -> bool:
    key_a = (a.day, str(a.response.get("authored") or ""), a.response["id"])
    key_b = (b.day, str(b.response.get("authored") or ""), b.response["id"])
    return key_a > key_b


_DAYS_OF_WEEK = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _patient_goals(s: _Scored) -> tuple[PatientGoals, int | None]:
    """The goal-setting answers (Questionnaire selfback-goal-setting): the patient's own
    daily step target, preferred exercise days (FHIR days-of-week), what matters to them in
    their own words, and the exercise minutes they can set aside."""
    target = _int_or_none(_first(s.answers, "goal-steps"))
    days = {str(d) for d in s.answers.get("goal-days", []) if d in _DAYS_OF_WEEK}
    words = _first(s.answers, "goal-what-matters")
    minutes = _int_or_none(_first(s.answers, "goal-minutes"))
    goals = PatientGoals(
        step_target=target if target is not None and target >= 0 else None,
        preferred_days=tuple(d for d in _DAYS_OF_WEEK if d in days),
        what_matters=words.strip() if isinstance(words, str) and words.strip() else None,
        source=_ref(s.response),
    )
    return goals, minutes if minutes is not None and minutes > 0 else None


def baseline_score_values(record: PatientRecord) -> dict[str, float] | None:
    """Score id -> value at baseline (the oldest of each, from the baseline questionnaire and
    the baseline-time questionnaires within BASELINE_SPAN of it), as the weekly schedule's
    conditions read them (mappings.due_groups); None without a completed baseline."""
    scored = _scored_responses(record)
    first = next((s for s in scored if s.questionnaire == fc.BASELINE_QUESTIONNAIRE), None)
    if first is None:
        return None
    values: dict[str, float] = {}
    for s in scored:
        if s.questionnaire in (fc.WEEKLY_QUESTIONNAIRE, fc.EXERCISE_FEEDBACK_QUESTIONNAIRE):
            continue
        if s is not first and not first.day <= s.day <= first.day + BASELINE_SPAN:
            continue
        for score_id, value in s.scores.items():
            number = _int_or_none(value) if not isinstance(value, float) else value
            if score_id not in values and number is not None:
                values[score_id] = float(number)
    return values


def answered_questionnaires(record: PatientRecord, before: date) -> frozenset[str]:
    """Canonical URLs (without version) of the questionnaires answered (completed or
    amended) before ``before``."""
    return frozenset(s.questionnaire for s in _scored_responses(record) if s.day < before)


def first_baseline_day(record: PatientRecord) -> date | None:
    """The day of the baseline response the baseline scores come from (None: none yet)."""
    scored = _scored_responses(record)
    first = next((s for s in scored if s.questionnaire == fc.BASELINE_QUESTIONNAIRE), None)
    return first.day if first is not None else None


def _red_flags(s: _Scored) -> RedFlagAnswers | None:
    """The red-flag answers of one response (None: it asks none). A cancer comorbidity
    in the baseline counts as a history of cancer (NICE CKS: past history of cancer)."""
    given = {
        field_name: bool(_first(s.answers, link_id))
        for link_id, field_name in _red_flag_items(s.questionnaire).items()
        if isinstance(_first(s.answers, link_id), bool)
    }
    if s.questionnaire == fc.BASELINE_QUESTIONNAIRE and _CANCER_COMORBIDITY in s.answers.get(
        "comorbidity", []
    ):
        given["cancer_history"] = True
    if not given:
        return None
    return RedFlagAnswers(answered_on=s.day, source=_ref(s.response), **given)  # type: ignore[arg-type]


_FEEDBACK = {"easy", "difficult", "pain", "instruction-unclear"}
_RATINGS = {"easy", "just-right", "hard", "painful"}


def _exercise_log(s: _Scored) -> ExerciseLog | None:
    exercise_id = _first(s.answers, "exercise")
    level = _int_or_none(_first(s.answers, "exercise-level"))
    if not isinstance(exercise_id, str) or level is None:
        return None
    if not load_catalogue().has_exercise(exercise_id, level):
        return None  # not one of the catalogue's exercises: nothing the engine can adapt
    outcome = _first(s.answers, "exercise-outcome")
    reps = tuple(
        r
        for r in (_int_or_none(_first(s.answers, f"reps-set-{n}")) for n in (1, 2, 3))
        if r is not None
    )
    reason = _first(s.answers, "replace-reason")
    rating = _first(s.answers, "exercise-rating")
    return ExerciseLog(
        day=s.day,
        exercise_id=exercise_id,
        level=level,
        reps_done=reps,
        skipped=outcome in ("exercise-skipped", "exercise-replaced"),
        feedback=reason if reason in _FEEDBACK else None,  # type: ignore[arg-type]
        # How a completed session felt (exercise-feedback item exercise-rating).
        rating=rating  # type: ignore[arg-type]
        if rating in _RATINGS and outcome == "exercise-completed"
        else None,
    )


def _step_days(record: PatientRecord, as_of: date) -> tuple[list[StepDay], list[str]]:
    """Daily counts of the 28 days before ``as_of``; several counts for one day (phone and
    watch): the highest counts, valid when that count is."""
    best: dict[date, tuple[int, bool, str]] = {}
    for observation in record.observations:
        if not _has_code(observation, "code", codes.LOINC, fc.LOINC_STEPS):
            continue
        if observation.get("status") not in ("final", "amended", "corrected"):
            continue
        day = day_of(observation.get("effectiveDateTime")) or day_of(
            (observation.get("effectivePeriod") or {}).get("start")
        )
        value = (observation.get("valueQuantity") or {}).get("value")
        if day is None or not isinstance(value, int | float | Decimal) or value < 0:
            continue
        if not as_of - STEP_WINDOW <= day < as_of:
            continue
        flag = _extension(observation, fc.EXT_STEP_DAY_VALID)
        valid = not (flag is not None and flag.get("valueBoolean") is False)
        candidate = (int(value), valid, _ref(observation))
        if day not in best or candidate > best[day]:
            best[day] = candidate
    days = [StepDay(day, steps, valid) for day, (steps, valid, _) in best.items()]
    recent = [ref for day, (_, _, ref) in best.items() if day >= as_of - timedelta(days=14)]
    return days, recent


def _catalogue_ids() -> tuple[dict[str, tuple[str, int]], set[str]]:
    catalogue = load_catalogue()
    exercises = {e.definition_id: (e.exercise_id, e.level) for e in catalogue.exercises}
    return exercises, {e.definition_id for e in catalogue.education}


def _definition_id(canonical: str) -> str:
    return canonical.split("|", 1)[0].rsplit("/", 1)[-1]


def is_weekly_plan(plan: dict[str, Any]) -> bool:
    return any(
        str(c).startswith(codes.PLAN_DEFINITION_URL) for c in plan.get("instantiatesCanonical", [])
    )


def is_superseded(plan: dict[str, Any]) -> bool:
    return _extension(plan, fc.EXT_SUPERSEDED_BY) is not None


def plan_weeks(record: PatientRecord) -> dict[date, dict[str, Any]]:
    """The engine's weekly plans in force, by week start (superseded ones left out)."""
    weeks: dict[date, dict[str, Any]] = {}
    for plan in record.weekly_plans:
        start = day_of((plan.get("period") or {}).get("start"))
        if start is None or not is_weekly_plan(plan) or is_superseded(plan):
            continue
        if plan.get("status") not in _PLAN_STATUSES:
            continue
        if start not in weeks or plan["id"] > weeks[start]["id"]:
            weeks[start] = plan
    return weeks


_WITHDRAWN_ISSUE = ("cancelled", "entered-in-error")


def _raised_findings(record: PatientRecord) -> dict[date, list[RaisedFinding]]:
    """The engine's findings by the plan week they were raised in: its DetectedIssues carry
    the finding id under ``plan-rule``, ``identifiedDateTime`` = the plan's first day and the
    source responses as evidence. Every decision stored for that week counts (a superseded
    plan's Flag and Communication were sent too); a withdrawn issue does not."""
    raised: dict[date, list[RaisedFinding]] = {}
    for issue in record.detected_issues:
        day = day_of(issue.get("identifiedDateTime"))
        finding = next(
            (
                str(c.get("code"))
                for c in (issue.get("code") or {}).get("coding") or []
                if c.get("system") == codes.PLAN_RULE and c.get("code")
            ),
            None,
        )
        if day is None or finding is None or issue.get("status") in _WITHDRAWN_ISSUE:
            continue
        evidence = tuple(
            str(d["reference"])
            for e in issue.get("evidence") or []
            for d in e.get("detail") or []
            if isinstance(d, dict) and isinstance(d.get("reference"), str)
        )
        raised.setdefault(day, []).append(RaisedFinding(finding, evidence))
    return raised


def plan_goal_id(plan: dict[str, Any]) -> str | None:
    """The id of a weekly plan's step Goal (``CarePlan.goal``)."""
    return next((i for i in (_ref_id(g, "Goal") for g in plan.get("goal", [])) if i), None)


def _previous_plans(record: PatientRecord, as_of: date) -> list[PreviousPlan]:
    """The earlier plans. Only those the history window keeps
    (:func:`plan_engine.history.kept_plan_ids`) need their step Goal: the reader reads no
    other Goals, and the others leave the snapshot with only their education kept."""
    plans = _plans_before(record, as_of)
    kept = kept_plan_ids(tuple(plans), as_of)
    goals = {g["id"]: g for g in record.goals}
    stored = {p["id"]: p for p in record.weekly_plans}
    out = []
    for plan in plans:
        goal = goals.get(plan_goal_id(stored[plan.plan_id]) or "")
        value = None
        if goal is not None:
            value = ((goal.get("target") or [{}])[0].get("detailQuantity") or {}).get("value")
        if isinstance(value, int | float | Decimal):
            out.append(replace(plan, step_goal=int(value)))
        elif plan.plan_id in kept:
            raise PlanningInputError(
                f"CarePlan/{plan.plan_id} (week of {plan.week_start}) has no step Goal with a value"
            )
        else:
            out.append(plan)  # left out of the snapshot by the window; its goal is not read
    return out


def window_goal_ids(record: PatientRecord, as_of: date) -> list[str]:
    """The Goals the plan of the week of ``as_of`` reads: those of the earlier plans the
    history window keeps."""
    kept = kept_plan_ids(tuple(_plans_before(record, as_of)), as_of)
    plans = {p["id"]: p for p in record.weekly_plans}
    return sorted({g for i in kept if (g := plan_goal_id(plans[i]))})


def _plans_before(record: PatientRecord, as_of: date) -> list[PreviousPlan]:
    """The earlier plans in force, with a step goal of 0 until their Goal is looked up."""
    exercises, education = _catalogue_ids()
    raised = _raised_findings(record)
    plans = []
    for start, plan in sorted(plan_weeks(record).items()):
        if start >= as_of:
            continue
        mode = next(
            (
                c.get("code")
                for concept in plan.get("category", [])
                for c in concept.get("coding", [])
                if c.get("system") == codes.PLAN_MODE
            ),
            codes.MODE_STANDARD,
        )
        planned: list[PlannedExercise] = []
        items: list[str] = []
        for activity in plan.get("activity", []):
            for canonical in (activity.get("detail") or {}).get("instantiatesCanonical", []):
                definition = _definition_id(str(canonical))
                if definition in exercises:
                    planned.append(PlannedExercise(*exercises[definition]))
                elif definition in education:
                    items.append(definition)
        plans.append(
            PreviousPlan(
                plan_id=plan["id"],
                week_start=start,
                step_goal=0,
                mode=mode if mode in ("standard", "pain-relief", "safety-hold") else "standard",  # type: ignore[arg-type]
                exercises=tuple(planned),
                education=tuple(items),
                findings=tuple(raised.get(start, ())),
            )
        )
    return plans


def _education(record: PatientRecord, as_of: date) -> list[EducationRecord]:
    _, education = _catalogue_ids()
    latest: dict[str, EducationRecord] = {}
    for message in record.communications:
        if message.get("status") != "completed":
            continue
        items = [
            _definition_id(str(c))
            for c in message.get("instantiatesCanonical", [])
            if _definition_id(str(c)) in education
        ]
        read_on = day_of(message.get("received")) or day_of(message.get("sent"))
        if not items or read_on is None or read_on >= as_of:
            continue
        quiz = _extension(message, fc.EXT_QUIZ_PASSED)
        passed = quiz.get("valueBoolean") if quiz else None
        for item in items:
            before = latest.get(item)
            if before is None or (before.read_on or date.min) <= read_on:
                kept = passed if passed is not None else (before.quiz_passed if before else None)
                latest[item] = EducationRecord(item, read_on, kept)
    return list(latest.values())


def _overrides(record: PatientRecord) -> tuple[ClinicianOverrides, list[str]]:
    """A clinician's fixed goal: an active Goal expressed by a Practitioner(Role) on daily
    steps (the newest by start date); excluded exercises: programme CarePlan activities
    with ``doNotPerform`` = true naming an exercise ActivityDefinition (any level). Also
    answers the references of what was used (they become Provenance entities)."""
    fixed: tuple[str, str, int, str | None] | None = None
    for goal in record.goals:
        author = (goal.get("expressedBy") or {}).get("reference", "")
        if not str(author).startswith(("Practitioner/", "PractitionerRole/")):
            continue
        if goal.get("lifecycleStatus") != "active":
            continue
        for target in goal.get("target") or []:
            if not _has_code(target, "measure", codes.LOINC, fc.LOINC_STEPS):
                continue
            value = (target.get("detailQuantity") or {}).get("value")
            if isinstance(value, int | float | Decimal) and value > 0:
                note = next((n.get("text") for n in goal.get("note") or []), None)
                candidate = (str(goal.get("startDate") or ""), goal["id"], int(value), note)
                if fixed is None or candidate[:2] > fixed[:2]:
                    fixed = candidate
    exercises, _ = _catalogue_ids()
    excluded = set()
    notes = []
    for activity in record.programme_plan.get("activity") or []:
        detail = activity.get("detail") or {}
        if detail.get("doNotPerform") is not True:
            continue
        for canonical in detail.get("instantiatesCanonical") or []:
            found = exercises.get(_definition_id(str(canonical)))
            if found is not None:
                excluded.add(found[0])
                if detail.get("description"):
                    notes.append(str(detail["description"]))
    note_parts = ([fixed[3]] if fixed and fixed[3] else []) + sorted(notes)
    used = [f"Goal/{fixed[1]}"] if fixed else []
    if excluded:
        used.append(_ref(record.programme_plan))
    overrides = ClinicianOverrides(
        fixed_step_goal=fixed[2] if fixed else None,
        excluded_exercises=frozenset(excluded),
        note="; ".join(note_parts) or None,
    )
    return overrides, used


def _consent(record: PatientRecord) -> ConsentState:
    """The newest Consent per scope decides; none for the programme: the enrolment itself
    (the programme CarePlan) is the consent; none for research: no research use."""
    scope_system = "http://terminology.hl7.org/CodeSystem/consentscope"
    state = {"treatment": True, "research": False}
    for scope in state:
        matching = [c for c in record.consents if _has_code(c, "scope", scope_system, scope)]
        if matching:
            newest = max(matching, key=lambda c: (str(c.get("dateTime") or ""), c["id"]))
            state[scope] = newest.get("status") == "active"
    return ConsentState(programme=state["treatment"], research=state["research"])


def _safety_reviews(record: PatientRecord, as_of: date) -> list[date]:
    """Days a clinician recorded a review: a ``mitigation`` (with a date and a Practitioner
    or PractitionerRole author) on one of the patient's DetectedIssues, dated by ``as_of``."""
    days = []
    for issue in record.detected_issues:
        for mitigation in issue.get("mitigation") or []:
            author = str((mitigation.get("author") or {}).get("reference") or "")
            day = day_of(mitigation.get("date"))
            if day and day <= as_of and author.startswith(("Practitioner/", "PractitionerRole/")):
                days.append(day)
    return days


def _language(patient: dict[str, Any]) -> str:
    for communication in patient.get("communication") or []:
        for coding in (communication.get("language") or {}).get("coding") or []:
            if str(coding.get("code", "")).lower().startswith("da"):
                return "da"
    return "en"


def programme_start(programme_plan: dict[str, Any]) -> date:
    start = day_of((programme_plan.get("period") or {}).get("start"))
    if start is None:
        raise PlanningInputError(
            f"CarePlan/{programme_plan.get('id')} (the programme plan) needs period.start"
        )
    return start


def build_snapshot(record: PatientRecord, as_of: date) -> PatientSnapshot:
    """The snapshot the plan for the week starting ``as_of`` is made from."""
    settings = planning_settings()
    plan = record.programme_plan
    clinician = next(
        (i for i in (_ref_id(a, "PractitionerRole") for a in _as_list(plan.get("author"))) if i),
        None,
    )
    if clinician is None:
        raise PlanningInputError(
            f"CarePlan/{plan.get('id')} (the programme plan) must name the responsible "
            "clinician as author (a PractitionerRole): safety messages go there"
        )
    start = programme_start(plan)
    given = response_inputs(record, as_of)
    baseline, reports, flags, logs = given.baseline, given.reports, given.flags, given.logs
    inputs = list(given.inputs)
    steps, step_refs = _step_days(record, as_of)
    used_days = list(given.used_days)
    used_days += [
        d
        for c in record.communications
        if (d := day_of(c.get("received") or c.get("sent"))) and d < as_of
    ]
    condition = next(
        (i for i in (_ref_id(a, "Condition") for a in plan.get("addresses") or []) if i), None
    )
    overrides, override_refs = _overrides(record)
    minutes_ext = _extension(plan, fc.EXT_EXERCISE_MINUTES)
    minutes = (minutes_ext or {}).get("valueInteger") or settings.default_exercise_minutes
    if given.goal_minutes is not None:
        minutes = given.goal_minutes  # the patient's own, newer choice (goal setting)
    snapshot = PatientSnapshot(
        patient_id=record.patient["id"],
        programme_start=start,
        programme_plan_id=plan["id"],
        clinician_role_id=clinician,
        baseline=baseline,
        exercise_minutes=int(minutes),
        language=_language(record.patient),  # type: ignore[arg-type]
        condition_id=condition,
        weekly_reports=tuple(reports),
        step_days=tuple(steps),
        exercise_logs=tuple(logs),
        education=tuple(_education(record, as_of)),
        previous_plans=tuple(_previous_plans(record, as_of)),
        overrides=overrides,
        consent=_consent(record),
        red_flags=tuple(flags),
        last_app_use=max(used_days) if used_days else None,
        inputs=tuple(inputs + step_refs + override_refs + list(record.extra_inputs)),
        safety_reviews=tuple(_safety_reviews(record, as_of)),
        goals=given.goals,
    )
    bounded = bounded_snapshot(snapshot, as_of)
    still_used = {r.source for r in bounded.weekly_reports} | {r.source for r in flags}
    left_out = {r.source for r in snapshot.weekly_reports} - still_used
    if not left_out:
        return bounded
    return replace(bounded, inputs=tuple(i for i in bounded.inputs if i not in left_out))


def _as_list(value: Any) -> Iterator[Any]:
    if isinstance(value, list):
        yield from value
    elif value is not None:
        yield value
