"""Education rules: seven messages a week, one a day, never repeated except as quizzes.

Priority (research/selfback-domain.md sections 2 and 5): warning-signs information until it
has been given (always in week 1), then items triggered by rules, then themes of similar
successful cases, then themes not yet shown, then the next items in catalogue order, and
finally quizzes of items already read.
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


def _history(snapshot: PatientSnapshot) -> _History:
    delivered = {item for plan in snapshot.previous_plans for item in plan.education}
    delivered |= {r.item_id for r in snapshot.education if r.read_on is not None}
    passed = {r.item_id for r in snapshot.education if r.quiz_passed}
    return _History(frozenset(delivered), frozenset(passed))


def plan_education(
    snapshot: PatientSnapshot,
    features: Features,
    week_start: date,
    neighbours: tuple[Neighbour, ...],
    catalogue: Catalogue,
    rules: EducationRules,
) -> tuple[EducationDecision, ...]:
    history = _history(snapshot)
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
            if quiz_repeat(entry, allow_passed=False):
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
    quiz = Reason("rule", "EDU-QUIZ-REPEAT", 1.0, "Read before: offered again as a quiz.")
    candidates += [(e, (quiz,)) for e in catalogue.education if quiz_repeat(e, False)]
    candidates += [(e, (quiz,)) for e in catalogue.education if quiz_repeat(e, True)]

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
