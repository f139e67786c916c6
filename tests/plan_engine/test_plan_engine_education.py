"""Education rules: seven a week, warning signs first, triggers, cases, no plain repeats."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pe_personas import AS_OF, LAST_WEEK, new_starter, plan, report, standard

from plan_engine import EducationRecord, decide_plan, load_catalogue

CATALOGUE = load_catalogue()
ALL_ITEMS = tuple(e.definition_id for e in CATALOGUE.education)


def items(snapshot) -> list[str]:  # type: ignore[no-untyped-def]
    return [i.item_id for i in decide_plan(snapshot, AS_OF).education]


def test_week_one_has_seven_items_and_starts_with_warning_signs() -> None:
    decision = decide_plan(new_starter(), AS_OF)
    assert len(decision.education) == 7
    assert decision.education[0].item_id == "edu-facts-warning-signs"
    assert decision.education[0].day == AS_OF
    assert [i.day for i in decision.education] == [AS_OF + timedelta(days=n) for n in range(7)]


def test_warning_signs_are_not_repeated_once_given() -> None:
    snapshot = standard(
        previous_plans=(plan("week-3", LAST_WEEK, 5000, education=("edu-facts-warning-signs",)),)
    )
    assert "edu-facts-warning-signs" not in items(snapshot)


def test_high_pain_triggers_first_aid_and_relaxation_and_hides_start_exercise() -> None:
    snapshot = standard(weekly_reports=(report(8, 5), report(1, 8)))
    chosen = items(snapshot)
    themes = [CATALOGUE.education_item(i).theme for i in chosen]
    assert {"first-aid", "relaxation", "thoughts-feelings"} <= set(themes)
    assert "edu-self-start-exercise" not in chosen


@pytest.mark.parametrize(
    ("barrier", "theme"),
    [
        ("time", "busy-life"),
        ("support", "social-support"),
        ("weather", "barriers"),
        ("tiredness", "pacing"),
    ],
)
def test_reported_barriers_bring_matching_themes(barrier: str, theme: str) -> None:
    snapshot = standard(weekly_reports=(report(8, 1), report(1, 1, barriers=frozenset({barrier}))))
    decision = decide_plan(snapshot, AS_OF)
    matched = [i for i in decision.education if i.theme == theme]
    assert matched
    assert any(r.ref == f"EDU-BARRIER-{barrier.upper()}" for r in matched[0].reasons)


def test_read_items_return_only_as_quizzes_and_the_week_is_still_full() -> None:
    read = tuple(EducationRecord(i, LAST_WEEK, quiz_passed=False) for i in ALL_ITEMS)
    decision = decide_plan(standard(education=read), AS_OF)
    assert len({i.item_id for i in decision.education}) == 7
    for item in decision.education:
        assert item.as_quiz and CATALOGUE.education_item(item.item_id).quiz


def test_passed_quizzes_come_back_only_when_nothing_else_is_left() -> None:
    passed = tuple(EducationRecord(i, LAST_WEEK, quiz_passed=True) for i in ALL_ITEMS[:-3])
    chosen = items(standard(education=passed))
    assert set(ALL_ITEMS[-3:]) <= set(chosen)
    assert len(set(chosen)) == 7


def test_similar_cases_contribute_themes_with_case_reasons() -> None:
    decision = decide_plan(new_starter(), AS_OF)
    case_items = [i for i in decision.education if any(r.source == "case" for r in i.reasons)]
    assert case_items
    for item in case_items:
        for reason in item.reasons:
            assert reason.ref.startswith(("clin-", "sim-")) and 0 < reason.weight <= 1
