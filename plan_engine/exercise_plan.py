"""Exercise rules: count from the chosen time, composition by type, levels from feedback.

selfBACK (research/selfback-domain.md section 2): one abdominal, one back-extensor and one
core-stability exercise first, then one of each type not yet in the plan, then more of the
same types. Feedback on last week's exercises moves levels: easy -> up, difficult -> down,
pain or unclear instructions -> same level with a different exercise; at most one step a
week, levels kept within the catalogue's 1-6. In pain-relief mode only pain-relief exercises.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from plan_engine import codes
from plan_engine.catalogue import Catalogue
from plan_engine.config import ExerciseRules
from plan_engine.decision import DiffEntry, ExerciseDecision, Reason
from plan_engine.snapshot import ExerciseLog, PatientSnapshot, PlannedExercise, PreviousPlan


@dataclass(frozen=True, slots=True)
class ExerciseContext:
    mode: str
    mode_reasons: tuple[Reason, ...]
    previous: PreviousPlan | None  # the newest plan
    memory: PreviousPlan | None  # the newest plan in standard mode (levels to resume)
    hold_reasons: tuple[Reason, ...]  # non-empty: no level may rise this week
    type_votes: dict[str, float]
    exercise_votes: dict[str, float]
    case_reasons: dict[str, tuple[Reason, ...]]  # exercise id -> reasons from similar cases
    graded_return: Reason | None = None  # first week back from pain-relief mode
    graded_return_drop: int = 1  # levels below the levels last used (pain_relief_mode)


@dataclass(frozen=True, slots=True)
class ExercisePlan:
    exercises: tuple[ExerciseDecision, ...]
    dropped: tuple[DiffEntry, ...]
    count_reason: Reason


@dataclass(frozen=True, slots=True)
class _Carried:
    """Last week's exercise after feedback: keep it (maybe at a new level) or switch it."""

    exercise_id: str
    type: str
    previous_level: int
    level: int
    switch: bool
    reasons: tuple[Reason, ...]


def _rule(rule_id: str, text: str) -> Reason:
    return Reason("rule", rule_id, 1.0, text)


def exercise_count(minutes: int, rules: ExerciseRules) -> tuple[int, Reason]:
    """3 exercises up to 15 minutes, otherwise minutes / 5 (selfBACK descendant)."""
    minutes = max(rules.time_budget_min_minutes, min(rules.time_budget_max_minutes, minutes))
    if minutes <= rules.minimum_count_up_to_minutes:
        count = rules.minimum_count
        text = (
            f"{minutes} min chosen (at most {rules.minimum_count_up_to_minutes}): "
            f"{count} exercises."
        )
    else:
        count = minutes // rules.minutes_per_exercise
        text = f"{minutes} min chosen at {rules.minutes_per_exercise} min each: {count} exercises."
    return count, _rule("EX-COUNT", text)


def patient_contraindications(snapshot: PatientSnapshot, rules: ExerciseRules) -> frozenset[str]:
    tags: set[str] = set()
    for condition, condition_tags in rules.comorbidity_contraindications:
        if condition in snapshot.baseline.comorbidities:
            tags |= condition_tags
    return frozenset(tags)


def _logs_for(
    logs: tuple[ExerciseLog, ...], exercise_id: str, since: date, as_of: date
) -> tuple[ExerciseLog, ...]:
    return tuple(log for log in logs if log.exercise_id == exercise_id and since <= log.day < as_of)


def _mastered(logs: tuple[ExerciseLog, ...], rules: ExerciseRules) -> bool:
    full_days = {
        log.day
        for log in logs
        if not log.skipped
        and log.reps_done
        and all(r >= log.reps_prescribed * rules.mastery_rep_fraction for r in log.reps_done)
    }
    return len(full_days) >= rules.mastery_sessions


def _decide_level(
    planned: PlannedExercise,
    exercise_type: str,
    logs: tuple[ExerciseLog, ...],
    context: ExerciseContext,
    levels: tuple[int, ...],
    rules: ExerciseRules,
) -> _Carried:
    feedback = {log.feedback for log in logs if log.feedback is not None}
    level = planned.level
    lowest = max(rules.level_min, min(levels))
    highest = min(rules.level_max, max(levels))
    step = rules.max_level_step_per_week

    def keep(new_level: int, *reasons: Reason) -> _Carried:
        return _Carried(planned.exercise_id, exercise_type, level, new_level, False, reasons)

    if codes.FEEDBACK_PAIN in feedback:
        return _Carried(
            planned.exercise_id,
            exercise_type,
            level,
            level,
            True,
            (_rule("EX-PAIN-SWITCH", "Pain reported: same level, a different exercise."),),
        )
    ratings = [log.rating for log in logs if log.rating is not None and not log.skipped]
    if codes.RATING_PAINFUL in ratings:
        # A completed session rated painful: a different exercise of the same type, one
        # level lower (the same level at the floor). Pain never raises a level.
        lower = max(lowest, level - step)
        return _Carried(
            planned.exercise_id,
            exercise_type,
            level,
            lower,
            True,
            (
                _rule(
                    "EX-RATED-PAINFUL",
                    f"Rated painful: a different exercise at level {lower}"
                    + (" (already the lowest level)." if lower == level else ", one level down."),
                ),
            ),
        )
    if codes.FEEDBACK_UNCLEAR in feedback:
        return _Carried(
            planned.exercise_id,
            exercise_type,
            level,
            level,
            True,
            (
                _rule(
                    "EX-UNCLEAR-SWITCH",
                    "Instructions reported unclear: same level, a different exercise.",
                ),
            ),
        )
    if codes.FEEDBACK_DIFFICULT in feedback:
        if level <= lowest:
            return keep(level, _rule("EX-LEVEL-FLOOR", "Reported difficult, already at level 1."))
        return keep(
            max(lowest, level - step),
            _rule("EX-DIFFICULT-DOWN", "Reported difficult: one level down."),
        )
    if codes.RATING_HARD in ratings:
        return keep(
            level,
            _rule(
                "EX-RATED-HARD-HOLD",
                f"Rated hard in {ratings.count(codes.RATING_HARD)} session(s): same level "
                "until it feels manageable.",
            ),
        )
    easy_ratings = ratings.count(codes.RATING_EASY)
    rated_easy = easy_ratings >= rules.feedback_easy_sessions_for_rise
    wants_up = codes.FEEDBACK_EASY in feedback or rated_easy
    mastered = not wants_up and _mastered(logs, rules)
    if not (wants_up or mastered):
        if easy_ratings:
            return keep(
                level,
                _rule(
                    "EX-RATED-EASY-ONCE",
                    f"Rated easy in {easy_ratings} session(s) (a rise needs "
                    f"{rules.feedback_easy_sessions_for_rise}, or all reps done in "
                    f"{rules.mastery_sessions}): same level.",
                ),
            )
        return keep(level, _rule("EX-LEVEL-HOLD", "No feedback asking for a change: same level."))
    if context.hold_reasons:
        return keep(
            level,
            _rule("EX-LEVEL-HOLD-SAFETY", "Would move up, but the plan may not get harder."),
            *context.hold_reasons,
        )
    if level >= highest:
        return keep(level, _rule("EX-LEVEL-CEILING", f"Already at the top level ({highest})."))
    if codes.FEEDBACK_EASY in feedback:
        return keep(min(highest, level + step), _rule("EX-EASY-UP", "Reported easy: one level up."))
    if rated_easy:
        return keep(
            min(highest, level + step),
            _rule(
                "EX-RATED-EASY-UP",
                f"Rated easy in {easy_ratings} sessions (at least "
                f"{rules.feedback_easy_sessions_for_rise}): one level up.",
            ),
        )
    return keep(
        min(highest, level + step),
        _rule(
            "EX-MASTERY-UP",
            f"All prescribed reps done in at least {rules.mastery_sessions} sessions: one level up.",
        ),
    )


def _graded_level(
    planned: PlannedExercise,
    levels: tuple[int, ...],
    context: ExerciseContext,
    rules: ExerciseRules,
) -> int:
    lowest = max(rules.level_min, min(levels))
    return max(lowest, planned.level - context.graded_return_drop)


def _ranked(candidates: list[str], votes: dict[str, float], rng: random.Random) -> list[str]:
    """Case votes first; the seeded shuffle only breaks ties (variety without randomness)."""
    ordered = sorted(candidates)
    rng.shuffle(ordered)
    return sorted(ordered, key=lambda c: -votes.get(c, 0.0))


def plan_exercises(
    snapshot: PatientSnapshot,
    as_of: date,
    context: ExerciseContext,
    catalogue: Catalogue,
    rules: ExerciseRules,
    rng: random.Random,
) -> ExercisePlan:
    count, count_reason = exercise_count(snapshot.exercise_minutes, rules)
    blocked_tags = patient_contraindications(snapshot, rules)
    excluded = snapshot.overrides.excluded_exercises

    def allowed(exercise_id: str, level: int) -> bool:
        if not catalogue.has_exercise(exercise_id, level):
            return False
        entry = catalogue.exercise(exercise_id, level)
        return (
            exercise_id not in excluded
            and entry.definition_id not in excluded
            and not (entry.contraindications & blocked_tags)
        )

    if context.mode == codes.MODE_PAIN_RELIEF:
        return _pain_relief_plan(count, count_reason, context, catalogue, allowed, rules, rng)

    carried: list[_Carried] = []
    dropped: list[DiffEntry] = []
    memory = context.memory
    if memory is not None:
        resumed = context.previous is not None and context.previous.plan_id != memory.plan_id
        for planned in memory.exercises:
            if not catalogue.has_exercise(planned.exercise_id, planned.level):
                continue
            exercise_type = catalogue.exercise_type(planned.exercise_id)
            if resumed and context.graded_return is not None:
                lowered = _graded_level(
                    planned, catalogue.levels(planned.exercise_id), context, rules
                )
                item = _Carried(
                    planned.exercise_id,
                    exercise_type,
                    planned.level,
                    lowered,
                    False,
                    (
                        context.graded_return,
                        _rule(
                            "EX-GRADED-RETURN",
                            f"Back from pain-relief mode: resumes at level {lowered} "
                            f"(last used {planned.level}) and builds up again.",
                        ),
                    ),
                )
            elif resumed:
                item = _Carried(
                    planned.exercise_id,
                    exercise_type,
                    planned.level,
                    planned.level,
                    False,
                    (
                        _rule(
                            "EX-RESUME",
                            "Back from a pause: exercises resume at the levels last used.",
                        ),
                    ),
                )
            else:
                logs = _logs_for(
                    snapshot.exercise_logs, planned.exercise_id, memory.week_start, as_of
                )
                item = _decide_level(
                    planned,
                    exercise_type,
                    logs,
                    context,
                    catalogue.levels(planned.exercise_id),
                    rules,
                )
            if not allowed(item.exercise_id, item.level):
                reason = (
                    Reason("override", "OVERRIDE-EXCLUDED", 1.0, "Excluded by the clinician.")
                    if item.exercise_id in excluded
                    or catalogue.exercise(item.exercise_id, item.level).definition_id in excluded
                    else _rule(
                        "EX-CONTRAINDICATED",
                        "Not suitable with the patient's other conditions: replaced.",
                    )
                )
                if (
                    not item.switch
                    and item.level > item.previous_level
                    and allowed(item.exercise_id, item.previous_level)
                ):
                    item = _Carried(
                        item.exercise_id,
                        item.type,
                        item.previous_level,
                        item.previous_level,
                        False,
                        (reason,),
                    )
                else:
                    item = _Carried(
                        item.exercise_id,
                        item.type,
                        item.previous_level,
                        item.level,
                        True,
                        (*item.reasons, reason),
                    )
            carried.append(item)

    banned = {c.exercise_id for c in carried if c.switch}
    type_levels: dict[str, int] = {}
    for c in carried:
        type_levels[c.type] = max(type_levels.get(c.type, 0), c.previous_level)

    others = [t for t in codes.EXERCISE_TYPES if t not in rules.first_types]
    slot_types = list(rules.first_types) + _ranked(others, context.type_votes, rng)
    chosen: list[ExerciseDecision] = []
    in_plan: set[str] = set()
    pending = list(carried)
    composition = {
        0: _rule(
            "EX-COMP-FIRST",
            "One abdominal, one back-extensor and one core-stability exercise come first "
            "(selfBACK default programme).",
        ),
        1: _rule("EX-COMP-NEW-TYPE", "Then one exercise of each type not yet in the plan."),
    }
    more = _rule("EX-COMP-MORE", "Then more exercises of the same types.")
    progress = True
    while len(chosen) < count and progress:
        progress = False
        for slot_index, exercise_type in enumerate(slot_types):
            if len(chosen) >= count:
                break
            first_pass = not any(c.type == exercise_type for c in chosen)
            slot_reason = (
                composition[0 if slot_index < len(rules.first_types) else 1] if first_pass else more
            )
            decision = _fill_slot(
                exercise_type,
                slot_reason,
                pending,
                banned,
                in_plan,
                type_levels,
                context,
                catalogue,
                allowed,
                rules,
                rng,
            )
            if decision is not None:
                chosen.append(decision)
                in_plan.add(decision.exercise_id)
                progress = True
    for c in pending:
        dropped.append(
            DiffEntry(
                "exercise",
                "removed",
                f"{c.exercise_id}@{c.previous_level}",
                None,
                (*c.reasons, count_reason) if not c.switch else c.reasons,
            )
        )
    if len(chosen) < count:
        count_reason = _rule(
            "EX-COUNT-LIMITED",
            f"{count_reason.text} Only {len(chosen)} suitable exercises are available.",
        )
    return ExercisePlan(tuple(chosen), tuple(dropped), count_reason)


def _fill_slot(
    exercise_type: str,
    slot_reason: Reason,
    pending: list[_Carried],
    banned: set[str],
    in_plan: set[str],
    type_levels: dict[str, int],
    context: ExerciseContext,
    catalogue: Catalogue,
    allowed: Callable[[str, int], bool],
    rules: ExerciseRules,
    rng: random.Random,
) -> ExerciseDecision | None:
    # Exercises kept from last week fill their type's slots before replacements are sought,
    # and a replacement is never an exercise that is itself still carried at its own level.
    of_type = sorted((i for i in pending if i.type == exercise_type), key=lambda i: i.switch)
    reserved = {i.exercise_id for i in pending if not i.switch}
    for item in of_type:
        pending.remove(item)
        if not item.switch:
            return _decision(
                item.exercise_id,
                item.type,
                item.level,
                item.previous_level,
                (slot_reason, _rule("EX-CARRIED", "Continued from last week."), *item.reasons),
                catalogue,
            )
        replacement = _pick(
            exercise_type, item.level, banned | reserved, in_plan, context, catalogue, allowed, rng
        )
        if replacement is not None:
            return _decision(
                replacement,
                exercise_type,
                item.level,
                None,
                (
                    slot_reason,
                    _rule("EX-REPLACES", f"Replaces {item.exercise_id} at the same level."),
                    *item.reasons,
                    *context.case_reasons.get(replacement, ()),
                ),
                catalogue,
            )
        pending.append(item)  # nothing can replace it; it is reported as removed
        return None
    start = type_levels.get(exercise_type, rules.start_level)
    new = _pick(exercise_type, start, banned, in_plan, context, catalogue, allowed, rng)
    if new is None:
        start = rules.start_level
        new = _pick(exercise_type, start, banned, in_plan, context, catalogue, allowed, rng)
    if new is None:
        return None
    level_reason = (
        _rule("EX-LEVEL-START", f"New to the plan: starts at level {start}.")
        if exercise_type not in type_levels
        else _rule("EX-LEVEL-TYPE", f"Starts at level {start}, the level of this exercise type.")
    )
    selection = context.case_reasons.get(new) or (
        _rule("EX-SELECT-VARIETY", "Chosen for variety (fixed per patient and week)."),
    )
    return _decision(
        new, exercise_type, start, None, (slot_reason, level_reason, *selection), catalogue
    )


def _pick(
    exercise_type: str,
    level: int,
    banned: set[str],
    in_plan: set[str],
    context: ExerciseContext,
    catalogue: Catalogue,
    allowed: Callable[[str, int], bool],
    rng: random.Random,
) -> str | None:
    candidates = [
        e
        for e in catalogue.exercise_ids(exercise_type)
        if e not in banned and e not in in_plan and allowed(e, level)
    ]
    ranked = _ranked(candidates, context.exercise_votes, rng)
    return ranked[0] if ranked else None


def _decision(
    exercise_id: str,
    exercise_type: str,
    level: int,
    previous_level: int | None,
    reasons: tuple[Reason, ...],
    catalogue: Catalogue,
) -> ExerciseDecision:
    entry = catalogue.exercise(exercise_id, level)
    return ExerciseDecision(
        exercise_id=exercise_id,
        type=exercise_type,
        level=level,
        previous_level=previous_level,
        definition_id=entry.definition_id,
        canonical=entry.canonical,
        reasons=reasons,
    )


def _pain_relief_plan(
    count: int,
    count_reason: Reason,
    context: ExerciseContext,
    catalogue: Catalogue,
    allowed: Callable[[str, int], bool],
    rules: ExerciseRules,
    rng: random.Random,
) -> ExercisePlan:
    level = rules.start_level
    candidates = [
        e for e in catalogue.exercise_ids(codes.EXERCISE_TYPE_PAIN_RELIEF) if allowed(e, level)
    ]
    previous_ids = (
        {p.exercise_id for p in context.previous.exercises} if context.previous else set()
    )
    ranked = _ranked(candidates, context.exercise_votes, rng)
    ranked.sort(key=lambda e: e not in previous_ids)  # keep familiar ones first (stable)
    chosen = ranked[:count]
    if len(chosen) < count:
        count_reason = _rule(
            "EX-COUNT-LIMITED",
            f"{count_reason.text} Only {len(chosen)} pain-relief exercises are suitable.",
        )
    decisions = tuple(
        _decision(
            e,
            codes.EXERCISE_TYPE_PAIN_RELIEF,
            level,
            level if e in previous_ids else None,
            (
                *context.mode_reasons,
                *(
                    context.case_reasons.get(e)
                    or (
                        _rule(
                            "EX-SELECT-VARIETY", "Chosen for variety (fixed per patient and week)."
                        ),
                    )
                ),
            ),
            catalogue,
        )
        for e in chosen
    )
    return ExercisePlan(decisions, (), count_reason)
