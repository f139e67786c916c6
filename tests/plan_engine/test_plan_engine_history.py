"""Engine findings 4-6 (docs/SIMULATION.md): one finding per source item across weeks, quiz
rotation once the catalogue is used up, and a bounded window of history."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pe_personas import AS_OF, START, baseline, plan, standard
from pe_strategies import shuffled, snapshots

from plan_engine import (
    EducationRecord,
    PatientSnapshot,
    PlanDecision,
    PreviousPlan,
    RedFlagAnswers,
    WeeklyReport,
    bounded_snapshot,
    decide_plan,
    load_catalogue,
)
from plan_engine.config import load_rules
from plan_engine.history import ANSWER_FIELDS
from plan_engine.simulation import CohortSpec, PatientRun
from plan_engine.simulation.assembly import full_snapshot, previous_plan_of

CATALOGUE = load_catalogue()
RULES = load_rules()
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NEXT = AS_OF + timedelta(days=7)
QUIZZES = tuple(e.definition_id for e in CATALOGUE.education if e.quiz)
ALL_ITEMS = tuple(e.definition_id for e in CATALOGUE.education)


def saddle(day: date, source: str | None = "QuestionnaireResponse/screen-1") -> RedFlagAnswers:
    return RedFlagAnswers(answered_on=day, saddle_numbness=True, source=source)


def two_weeks(
    first: tuple[RedFlagAnswers, ...], second: tuple[RedFlagAnswers, ...], **changes: object
) -> tuple[PlanDecision, PlanDecision]:
    """The plan of AS_OF from ``first``, fed back as last week's plan, then the plan of the
    next week from ``second`` (a clinician reviewed any stop on AS_OF + 1)."""
    week1 = decide_plan(standard(red_flags=first, **changes), AS_OF)
    snapshot = standard(red_flags=second, **changes)
    week2 = decide_plan(
        replace(
            snapshot,
            previous_plans=(*snapshot.previous_plans, previous_plan_of(week1)),
            safety_reviews=(AS_OF + timedelta(days=1),),
        ),
        NEXT,
    )
    return week1, week2


def stops(decision: PlanDecision) -> list[str]:
    return [f.id for f in decision.findings if f.severity in ("emergency", "urgent")]


def flags(decision: PlanDecision) -> int:
    return sum(r["resourceType"] == "Flag" for r in decision.resources)


# (when answered, seen by the first plan, stop-and-refers in week 1 / week 2)
FIRST_DAY_CASES = [
    ("the day before the first plan", AS_OF - timedelta(days=1), True, (1, 0)),
    ("the first plan's first day, before it was made", AS_OF, True, (1, 0)),  # finding 4
    ("the first plan's first day, after it was made", AS_OF, False, (0, 1)),
    ("mid-week", AS_OF + timedelta(days=3), False, (0, 1)),
    ("the second plan's first day", NEXT, False, (0, 1)),
]


@pytest.mark.parametrize(
    ("when", "day", "seen_first", "expected"), FIRST_DAY_CASES, ids=[c[0] for c in FIRST_DAY_CASES]
)
def test_one_stop_and_refer_per_red_flag_answer(
    when: str, day: date, seen_first: bool, expected: tuple[int, int]
) -> None:
    answer = saddle(day)
    week1, week2 = two_weeks((answer,) if seen_first else (), (answer,))
    assert (len(stops(week1)), len(stops(week2))) == expected, when
    assert flags(week1) + flags(week2) == 1
    stat = [m for d in (week1, week2) for m in d.clinician_messages if m.priority == "stat"]
    assert len(stat) == 1


def test_a_new_answer_next_week_still_stops_the_plan() -> None:
    old = saddle(AS_OF)
    new = saddle(AS_OF + timedelta(days=4), "QuestionnaireResponse/screen-2")
    week1, week2 = two_weeks((old,), (old, new))
    assert stops(week1) == stops(week2) == ["RF-SADDLE-NUMBNESS"]
    assert week2.status == "on-hold"
    (finding,) = week2.findings
    assert finding.evidence == ("QuestionnaireResponse/screen-2",)  # not the old answer again


def test_a_new_answer_on_the_same_first_day_still_stops_the_plan() -> None:
    """Same day, another response: a new answer, so a new stop-and-refer."""
    week1, week2 = two_weeks(
        (saddle(AS_OF),), (saddle(AS_OF), saddle(AS_OF, "QuestionnaireResponse/screen-2"))
    )
    assert stops(week1) == stops(week2) == ["RF-SADDLE-NUMBNESS"]


def test_another_red_flag_in_the_same_response_is_still_raised() -> None:
    """Deduplication is per finding and source: a sign the first plan did not see in that
    response (it was amended after the plan was made) still stops the next plan."""
    first = saddle(AS_OF)
    amended = replace(first, bladder_bowel_dysfunction=True)
    week1, week2 = two_weeks((first,), (amended,))
    assert stops(week1) == ["RF-SADDLE-NUMBNESS"]
    assert stops(week2) == ["RF-BLADDER-BOWEL"]


def test_an_answer_without_a_source_cannot_be_matched_and_is_raised_again() -> None:
    """The conservative side: nothing says it is the same answer."""
    week1, week2 = two_weeks((saddle(AS_OF, None),), (saddle(AS_OF, None),))
    assert stops(week1) == stops(week2) == ["RF-SADDLE-NUMBNESS"]


@pytest.mark.parametrize("source", ["QuestionnaireResponse/baseline-1", None])
def test_baseline_on_the_first_day_gives_one_startback_review(source: str | None) -> None:
    """REV-STARTBACK-HIGH and the mood band from a baseline done on the programme's first
    day: once, when the baseline has a source to match; without one, conservatively twice."""
    first = baseline(
        completed_on=AS_OF, start_back_assessed_on=AS_OF, start_back_risk="high", phq8=16
    )
    changes = {"baseline": replace(first, source=source), "weekly_reports": ()}
    week1, week2 = two_weeks((), (), **changes)
    ids1, ids2 = {f.id for f in week1.findings}, {f.id for f in week2.findings}
    assert {"REV-STARTBACK-HIGH", "MOOD-PHQ8-MODERATELY-SEVERE"} <= ids1
    repeated = {"REV-STARTBACK-HIGH", "MOOD-PHQ8-MODERATELY-SEVERE"} & ids2
    assert repeated == (set() if source else {"REV-STARTBACK-HIGH", "MOOD-PHQ8-MODERATELY-SEVERE"})


@SETTINGS
@given(
    st.integers(-7, 13),  # the day of the answer, relative to the first plan's first day
    st.booleans(),  # the first plan saw it (when it was dated by then)
)
def test_every_answer_in_a_window_stops_exactly_once(offset: int, seen: bool) -> None:
    day = AS_OF + timedelta(days=offset)
    answer = saddle(day)
    seen_first = seen and offset <= 0
    week1, week2 = two_weeks((answer,) if seen_first else (), (answer,) if offset <= 7 else ())
    in_a_window = offset <= 7 and (seen_first or offset >= 0)
    assert len(stops(week1)) + len(stops(week2)) == (1 if in_a_window else 0)


# --- finding 5: education after the catalogue is used up ------------------------------------


def exhausted(week: int, passed: frozenset[str] = frozenset()) -> PatientSnapshot:
    """Every message delivered in weeks 1-6 (seven a week), quizzes ``passed`` passed."""
    start = AS_OF - timedelta(weeks=week - 1)
    plans = tuple(
        plan(
            f"week-{n + 1}",
            start + timedelta(weeks=n),
            5000,
            (("ab-dead-bug", 2), ("back-hip-hinge", 2), ("core-bird-dog", 2)),
            education=ALL_ITEMS[7 * n : 7 * n + 7],
        )
        for n in range(6)
    )
    records = tuple(EducationRecord(q, start, True) for q in sorted(passed))
    return standard(programme_start=start, previous_plans=plans, education=records)


def run_weeks(snapshot: PatientSnapshot, weeks: int) -> list[tuple[str, ...]]:
    served = []
    for n in range(weeks):
        as_of = AS_OF + timedelta(weeks=n)
        decision = decide_plan(snapshot, as_of)
        served.append(tuple(e.item_id for e in decision.education))
        snapshot = replace(
            snapshot, previous_plans=(*snapshot.previous_plans, previous_plan_of(decision))
        )
    return served


def test_unpassed_quizzes_rotate_instead_of_repeating_in_catalogue_order() -> None:
    weeks = run_weeks(exhausted(7), 6)
    assert all(len(set(w)) == 7 and set(w) <= set(QUIZZES) for w in weeks)
    for before, after in zip(weeks, weeks[1:], strict=False):
        assert set(before) != set(after)
    # 14 unpassed quizzes: two weeks serve all of them, least recently served first.
    assert set(weeks[0]) | set(weeks[1]) == set(QUIZZES)


def test_passed_quizzes_come_back_only_when_no_unpassed_one_is_left() -> None:
    passed = frozenset(QUIZZES[:10])
    weeks = run_weeks(exhausted(7, passed), 3)
    for week in weeks:
        unpassed = [q for q in week if q not in passed]
        assert len(unpassed) == 4  # all four unpassed every week, then passed ones rotate
    assert set(weeks[0]) != set(weeks[1])


@SETTINGS
@given(st.frozensets(st.sampled_from(QUIZZES), max_size=len(QUIZZES)), st.integers(1, 3))
def test_the_same_seven_quizzes_never_repeat_while_others_are_unpassed(
    passed: frozenset[str], weeks: int
) -> None:
    served = run_weeks(exhausted(7, passed), weeks + 1)
    for before, after in zip(served, served[1:], strict=False):
        waiting = set(QUIZZES) - passed - set(before)
        if waiting:
            assert set(before) != set(after)
            assert waiting & set(after)  # a waiting unpassed quiz comes back first


@SETTINGS
@given(snapshots(), st.lists(st.integers(0, 50), min_size=1, max_size=20))
def test_rotation_is_deterministic_and_input_order_independent(
    snapshot: PatientSnapshot, order: list[int]
) -> None:
    base = exhausted(7)
    mixed = replace(snapshot, previous_plans=base.previous_plans, programme_start=START)
    a = decide_plan(mixed, AS_OF)
    b = decide_plan(shuffled(mixed, order), AS_OF)
    assert a.to_json() == b.to_json()
    assert [e.item_id for e in a.education] == [e.item_id for e in b.education]


# --- finding 6: the window of history the engine plans from ---------------------------------


def long_run(weeks: int, index: int = 3) -> tuple[PatientSnapshot, date]:
    """The whole stored history of a simulated patient after ``weeks`` weekly plans."""
    run = PatientRun(CohortSpec(patients=index + 1, weeks=min(52, weeks), seed=7), index)
    for _ in range(weeks):
        snapshot = run.snapshot()
        run.record(snapshot, decide_plan(snapshot, run.as_of), decide_plan)
    return full_snapshot(run.patient, run.stored, run.spec.start, run.as_of), run.as_of


def window_limits() -> dict[str, int]:
    history = RULES.history
    per_answer = max(history.weekly_values_kept, 4)
    return {
        # the last plan_weeks weeks, the newest standard plan and the first plan of a hold
        "previous_plans": history.plan_weeks + 2,
        "weekly_reports": per_answer * len(ANSWER_FIELDS) + 2,
        "education": len(CATALOGUE.education),
        "safety_reviews": 1,
    }


@pytest.mark.parametrize("weeks", [4, 30])
def test_the_engine_plans_from_at_most_the_window(weeks: int) -> None:
    snapshot, as_of = long_run(weeks)
    bounded = bounded_snapshot(snapshot, as_of)
    for name, limit in window_limits().items():
        assert len(getattr(bounded, name)) <= limit, name
    assert bounded_snapshot(bounded, as_of) == bounded  # idempotent


def test_long_history_plans_from_the_same_window_as_its_last_weeks() -> None:
    """The decision is the same with the whole history or only its window, byte for byte,
    and the window is smaller than the history."""
    full, as_of = long_run(30)
    bounded = bounded_snapshot(full, as_of)
    assert decide_plan(full, as_of).to_json() == decide_plan(bounded, as_of).to_json()
    assert len(bounded.previous_plans) < len(full.previous_plans) == 30
    assert len(bounded.weekly_reports) < len(full.weekly_reports)


def test_bounding_keeps_what_the_rules_read() -> None:
    """Old plans fold into one education record per item; the newest standard plan (resumed
    levels) and the first plan of an unreviewed hold stay; old reports with the only
    answer of a kind stay."""
    old = AS_OF - timedelta(weeks=20)
    plans: list[PreviousPlan] = [
        plan("std", old, 5000, (("ab-dead-bug", 3),), education=("edu-facts-common",))
    ]
    plans += [
        plan(f"hold-{n}", old + timedelta(weeks=n), 5000, mode="safety-hold") for n in range(1, 20)
    ]
    reports = tuple(
        WeeklyReport(AS_OF - timedelta(weeks=n, days=1), pain_average=5) for n in range(20)
    ) + (WeeklyReport(AS_OF - timedelta(weeks=19, days=2), wai=3),)
    snapshot = standard(
        previous_plans=tuple(plans),
        weekly_reports=reports,
        safety_reviews=(old - timedelta(days=3), old - timedelta(days=10)),
    )
    bounded = bounded_snapshot(snapshot, AS_OF)
    kept = [p.plan_id for p in bounded.previous_plans]
    assert kept[:2] == ["std", "hold-1"] and len(kept) == 2 + RULES.history.plan_weeks
    assert bounded.safety_reviews == (old - timedelta(days=3),)
    assert bounded.education == ()  # the left-out holds delivered no education
    assert any(r.wai == 3 for r in bounded.weekly_reports)
    assert len([r for r in bounded.weekly_reports if r.pain_average is not None]) == 4
    decision = decide_plan(snapshot, AS_OF)
    assert decision.mode == "safety-hold"  # still awaiting a review since the hold began
    assert decision.to_json() == decide_plan(bounded, AS_OF).to_json()


def test_folded_plans_still_count_as_delivered() -> None:
    snapshot = exhausted(30)
    bounded = bounded_snapshot(snapshot, AS_OF)
    assert len(bounded.previous_plans) <= RULES.history.plan_weeks + 2
    folded = {r.item_id for r in bounded.education if r.delivered_on}
    assert folded | {i for p in bounded.previous_plans for i in p.education} == set(ALL_ITEMS)
    assert folded
    chosen = decide_plan(snapshot, AS_OF).education
    assert all(e.as_quiz for e in chosen)  # nothing read comes back as plain reading
