"""The structured difference between last week's plan and the new one, with reasons."""

from __future__ import annotations

from plan_engine.decision import (
    DiffEntry,
    EducationDecision,
    ExerciseDecision,
    Reason,
    StepGoalDecision,
)
from plan_engine.snapshot import PreviousPlan


def plan_diff(
    previous: PreviousPlan | None,
    mode: str,
    mode_reasons: tuple[Reason, ...],
    goal: StepGoalDecision | None,
    exercises: tuple[ExerciseDecision, ...],
    education: tuple[EducationDecision, ...],
    dropped: tuple[DiffEntry, ...],
) -> tuple[DiffEntry, ...]:
    entries: list[DiffEntry] = []
    before_mode = previous.mode if previous else None
    if before_mode != mode:
        entries.append(DiffEntry("mode", "changed", before_mode, mode, mode_reasons))
    if goal is not None:
        old = previous.step_goal if previous else None
        change = (
            "set"
            if old is None
            else "increased"
            if goal.steps_per_day > old
            else "decreased"
            if goal.steps_per_day < old
            else "held"
        )
        entries.append(
            DiffEntry(
                "goal",
                change,
                None if old is None else str(old),
                str(goal.steps_per_day),
                goal.reasons,
            )
        )
    old_levels = {p.exercise_id: p.level for p in previous.exercises} if previous else {}
    new_ids = {e.exercise_id for e in exercises}
    for e in exercises:
        before = old_levels.get(e.exercise_id)
        after = f"{e.exercise_id}@{e.level}"
        if before is None:
            entries.append(DiffEntry("exercise", "added", None, after, e.reasons))
        elif e.level != before:
            change = "level-up" if e.level > before else "level-down"
            entries.append(
                DiffEntry("exercise", change, f"{e.exercise_id}@{before}", after, e.reasons)
            )
    reported = {d.before for d in dropped}
    entries += dropped
    for exercise_id, level in sorted(old_levels.items()):
        before_text = f"{exercise_id}@{level}"
        if exercise_id in new_ids or before_text in reported:
            continue
        replaced_by = [
            e.reasons
            for e in exercises
            if any(r.ref == "EX-REPLACES" and exercise_id in r.text for r in e.reasons)
        ]
        reasons = replaced_by[0] if replaced_by else mode_reasons
        entries.append(DiffEntry("exercise", "removed", before_text, None, reasons))
    old_education = set(previous.education) if previous else set()
    for item in education:
        change = "repeated-as-quiz" if item.as_quiz else "added"
        if item.item_id in old_education and not item.as_quiz:
            change = "repeated"
        entries.append(DiffEntry("education", change, None, item.item_id, item.reasons))
    return tuple(entries)
