"""The weekly check-in schedule (mappings/data/weekly_schedule.json) at its boundaries."""

import pytest

from mappings import due_groups

EVERY_WEEK = ["weekly-red-flags", "weekly-pain"]
CALM = {
    "pseq-total": 40,
    "pss10-total": 10,
    "phq2-total": 0,
    "wai-current": 8,
    "fear-avoidance-item": 0,
}


def test_week_one_asks_safety_and_pain_only_when_all_is_well():
    assert due_groups(1, CALM, 1.0) == EVERY_WEEK


def test_week_eight_with_everything_due():
    worried = {
        "pseq-total": 24,
        "pss10-total": 14,
        "phq2-total": 2,
        "wai-current": 5,
        "fear-avoidance-item": 2,
    }
    assert due_groups(8, worried, 0.4) == [
        "weekly-red-flags",
        "weekly-pain",
        "weekly-interference",
        "weekly-sick-leave",
        "weekly-fear",
        "weekly-pseq2",
        "weekly-pss4",
        "weekly-phq2",
        "weekly-wai",
        "weekly-sleep",
        "weekly-barriers",
    ]


@pytest.mark.parametrize(
    "week,baseline_change,group,due",
    [
        (2, {"pseq-total": 24}, "weekly-pseq2", True),
        (2, {"pseq-total": 25}, "weekly-pseq2", False),
        (3, {"pseq-total": 10}, "weekly-pseq2", False),
        (8, {"pss10-total": 14}, "weekly-pss4", True),
        (8, {"pss10-total": 13}, "weekly-pss4", False),
        (4, {"phq2-total": 2}, "weekly-phq2", True),
        (4, {"phq2-total": 1}, "weekly-phq2", False),
        (8, {"wai-current": 5}, "weekly-wai", True),
        (8, {"wai-current": 6}, "weekly-wai", False),
        (4, {"fear-avoidance-item": 2}, "weekly-fear", True),
        (4, {"fear-avoidance-item": 1}, "weekly-fear", False),
    ],
)
def test_baseline_thresholds(week, baseline_change, group, due):
    assert (group in due_groups(week, {**CALM, **baseline_change}, 1.0)) is due


@pytest.mark.parametrize(
    "fraction,barriers_due,fear_due_in_week_4",
    [(0.74, True, False), (0.75, False, False), (0.49, True, True), (0.5, True, False)],
)
def test_step_goal_attainment_thresholds(fraction, barriers_due, fear_due_in_week_4):
    assert ("weekly-barriers" in due_groups(1, CALM, fraction)) is barriers_due
    assert ("weekly-fear" in due_groups(4, CALM, fraction)) is fear_due_in_week_4


def test_unknown_inputs_mean_the_question_is_asked():
    due = due_groups(8, {}, None)
    assert {
        "weekly-pseq2",
        "weekly-pss4",
        "weekly-phq2",
        "weekly-wai",
        "weekly-barriers",
        "weekly-fear",
    } <= set(due)


def test_week_must_be_positive():
    with pytest.raises(ValueError):
        due_groups(0, CALM, 1.0)
