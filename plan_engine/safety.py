"""Safety layer: findings before planning, and a no-harder check after planning. Safety wins.

Before planning, :func:`assess` turns red-flag answers and new scores into findings:
emergency (possible cauda equina syndrome: call the emergency number now) and urgent
(possible cancer, infection or fracture: same-day contact) stop-and-refer findings put the
plan on hold; clinician review and the mood pathway keep the plan from getting harder; a
nudge after days without data. After planning,
:func:`enforce_no_harder` checks the plan against last week's and undoes anything harder.
Thresholds live in config/rules.json (``safety``) with their sources.
"""

from __future__ import annotations

from dataclasses import fields, replace
from datetime import date, timedelta
from typing import Literal

from plan_engine.catalogue import Catalogue
from plan_engine.config import URGENCY_RANK, RedFlagRule, Rules
from plan_engine.decision import ExerciseDecision, Reason, SafetyFinding, StepGoalDecision
from plan_engine.features import Features
from plan_engine.snapshot import PatientSnapshot, PreviousPlan, RedFlagAnswers

CANCER_COMORBIDITY = "cancer"


def standing_answers(snapshot: PatientSnapshot, rules: Rules) -> frozenset[str]:
    """The standing answers that hold for this patient whatever the screen: those given yes
    at baseline, and a cancer comorbidity as the history of cancer (NICE CKS: past history
    of cancer)."""
    standing = set(snapshot.baseline.red_flag_history) & rules.safety.standing_answers
    if CANCER_COMORBIDITY in snapshot.baseline.comorbidities:
        standing.add("cancer_history")
    return frozenset(standing)


def given_yes(answers: RedFlagAnswers) -> frozenset[str]:
    """The red-flag answers this screen itself gave as yes."""
    return frozenset(name for name in fields_of_answers() if getattr(answers, name) is True)


def fields_of_answers() -> tuple[str, ...]:
    return tuple(f.name for f in fields(RedFlagAnswers) if f.name not in ("answered_on", "source"))


def fired_rules(
    given: frozenset[str], standing: frozenset[str], rules: Rules
) -> tuple[RedFlagRule, ...]:
    """The red-flag rules one screen fires (pure; config ``safety.red_flag_rules``).

    A rule fires when all its answers are yes, counting the standing answers, and at least
    one of them was given in this screen (a standing answer alone is raised once, from the
    screen that gave it). A fired rule is left out when another fired rule at least as urgent
    holds a strict superset of its answers: "cancer history + new pain" (urgent) says more
    than "new pain" (review) alone, and the clinician gets one alert for it."""
    yes = given | standing
    fired = [
        rule
        for rule in rules.safety.red_flag_rules
        if all(name in yes for name in rule.all_of) and any(n in given for n in rule.all_of)
    ]
    return tuple(
        rule
        for rule in fired
        if not any(
            set(rule.all_of) < set(other.all_of)
            and URGENCY_RANK[other.urgency] >= URGENCY_RANK[rule.urgency]
            for other in fired
        )
    )


_ISSUE_SEVERITY: dict[str, Literal["high", "moderate", "low"]] = {
    "emergency": "high",
    "urgent": "high",
    "review": "moderate",
}
_ACTION = {
    "emergency": "Stop and refer now (emergency)",
    "urgent": "Stop and refer: same-day contact",
    "review": "Clinician review: not harder",
}


def _evidence(*sources: str | None) -> tuple[str, ...]:
    return tuple(sorted({s for s in sources if s}))


def raised_before(snapshot: PatientSnapshot, as_of: date) -> frozenset[tuple[str, str]]:
    """(finding id, source) pairs the newest earlier plan raised.

    Red-flag answers and baseline scores count as new on ``[as_of - 7, as_of]``: eight
    calendar days, so data dated on a plan's first day is new for that plan and for the next
    one (docs/SIMULATION.md, engine finding 4). The closed window stays: an answer given on
    the first day *after* that plan was made must still stop the next plan (NICE CKS red
    flags: refer the same day). What was already raised from the same source item is not
    raised again, so each answer gives one stop-and-refer, one Flag and one ``stat``
    Communication. Only the newest plan's window overlaps this one, so only its findings
    are compared. Data without a source reference cannot be matched and is raised again
    (the conservative side)."""
    earlier = [p for p in snapshot.previous_plans if p.week_start < as_of]
    if not earlier:
        return frozenset()
    return frozenset((f.finding_id, e) for f in earlier[-1].findings for e in f.evidence)


def assess(
    snapshot: PatientSnapshot, features: Features, as_of: date, rules: Rules
) -> tuple[SafetyFinding, ...]:
    safety = rules.safety
    window = timedelta(days=safety.new_data_window_days)
    findings: dict[str, SafetyFinding] = {}
    raised = raised_before(snapshot, as_of)

    def already_raised(finding_id: str, evidence: tuple[str, ...]) -> bool:
        return bool(evidence) and all((finding_id, e) in raised for e in evidence)

    recent_answers = [a for a in snapshot.red_flags if as_of - window <= a.answered_on <= as_of]
    standing = standing_answers(snapshot, rules)
    baseline_source = snapshot.baseline.source
    for answers in recent_answers:
        given = given_yes(answers)
        for rule in fired_rules(given, standing, rules):
            # A standing answer not given in this screen came from the baseline response:
            # the DetectedIssue cites both.
            from_baseline = any(n not in given for n in rule.all_of)
            evidence = _evidence(answers.source, baseline_source if from_baseline else None)
            if already_raised(rule.id, evidence):
                continue
            text = rule.text_da if snapshot.language == "da" else rule.text
            previous = findings.get(rule.id)
            evidence = _evidence(*evidence, *(previous.evidence if previous else ()))
            findings[rule.id] = SafetyFinding(
                rule.id,
                rule.urgency,
                _ISSUE_SEVERITY[rule.urgency],
                text,
                evidence,
                (Reason("safety", rule.id, 1.0, f"{_ACTION[rule.urgency]}: {rule.text}."),),
                tuple(sorted(rule.all_of)),
            )

    current = [r for r in snapshot.weekly_reports if as_of - window <= r.reported_on < as_of]
    report_source = _evidence(current[-1].source) if current else ()

    def review(finding_id: str, text: str, evidence: tuple[str, ...] = report_source) -> None:
        if already_raised(finding_id, evidence):
            return
        findings[finding_id] = SafetyFinding(
            finding_id,
            "review",
            "moderate",
            text,
            evidence,
            (Reason("safety", finding_id, 1.0, f"Clinician review: {text}"),),
        )

    very_high = safety.review_pain_very_high
    if (
        features.pain_new is not None
        and features.pain_previous_week is not None
        and features.pain_new >= very_high
        and features.pain_previous_week >= very_high
    ):
        review(
            "REV-PAIN-VERY-HIGH",
            f"Average pain {features.pain_previous_week} then {features.pain_new} "
            f"(at least {very_high} two weeks running).",
        )
    if features.pain_rise is not None and features.pain_rise >= safety.review_pain_rise:
        review(
            "REV-PAIN-RISE",
            f"Average pain rose by {features.pain_rise} points "
            f"(at least {safety.review_pain_rise}).",
        )
    if (
        features.rmdq_new is not None
        and features.rmdq_baseline is not None
        and features.rmdq_new - features.rmdq_baseline >= safety.review_rmdq_worsening
    ):
        review(
            "REV-RMDQ-WORSE",
            f"RMDQ {features.rmdq_new}, {features.rmdq_new - features.rmdq_baseline} points "
            f"above baseline (at least {safety.review_rmdq_worsening}).",
        )
    baseline = snapshot.baseline
    assessed = baseline.start_back_assessed_on or baseline.completed_on
    if (
        baseline.start_back_risk == safety.review_start_back_risk
        and as_of - window <= assessed <= as_of
    ):
        review(
            "REV-STARTBACK-HIGH",
            "STarT Back high risk: consider psychologically informed care (NICE NG59 1.1.2).",
            _evidence(baseline.source),
        )

    if features.phq8_new is not None:
        band = None
        for candidate in safety.mood_bands:
            if features.phq8_new >= candidate.at_or_above:
                band = candidate
        mood_source = _evidence(features.phq8_new_source)
        if band is not None and not already_raised(band.id, mood_source):
            text = f"PHQ-8 {features.phq8_new} (band from {band.at_or_above})."
            findings[band.id] = SafetyFinding(
                band.id,
                "info" if band.severity == "low" else "review",
                "low"
                if band.severity == "low"
                else "moderate"
                if band.severity == "moderate"
                else "high",
                text,
                mood_source,
                (Reason("safety", band.id, 1.0, f"Mood pathway: {text}"),),
            )

    if features.days_without_data >= safety.nudge_after_days_without_data:
        text = (
            f"No steps, answers or app use for {features.days_without_data} days "
            f"(at least {safety.nudge_after_days_without_data})."
        )
        findings["NUDGE-NO-DATA"] = SafetyFinding(
            "NUDGE-NO-DATA",
            "info",
            "low",
            text,
            (),
            (Reason("safety", "NUDGE-NO-DATA", 1.0, f"Nudge: {text}"),),
        )
    return tuple(sorted(findings.values(), key=lambda f: f.id))


def worsening_reason(features: Features) -> Reason | None:
    if not features.symptoms_worsened:
        return None
    return Reason(
        "safety",
        "SAFE-SYMPTOMS-WORSENED",
        1.0,
        "Symptoms worsened since the last report: the plan may not get harder.",
    )


def enforce_no_harder(
    goal: StepGoalDecision,
    exercises: tuple[ExerciseDecision, ...],
    previous: PreviousPlan | None,
    memory: PreviousPlan | None,
    catalogue: Catalogue,
    hold: tuple[Reason, ...],
) -> tuple[StepGoalDecision, tuple[ExerciseDecision, ...]]:
    """After planning: with any hold in force, undo a higher goal or a higher level per type."""
    if not hold or previous is None:
        return goal, exercises
    cap = Reason("safety", "SAFE-POST-CAP", 1.0, "Safety check after planning: not harder.")
    if goal.steps_per_day > previous.step_goal:
        low = min(goal.band_low, previous.step_goal)
        goal = replace(
            goal,
            steps_per_day=previous.step_goal,
            band_low=low,
            band_high=previous.step_goal,
            reasons=(*goal.reasons, cap),
        )
    levels: dict[str, int] = {}
    for plan in (memory, previous):
        for planned in plan.exercises if plan else ():
            if catalogue.has_exercise(planned.exercise_id, planned.level):
                exercise_type = catalogue.exercise_type(planned.exercise_id)
                levels[exercise_type] = max(levels.get(exercise_type, 0), planned.level)
    capped = []
    for e in exercises:
        ceiling = levels.get(e.type)
        if (
            ceiling is not None
            and e.level > ceiling
            and catalogue.has_exercise(e.exercise_id, ceiling)
        ):
            entry = catalogue.exercise(e.exercise_id, ceiling)
            e = replace(
                e,
                level=ceiling,
                definition_id=entry.definition_id,
                canonical=entry.canonical,
                reasons=(*e.reasons, cap),
            )
        capped.append(e)
    return goal, tuple(capped)
