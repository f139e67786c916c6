"""Education rules: seven messages a week, one a day, never repeated except as quizzes.

Priority (research/selfback-domain.md sections 2 and 5): warning-signs information until it
has been given (always in week 1), then items triggered by rules, then themes of similar
successful cases, then themes not yet shown, then the next items in catalogue order, and
finally quizzes of items already read.

Read items return only as quizzes (domain note section 2: "read items return only as
quizzes"; section 5: "no repeats except quizzes"), so a read message never comes back as
plain reading. Once the 42 messages are used up (week 7), the week is quizzes only, and they
rotate (docs/SIMULATION.md, engine finding 5): unpassed quizzes before passed ones, the least
recently served first (ties in catalogue order), and a quiz served in last week's plan rests
for a week instead of coming back through a rule or case theme. The same seven quizzes
therefore never repeat two weeks running while other unpassed quizzes wait.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta

from plan_engine.catalogue import Catalogue, EducationEntry
from plan_engine.config import Condition, EducationRules, EducationTrigger
from plan_engine.decision import EducationDecision, Reason
from plan_engine.features import Features
from plan_engine.retrieval import Neighbour
from plan_engine.snapshot import PatientSnapshot


@dataclass(frozen=True, slots=True)
class _History:
    delivered: frozenset[str]
    passed_quiz: frozenset[str]
    last_served: dict[str, date]  # item -> the newest day it was delivered or read
    last_week: frozenset[str]  # the items of the newest earlier plan


def condition_holds(condition: Condition, features: Features) -> bool:
    name, op, threshold = condition
    value = features.value(name)
    if value is None:
        return False
    if op == ">=":
        return value >= threshold
    if op == "<=":
        return value <= threshold
    if op == "==":
        return value == threshold
    raise ValueError(f"unknown operator {op!r} in education trigger")


def trigger_fires(trigger: EducationTrigger, features: Features) -> bool:
    any_ok = not trigger.any_of or any(condition_holds(c, features) for c in trigger.any_of)
    all_ok = all(condition_holds(c, features) for c in trigger.all_of)
    return any_ok and all_ok and bool(trigger.any_of or trigger.all_of)


def _history(snapshot: PatientSnapshot, week_start: date) -> _History:
    last_served: dict[str, date] = {}

    def served(item: str, day: date | None) -> None:
        if day is not None and (item not in last_served or last_served[item] < day):
            last_served[item] = day

    for plan in snapshot.previous_plans:
        for item in plan.education:
            served(item, plan.week_start)
    for record in snapshot.education:
        served(record.item_id, record.read_on)
        served(record.item_id, record.delivered_on)
    passed = {r.item_id for r in snapshot.education if r.quiz_passed}
    earlier = [p for p in snapshot.previous_plans if p.week_start < week_start]
    last_week = frozenset(earlier[-1].education) if earlier else frozenset()
    return _History(frozenset(last_served), frozenset(passed), last_served, last_week)


def plan_education(
    snapshot: PatientSnapshot,
    features: Features,
    week_start: date,
    neighbours: tuple[Neighbour, ...],
    catalogue: Catalogue,
    rules: EducationRules,
) -> tuple[EducationDecision, ...]:
    history = _history(snapshot, week_start)
    fired = [t for t in rules.triggers if trigger_fires(t, features)]
    suppressed = frozenset(tag for t in fired for tag in t.suppress_tags)

    def fresh(entry: EducationEntry) -> bool:
        return entry.definition_id not in history.delivered and not (entry.tags & suppressed)

    def quiz_repeat(entry: EducationEntry, allow_passed: bool) -> bool:
        return (
            entry.quiz
            and entry.definition_id in history.delivered
            and (allow_passed or entry.definition_id not in history.passed_quiz)
        )

    def theme_items(theme: str) -> Iterator[EducationEntry]:
        return (e for e in catalogue.education if e.theme == theme)

    def next_in_theme(theme: str) -> EducationEntry | None:
        for entry in theme_items(theme):
            if fresh(entry):
                return entry
        for entry in theme_items(theme):
            # A quiz served last week rests this week (rotation, finding 5).
            if quiz_repeat(entry, allow_passed=False) and entry.definition_id not in (
                history.last_week
            ):
                return entry
        return None

    candidates: list[tuple[EducationEntry | None, tuple[Reason, ...]]] = []
    warning = catalogue.education_item(rules.warning_signs_item)
    if warning.definition_id not in history.delivered:
        candidates.append(
            (
                warning,
                (
                    Reason(
                        "rule",
                        "EDU-WARNING-SIGNS",
                        1.0,
                        "Information about warning signs is given in the first week "
                        "(Danish national guideline; NICE NG59 self-management advice).",
                    ),
                ),
            )
        )
    for trigger in fired:
        reason = Reason("rule", trigger.id, 1.0, trigger.text)
        candidates += [(next_in_theme(theme), (reason,)) for theme in trigger.themes]
    barrier_themes = dict(rules.barrier_themes)
    for barrier in sorted(features.barriers):
        reason = Reason(
            "rule", f"EDU-BARRIER-{barrier.upper()}", 1.0, f"Barrier reported: {barrier}."
        )
        candidates += [(next_in_theme(t), (reason,)) for t in barrier_themes.get(barrier, ())]

    theme_votes: dict[str, float] = defaultdict(float)
    theme_reasons: dict[str, list[Reason]] = defaultdict(list)
    for n in neighbours:
        themes = dict.fromkeys(
            catalogue.education_item(i).theme
            for i in n.case.solution.education
            if _known(catalogue, i)
        )
        for theme in themes:
            theme_votes[theme] += n.vote
            theme_reasons[theme].append(
                Reason(
                    "case",
                    n.case.id,
                    round(n.vote, 4),
                    f"A similar successful case (similarity {n.retrieved.similarity:.2f}) "
                    f"used the theme '{theme}'.",
                )
            )
    for theme in sorted(theme_votes, key=lambda t: (-theme_votes[t], catalogue.themes.index(t))):
        candidates.append((next_in_theme(theme), tuple(theme_reasons[theme])))

    shown_themes = {
        catalogue.education_item(i).theme for i in history.delivered if _known(catalogue, i)
    }
    unseen = Reason("rule", "EDU-UNSEEN-THEME", 1.0, "A theme not shown before.")
    candidates += [(next_in_theme(t), (unseen,)) for t in catalogue.themes if t not in shown_themes]
    in_order = Reason("rule", "EDU-NEXT-IN-ORDER", 1.0, "Next message in the programme order.")
    candidates += [(e, (in_order,)) for e in catalogue.education if fresh(e)]
    quiz = Reason(
        "rule",
        "EDU-QUIZ-REPEAT",
        1.0,
        "Read before: offered again as a quiz, the least recently served first.",
    )
    order = {e.definition_id: index for index, e in enumerate(catalogue.education)}

    def least_recent(entry: EducationEntry) -> tuple[date, int]:
        return (history.last_served[entry.definition_id], order[entry.definition_id])

    unpassed = sorted((e for e in catalogue.education if quiz_repeat(e, False)), key=least_recent)
    passed = sorted(
        (e for e in catalogue.education if quiz_repeat(e, True) and not quiz_repeat(e, False)),
        key=least_recent,
    )
    candidates += [(e, (quiz,)) for e in unpassed]
    candidates += [(e, (quiz,)) for e in passed]

    chosen: dict[str, tuple[EducationEntry, tuple[Reason, ...]]] = {}
    for entry, reasons in candidates:
        if entry is None:
            continue
        if entry.definition_id in chosen:
            continue
        chosen[entry.definition_id] = (entry, reasons)
        if len(chosen) == rules.items_per_week:
            break
    return tuple(
        EducationDecision(
            item_id=entry.definition_id,
            theme=entry.theme,
            day=week_start + timedelta(days=index),
            as_quiz=entry.definition_id in history.delivered,
            canonical=entry.canonical,
            reasons=reasons,
        )
        for index, (entry, reasons) in enumerate(chosen.values())
    )


def _known(catalogue: Catalogue, item_id: str) -> bool:
    try:
        catalogue.education_item(item_id)
    except KeyError:
        return False
    return True
