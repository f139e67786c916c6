"""The part of a patient's history the engine plans from (docs/SIMULATION.md, engine finding 6).

Without a bound, the decision key hashes every earlier plan, report and education record, so
the cost of one weekly plan grows with every week of the programme. The rules only look at a
known window, set in ``config/rules.json`` (``history``), so :func:`bounded_snapshot` keeps
exactly what they read and nothing more:

- **earlier plans**: those starting within ``plan_weeks`` weeks before ``as_of`` (the newest
  is ``replaces``; its findings stop a finding being raised twice), plus the newest standard
  plan with exercises (EX-RESUME resumes its levels) and the first plan of the newest run of
  safety holds (SAFE-HOLD-UNTIL-REVIEW counts reviews from it). Plans starting on or after
  ``as_of`` are left as given. The education of every plan left out is folded into the
  education records (``delivered_on``: the newest week it was delivered), one record per
  catalogue item, so "no repeats except quizzes" and the quiz rotation still see it.
- **weekly reports**: every report of the new-data window and, per answer, the newest
  ``weekly_values_kept`` reports holding it ("latest" values of any age, the previous value
  and the 4-point pain series of the similarity measure); reports dated on or after
  ``as_of`` are left as given.
- **safety reviews**: only the newest one (SAFE-HOLD-UNTIL-REVIEW asks whether any review is
  dated on or after the hold began, which the newest answers).

Steps, exercise logs and red-flag answers are already bounded where a snapshot is built (28
days in the server and the simulator) and are left alone. The function is pure and
idempotent, and the decision for the bounded snapshot is the decision for the full one: the
engine applies it before it derives anything, including the decision key.
"""

from __future__ import annotations

from dataclasses import fields, replace
from datetime import date, timedelta

from plan_engine import codes
from plan_engine.config import Rules, load_rules, load_similarity
from plan_engine.snapshot import EducationRecord, PatientSnapshot, PreviousPlan, WeeklyReport

_NOT_ANSWERS = frozenset({"reported_on", "source", "barriers"})
ANSWER_FIELDS = tuple(f.name for f in fields(WeeklyReport) if f.name not in _NOT_ANSWERS)


def _kept_plans(plans: tuple[PreviousPlan, ...], as_of: date, weeks: int) -> set[str]:
    earlier = [p for p in plans if p.week_start < as_of]
    since = as_of - timedelta(weeks=weeks)
    kept = {p.plan_id for p in earlier if p.week_start >= since}
    if earlier:
        kept.add(earlier[-1].plan_id)  # the newest plan, however old
    memory = next(
        (p for p in reversed(earlier) if p.mode == codes.MODE_STANDARD and p.exercises), None
    )
    if memory is not None:
        kept.add(memory.plan_id)
    hold_start = None
    for plan in reversed(earlier):
        if plan.mode != codes.MODE_SAFETY_HOLD:
            break
        hold_start = plan
    if hold_start is not None:
        kept.add(hold_start.plan_id)
    return kept | {p.plan_id for p in plans if p.week_start >= as_of}


def _folded_education(
    records: tuple[EducationRecord, ...], dropped: list[PreviousPlan], as_of: date
) -> tuple[EducationRecord, ...]:
    """One record per item: the newest read day (before ``as_of`` when there is one, as the
    days-without-data rule reads it), passed when any result passed, and the newest week a
    left-out plan delivered it."""
    by_item: dict[str, list[EducationRecord]] = {}
    for record in records:
        by_item.setdefault(record.item_id, []).append(record)
    delivered: dict[str, date] = {}
    for plan in dropped:
        for item in plan.education:
            delivered[item] = max(delivered.get(item, plan.week_start), plan.week_start)
            by_item.setdefault(item, [])
    out = []
    for item, group in by_item.items():
        if len(group) == 1 and item not in delivered:
            out.append(group[0])
            continue
        reads = [r.read_on for r in group if r.read_on is not None]
        before = [d for d in reads if d < as_of]
        results = [r.quiz_passed for r in group if r.quiz_passed is not None]
        deliveries = [d for d in [*(r.delivered_on for r in group), delivered.get(item)] if d]
        out.append(
            EducationRecord(
                item_id=item,
                read_on=max(before or reads) if reads else None,
                quiz_passed=any(results) if results else None,
                delivered_on=max(deliveries) if deliveries else None,
            )
        )
    return tuple(out)


def _kept_reports(
    reports: tuple[WeeklyReport, ...], as_of: date, window_days: int, per_answer: int
) -> tuple[WeeklyReport, ...]:
    earlier = [r for r in reports if r.reported_on < as_of]
    since = as_of - timedelta(days=window_days)
    keep = {i for i, r in enumerate(earlier) if r.reported_on >= since}
    if earlier:
        keep.add(len(earlier) - 1)
    for name in ANSWER_FIELDS:
        holding = [i for i, r in enumerate(earlier) if getattr(r, name) is not None]
        keep.update(holding[-per_answer:])
    later = [r for r in reports if r.reported_on >= as_of]
    return tuple(r for i, r in enumerate(earlier) if i in keep) + tuple(later)


def reports_kept_per_answer(rules: Rules | None = None) -> int:
    """How many of the newest reports holding an answer are kept: ``weekly_values_kept``,
    at least the pain series of the similarity measure and the two of a "previous" value."""
    rules = rules or load_rules()
    pain_points = load_similarity().attribute("pain_series").length or 0
    return max(rules.history.weekly_values_kept, pain_points, 2)


def kept_plan_ids(
    plans: tuple[PreviousPlan, ...], as_of: date, rules: Rules | None = None
) -> set[str]:
    """The ids of the earlier plans :func:`bounded_snapshot` keeps (``plans`` in snapshot
    order). The server reads the Goals of these plans only."""
    rules = rules or load_rules()
    ordered = tuple(sorted(plans, key=lambda p: (p.week_start, p.plan_id)))
    return _kept_plans(ordered, as_of, rules.history.plan_weeks)


def bounded_snapshot(
    snapshot: PatientSnapshot, as_of: date, rules: Rules | None = None
) -> PatientSnapshot:
    """``snapshot`` without the history no rule reads when planning the week of ``as_of``."""
    rules = rules or load_rules()
    history = rules.history
    kept_ids = _kept_plans(snapshot.previous_plans, as_of, history.plan_weeks)
    plans = tuple(p for p in snapshot.previous_plans if p.plan_id in kept_ids)
    dropped = [p for p in snapshot.previous_plans if p.plan_id not in kept_ids]
    reports = _kept_reports(
        snapshot.weekly_reports,
        as_of,
        rules.safety.new_data_window_days,
        reports_kept_per_answer(rules),
    )
    education = _folded_education(snapshot.education, dropped, as_of)
    reviews = (max(snapshot.safety_reviews),) if snapshot.safety_reviews else ()
    if (
        not dropped
        and reports == snapshot.weekly_reports
        and education == snapshot.education
        and reviews == snapshot.safety_reviews
    ):
        return snapshot
    return replace(
        snapshot,
        previous_plans=plans,
        weekly_reports=reports,
        education=education,
        safety_reviews=reviews,
    )
