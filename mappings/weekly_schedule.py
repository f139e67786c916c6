"""Which groups of the weekly check-in are due, from the schedule in ``data/weekly_schedule.json``."""

import operator
from collections.abc import Callable, Mapping
from typing import Any

from mappings._packaged import packaged_json

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def weekly_schedule() -> Mapping[str, Any]:
    """The packaged schedule (shared; do not change it)."""
    schedule: Mapping[str, Any] = packaged_json("data", "weekly_schedule.json")
    return schedule


def _clause_holds(
    clause: Mapping[str, Any], baseline: Mapping[str, float], step_goal_fraction: float | None
) -> bool:
    # Unknown input counts as met: better to ask a question than to drop it silently.
    if "baseline" in clause:
        known = baseline.get(clause["baseline"])
        return known is None or _OPS[clause["op"]](known, clause["value"])
    if step_goal_fraction is None:
        return True
    return _OPS[clause["stepGoalFraction"]](step_goal_fraction, clause["value"])


def due_groups(
    week: int, baseline: Mapping[str, float], step_goal_fraction: float | None
) -> list[str]:
    """linkIds of the weekly Questionnaire's groups to show at the end of programme week ``week``.

    ``baseline`` maps score ids (``pseq-total``, ``pss10-total``, ``phq2-total``, ``wai-current``,
    ``fear-avoidance-item``) to baseline values; ``step_goal_fraction`` is last week's mean daily
    steps divided by the daily goal (None when unknown).
    """
    if week < 1:
        raise ValueError("week counts completed programme weeks and starts at 1")
    due: list[str] = []
    for entry in weekly_schedule()["groups"]:
        if week % entry["everyNWeeks"] != 0:
            continue
        condition = entry["condition"]
        if condition is None or any(
            _clause_holds(c, baseline, step_goal_fraction) for c in condition["any"]
        ):
            due.append(entry["group"])
    return due


def due_questionnaire(questionnaire: Mapping[str, Any], due: list[str]) -> dict[str, Any]:
    """The weekly Questionnaire with only the top-level groups in ``due`` (from
    :func:`due_groups`), in its own order. Its ``url`` and ``version`` stay, so a response
    to it names the weekly Questionnaire itself; ``id`` is dropped (a view, not the stored
    resource)."""
    wanted = set(due)
    view = {k: v for k, v in questionnaire.items() if k not in ("id", "meta", "text", "item")}
    view["item"] = [
        dict(item) for item in questionnaire.get("item", []) if item["linkId"] in wanted
    ]
    return view
