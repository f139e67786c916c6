"""What the engine *should* do, restated from docs/PLAN_ENGINE.md without calling the engine:
which safety findings the data in a snapshot triggers, whether symptoms worsened, and
whether one plan is harder than another.

Only the thresholds are read from ``config/rules.json``; the logic is written again here from
the documented tables ("Safety layer", SAFE-SYMPTOMS-WORSENED), so that a bug in
``safety.py`` or ``features.py`` shows up as a difference instead of being copied.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from plan_engine import codes
from plan_engine.config import Rules
from plan_engine.snapshot import PatientSnapshot, PreviousPlan

EMERGENCY, URGENT, REVIEW, INFO = "emergency", "urgent", "review", "info"
ESCALATIONS = frozenset({EMERGENCY, URGENT, REVIEW})
_RANK = {REVIEW: 1, URGENT: 2, EMERGENCY: 3}
# How hard a plan mode is: a hold is easiest, pain-relief next, the standard plan hardest.
MODE_RANK = {codes.MODE_SAFETY_HOLD: 0, codes.MODE_PAIN_RELIEF: 1, codes.MODE_STANDARD: 2}


def _answered(answers: object, name: str) -> bool:
    return getattr(answers, name, None) is True


def _raised_last_week(snapshot: PatientSnapshot, as_of: date) -> dict[str, set[str]]:
    """Finding id -> the sources the newest earlier plan raised it from."""
    earlier = [p for p in snapshot.previous_plans if p.week_start < as_of]
    raised: dict[str, set[str]] = {}
    for finding in earlier[-1].findings if earlier else ():
        raised.setdefault(finding.finding_id, set()).update(finding.evidence)
    return raised


def expected_findings(snapshot: PatientSnapshot, as_of: date, rules: Rules) -> dict[str, str]:
    """Finding id -> severity class (urgent, review, info) the documented rules call for.
    One finding per source item: what last week's plan raised from the same response is not
    expected again (docs/PLAN_ENGINE.md, "Safety layer"; engine finding 4)."""
    safety = rules.safety
    window = timedelta(days=safety.new_data_window_days)
    found: dict[str, str] = {}
    standing = set(snapshot.baseline.red_flag_history) & safety.standing_answers
    if "cancer" in snapshot.baseline.comorbidities:
        standing.add("cancer_history")
    raised = _raised_last_week(snapshot, as_of)

    def seen(finding_id: str, source: str | None) -> bool:
        return source is not None and source in raised.get(finding_id, set())

    # Red flags: a screen dated within the window, with every sign of a rule (standing
    # history counts) and at least one sign in the screen itself; a rule is not expected when
    # one at least as urgent fired from a strict superset of its signs.
    for answers in snapshot.red_flags:
        if not as_of - window <= answers.answered_on <= as_of:
            continue
        own = [r for r in safety.red_flag_rules if any(_answered(answers, n) for n in r.all_of)]
        fired = [r for r in own if all(_answered(answers, n) or n in standing for n in r.all_of)]
        for rule in fired:
            wider = [
                o
                for o in fired
                if set(rule.all_of) < set(o.all_of) and _RANK[o.urgency] >= _RANK[rule.urgency]
            ]
            if wider or seen(rule.id, answers.source):
                continue
            found[rule.id] = rule.urgency

    earlier = [r for r in snapshot.weekly_reports if r.reported_on < as_of]
    with_pain = [r for r in earlier if r.pain_average is not None]
    newest = earlier[-1] if earlier and earlier[-1].reported_on >= as_of - window else None
    pain_new = newest.pain_average if newest is not None else None
    if pain_new is not None:
        before = with_pain[-2] if len(with_pain) > 1 else None
        previous_pain = before.pain_average if before else snapshot.baseline.pain_average
        high = safety.review_pain_very_high
        if (
            before is not None
            and before.pain_average is not None
            and newest is not None
            and (newest.reported_on - before.reported_on) <= 2 * window
            and pain_new >= high
            and before.pain_average >= high
        ):
            found["REV-PAIN-VERY-HIGH"] = REVIEW
        if previous_pain is not None and pain_new - previous_pain >= safety.review_pain_rise:
            found["REV-PAIN-RISE"] = REVIEW
        relief = _pain_relief_limit_reached(snapshot, as_of, rules, pain_new, previous_pain)
        if relief and not relief <= raised.get("REV-PAIN-RELIEF-LIMIT", set()):
            found["REV-PAIN-RELIEF-LIMIT"] = REVIEW

    rmdq = [r for r in earlier if r.rmdq is not None]
    baseline = snapshot.baseline
    if (
        rmdq
        and rmdq[-1].reported_on >= as_of - window
        and baseline.rmdq is not None
        and rmdq[-1].rmdq is not None
        and rmdq[-1].rmdq - baseline.rmdq >= safety.review_rmdq_worsening
    ):
        found["REV-RMDQ-WORSE"] = REVIEW

    assessed = baseline.start_back_assessed_on or baseline.completed_on
    if (
        baseline.start_back_risk == safety.review_start_back_risk
        and as_of - window <= assessed <= as_of
        and not seen("REV-STARTBACK-HIGH", baseline.source)
    ):
        found["REV-STARTBACK-HIGH"] = REVIEW

    in_window = [r for r in earlier if r.reported_on >= as_of - window and r.phq8 is not None]
    phq8 = in_window[-1].phq8 if in_window else None
    phq8_source = in_window[-1].source if in_window else None
    baseline_is_new = as_of - window <= baseline.completed_on <= as_of
    if phq8 is None and baseline_is_new and not any(r.phq8 is not None for r in earlier):
        phq8, phq8_source = baseline.phq8, baseline.source
    if phq8 is not None:
        bands = [b for b in safety.mood_bands if phq8 >= b.at_or_above]
        if bands and not seen(bands[-1].id, phq8_source):
            top = bands[-1]
            found[top.id] = INFO if top.severity == "low" else REVIEW

    if URGENT in found.values():
        found.pop("REV-PAIN-RELIEF-LIMIT", None)  # a stop-and-refer beats every mode
    if days_without_data(snapshot, as_of) >= safety.nudge_after_days_without_data:
        found["NUDGE-NO-DATA"] = INFO
    return found


def _pain_relief_limit_reached(
    snapshot: PatientSnapshot,
    as_of: date,
    rules: Rules,
    pain_new: int,
    previous_pain: int | None,
) -> set[str]:
    """PR-MAX-WEEKS / REV-PAIN-RELIEF-LIMIT: pain-relief mode would go on (PR-HIGH-PAIN,
    PR-FLARE or PR-CONTINUE-RISING) when ``max_weeks`` of the plans of the last
    ``window_weeks`` were pain-relief plans: the references of those plans (empty: not
    reached). Urgent findings are left to the caller (a hold wins over every mode)."""
    relief = rules.pain_relief
    since = as_of - timedelta(weeks=relief.window_weeks)
    plans = {
        f"CarePlan/{p.plan_id}"
        for p in snapshot.previous_plans
        if since <= p.week_start < as_of and p.mode == codes.MODE_PAIN_RELIEF
    }
    if len(plans) < relief.max_weeks:
        return set()
    previous = [p for p in snapshot.previous_plans if p.week_start < as_of]
    rise = pain_new - previous_pain if previous_pain is not None else None
    continuing = bool(previous) and previous[-1].mode == codes.MODE_PAIN_RELIEF
    wanted = (
        pain_new >= relief.enter_pain_at_or_above
        or (
            relief.moderate_pain_min <= pain_new <= relief.moderate_pain_max
            and rise is not None
            and rise >= relief.moderate_pain_rise_at_least
        )
        or (continuing and rise is not None and rise >= rules.worsening.pain_rise_at_least)
    )
    return plans if wanted else set()


def days_without_data(snapshot: PatientSnapshot, as_of: date) -> int:
    seen = [d.day for d in snapshot.step_days if d.valid and d.day < as_of]
    seen += [r.reported_on for r in snapshot.weekly_reports if r.reported_on < as_of]
    seen += [e.day for e in snapshot.exercise_logs if e.day < as_of]
    seen += [e.read_on for e in snapshot.education if e.read_on and e.read_on < as_of]
    seen += [r.answered_on for r in snapshot.red_flags if r.answered_on < as_of]
    if snapshot.last_app_use is not None and snapshot.last_app_use < as_of:
        seen.append(snapshot.last_app_use)
    return (as_of - max(seen or [snapshot.programme_start])).days


def symptoms_worsened(snapshot: PatientSnapshot, as_of: date, rules: Rules) -> bool:
    """A new weekly pain above the previous one, or a new RMDQ above the previous RMDQ
    (baseline counts as the first measure of each)."""
    window = timedelta(days=rules.safety.new_data_window_days)
    earlier = [r for r in snapshot.weekly_reports if r.reported_on < as_of]
    newest = earlier[-1] if earlier and earlier[-1].reported_on >= as_of - window else None
    pains = [snapshot.baseline.pain_average] + [r.pain_average for r in earlier]
    pains_known = [p for p in pains if p is not None]
    if (
        newest is not None
        and newest.pain_average is not None
        and len(pains_known) > 1
        and pains_known[-1] - pains_known[-2] >= rules.worsening.pain_rise_at_least
    ):
        return True
    measures = [(snapshot.baseline.completed_on, snapshot.baseline.rmdq)]
    measures += [(r.reported_on, r.rmdq) for r in earlier]
    known = [(d, v) for d, v in measures if v is not None]
    return (
        len(known) > 1
        and known[-1][0] >= as_of - window
        and known[-1][1] - known[-2][1] >= rules.worsening.rmdq_rise_at_least  # type: ignore[operator]
    )


@dataclass(frozen=True, slots=True)
class PlanShape:
    """What "harder" looks at: the mode, the daily step goal and the level of each type."""

    mode: str
    goal: int
    levels: tuple[tuple[str, int], ...]  # exercise type -> highest level of that type

    @classmethod
    def of(cls, mode: str, goal: int, exercises: tuple[tuple[str, int], ...]) -> PlanShape:
        levels: dict[str, int] = {}
        for exercise_type, level in exercises:
            levels[exercise_type] = max(levels.get(exercise_type, 0), level)
        return cls(mode, goal, tuple(sorted(levels.items())))


def harder(
    new: PlanShape, old: PlanShape, old_levels: dict[str, int] | None = None
) -> tuple[str, ...]:
    """What makes ``new`` harder than ``old``: a higher goal, a higher level of a type, or a
    harder mode. ``old_levels`` overrides the levels to compare with (the levels last used,
    when ``old`` was a pause)."""
    found = []
    if new.goal > old.goal:
        found.append(f"goal {old.goal}->{new.goal}")
    reference = old_levels if old_levels is not None else dict(old.levels)
    for exercise_type, level in new.levels:
        if exercise_type in reference and level > reference[exercise_type]:
            found.append(f"level {exercise_type} {reference[exercise_type]}->{level}")
    if MODE_RANK.get(new.mode, 0) > MODE_RANK.get(old.mode, 0):
        found.append(f"mode {old.mode}->{new.mode}")
    return tuple(found)


def last_levels(plans: list[PreviousPlan], type_of: dict[str, str]) -> dict[str, int]:
    """Per exercise type, the highest level in the newest plan that held that type."""
    levels: dict[str, int] = {}
    for plan in reversed(plans):
        newest: dict[str, int] = {}
        for planned in plan.exercises:
            exercise_type = type_of[planned.exercise_id]
            if exercise_type not in levels:
                newest[exercise_type] = max(newest.get(exercise_type, 0), planned.level)
        levels.update(newest)
    return levels
