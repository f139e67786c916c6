"""The pipeline: snapshot -> validate -> safety (pre) -> retrieve -> rules -> safety (post)
-> diff -> FHIR resources. Pure: ``as_of`` is an argument, randomness is seeded per week."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from datetime import date, timedelta

from plan_engine import codes
from plan_engine.casebase import load_case_base
from plan_engine.catalogue import Catalogue, load_catalogue
from plan_engine.config import Rules, load_rules, load_similarity
from plan_engine.decision import (
    ClinicianMessage,
    DiffEntry,
    EducationDecision,
    ExerciseDecision,
    PlanDecision,
    Reason,
    SafetyFinding,
    StepGoalDecision,
    Versions,
)
from plan_engine.education_plan import plan_education
from plan_engine.exercise_plan import ExerciseContext, plan_exercises
from plan_engine.features import Features, derive_features
from plan_engine.fhir_output import DecisionContent, build_resources
from plan_engine.history import bounded_snapshot
from plan_engine.identity import decision_key, weekly_rng
from plan_engine.plan_diff import plan_diff
from plan_engine.retrieval import Neighbour, problem_of, retrieve, votes
from plan_engine.safety import assess, enforce_no_harder, raised_before, worsening_reason
from plan_engine.snapshot import PatientSnapshot, PreviousPlan
from plan_engine.step_goal import StepContext, next_goal
from plan_engine.validation import SnapshotError, validate_snapshot

# 1.1.0: simulator findings 1-3 fixed; 1.2.0: findings 4-6 fixed (docs/SIMULATION.md):
# a finding is raised once per source item, unpassed quizzes rotate, and the engine plans
# from a bounded window of history (plan_engine.history).
# 1.3.0: pain-relief mode is bounded (PR-MAX-WEEKS, REV-PAIN-RELIEF-LIMIT) and followed by a
# graded return (PR-GRADED-RETURN); clinician goals outside the override bounds are refused;
# exercise ratings (easy / right / hard / painful) and the goal-setting answers are used.
ENGINE_VERSION = "1.3.0"
PLAN_DAYS = 7


def versions() -> Versions:
    catalogue = load_catalogue()
    return Versions(
        engine=ENGINE_VERSION,
        rules=load_rules().version,
        similarity=load_similarity().version,
        case_base=load_case_base().version,
        catalogue=catalogue.version,
    )


def _rule(rule_id: str, text: str) -> Reason:
    return Reason("rule", rule_id, 1.0, text)


def awaiting_review(snapshot: PatientSnapshot, earlier: tuple[PreviousPlan, ...]) -> Reason | None:
    """SAFE-HOLD-UNTIL-REVIEW: the newest plan was a safety hold and no clinician has recorded
    a review since the hold began, so the hold goes on (domain note §4: a stopped plan stays
    on hold pending review; docs/SIMULATION.md, engine finding 3)."""
    if not earlier or earlier[-1].mode != codes.MODE_SAFETY_HOLD:
        return None
    began = earlier[-1].week_start
    for plan in reversed(earlier):
        if plan.mode != codes.MODE_SAFETY_HOLD:
            break
        began = plan.week_start
    if any(day >= began for day in snapshot.safety_reviews):
        return None
    return Reason(
        "safety",
        "SAFE-HOLD-UNTIL-REVIEW",
        1.0,
        f"On hold since {began.isoformat()} after a stop-and-refer finding: the plan stays on "
        "hold until a clinician records a review.",
    )


def pain_relief_plans(
    earlier: tuple[PreviousPlan, ...], as_of: date, rules: Rules
) -> tuple[PreviousPlan, ...]:
    """The pain-relief plans among those starting within ``pain_relief_mode.window_weeks``
    before ``as_of`` (what PR-MAX-WEEKS counts)."""
    since = as_of - timedelta(weeks=rules.pain_relief.window_weeks)
    return tuple(p for p in earlier if p.mode == codes.MODE_PAIN_RELIEF and p.week_start >= since)


def choose_mode(
    findings: tuple[SafetyFinding, ...],
    features: Features,
    rules: Rules,
    previous: PreviousPlan | None = None,
    unreviewed_hold: Reason | None = None,
    relief_weeks: int = 0,
) -> tuple[str, tuple[Reason, ...]]:
    """Safety hold beats pain-relief mode beats the standard plan. A hold without a
    clinician's review stays a hold; pain-relief mode goes on while pain keeps rising, but
    holds at most ``pain_relief_mode.max_weeks`` of ``window_weeks`` weeks (PR-MAX-WEEKS):
    NICE NG59 1.2.1 advises staying active, so after that a graded return is planned."""
    mode, reasons = _choose_mode(findings, features, rules, previous, unreviewed_hold)
    limit = rules.pain_relief.max_weeks
    if mode == codes.MODE_PAIN_RELIEF and relief_weeks >= limit:
        return codes.MODE_STANDARD, (
            *reasons,
            _rule(
                "PR-MAX-WEEKS",
                f"Pain-relief mode in {relief_weeks} of the last "
                f"{rules.pain_relief.window_weeks} weeks (at most {limit}): staying active "
                "helps back pain recover (NICE NG59 1.2.1), so activity builds up again "
                "gradually and a clinician is asked to review.",
            ),
        )
    return mode, reasons


def _choose_mode(
    findings: tuple[SafetyFinding, ...],
    features: Features,
    rules: Rules,
    previous: PreviousPlan | None,
    unreviewed_hold: Reason | None,
) -> tuple[str, tuple[Reason, ...]]:
    urgent = tuple(r for f in findings if f.severity in ("emergency", "urgent") for r in f.reasons)
    if urgent:
        return codes.MODE_SAFETY_HOLD, urgent
    if unreviewed_hold is not None:
        return codes.MODE_SAFETY_HOLD, (unreviewed_hold,)
    pain = features.pain_new
    relief = rules.pain_relief
    if pain is not None and pain >= relief.enter_pain_at_or_above:
        return codes.MODE_PAIN_RELIEF, (
            _rule(
                "PR-HIGH-PAIN",
                f"Average pain {pain} (at least {relief.enter_pain_at_or_above}): "
                "pain-relief exercises only this week.",
            ),
        )
    if (
        pain is not None
        and relief.moderate_pain_min <= pain <= relief.moderate_pain_max
        and features.pain_rise is not None
        and features.pain_rise >= relief.moderate_pain_rise_at_least
    ):
        return codes.MODE_PAIN_RELIEF, (
            _rule(
                "PR-FLARE",
                f"Average pain {pain} after a rise of {features.pain_rise} "
                f"(at least {relief.moderate_pain_rise_at_least}): pain-relief exercises only.",
            ),
        )
    if (
        previous is not None
        and previous.mode == codes.MODE_PAIN_RELIEF
        and features.pain_rise is not None
        and features.pain_rise >= rules.worsening.pain_rise_at_least
    ):
        return codes.MODE_PAIN_RELIEF, (
            _rule(
                "PR-CONTINUE-RISING",
                f"Pain-relief mode last week and pain rose again by {features.pain_rise}: "
                "pain-relief exercises only, until pain stops rising.",
            ),
        )
    return codes.MODE_STANDARD, (
        _rule("MODE-STANDARD", "No flare and no urgent finding: the standard weekly plan."),
    )


def pain_relief_limit_finding(relief: tuple[PreviousPlan, ...], language: str) -> SafetyFinding:
    """REV-PAIN-RELIEF-LIMIT: the review a clinician is asked for when pain-relief mode
    reaches its limit. Its evidence is the pain-relief plans themselves, so one run of
    plans asks once (the newest plan's findings are compared, as in safety.raised_before)."""
    relief_weeks = len(relief)
    plans = tuple(f"CarePlan/{p.plan_id}" for p in relief)
    text = (
        f"Smertelindrende plan i {relief_weeks} uger: gradvis tilbagevenden til aktivitet "
        "er planlagt"
        if language == "da"
        else f"Pain-relief mode for {relief_weeks} weeks: a graded return to activity is planned"
    )
    return SafetyFinding(
        "REV-PAIN-RELIEF-LIMIT",
        "review",
        "moderate",
        text,
        tuple(sorted(plans)),
        (
            Reason(
                "safety",
                "REV-PAIN-RELIEF-LIMIT",
                1.0,
                f"Clinician review: pain-relief mode for {relief_weeks} weeks; please check "
                "the pain and the return to activity.",
            ),
        ),
    )


def graded_return_reason(previous: PreviousPlan | None, mode: str, rules: Rules) -> Reason | None:
    """PR-GRADED-RETURN: the first standard week after pain-relief mode holds the step goal
    and resumes exercises a level lower; from then on they climb with the usual rules."""
    if previous is None or previous.mode != codes.MODE_PAIN_RELIEF or mode != codes.MODE_STANDARD:
        return None
    drop = rules.pain_relief.graded_return_level_drop
    return _rule(
        "PR-GRADED-RETURN",
        f"First week back from pain-relief mode: the step goal is held and exercises resume "
        f"{drop} level{'s' if drop != 1 else ''} below the levels last used, then build up "
        "week by week (graded return to activity, NICE NG59 1.2.1).",
    )


def _clinician_messages(
    snapshot: PatientSnapshot, findings: tuple[SafetyFinding, ...]
) -> tuple[ClinicianMessage, ...]:
    recipient = f"PractitionerRole/{snapshot.clinician_role_id}"
    actions = {
        "emergency": "Emergency (possible cauda equina syndrome): the patient has been told to "
        "call the emergency number now; contact the patient now. The weekly plan is on hold.",
        "urgent": "Stop-and-refer finding: contact the patient today. The weekly plan is on hold.",
        "review": "Please review: the plan will not get harder until reviewed.",
        "info": "For information at the next contact.",
    }
    return tuple(
        ClinicianMessage(
            recipient=recipient,
            priority=codes.URGENCY_PRIORITY[f.severity],  # type: ignore[arg-type]
            text=f"{f.text} {actions[f.severity]}",
            finding_ids=(f.id,),
        )
        for f in findings
    )


def _patient_message_kind(findings: tuple[SafetyFinding, ...], hold: bool) -> str | None:
    """The most urgent message the findings call for (config ``patient_messages``)."""
    severities = {f.severity for f in findings}
    if "emergency" in severities:
        return "emergency"
    if hold or "urgent" in severities:
        return "urgent"
    if any(f.id != "NUDGE-NO-DATA" for f in findings):
        return "review"
    if findings:
        return "nudge"
    return None


def _patient_message(
    findings: tuple[SafetyFinding, ...], language: str, rules: Rules, hold: bool = False
) -> str | None:
    kind = _patient_message_kind(findings, hold)
    return None if kind is None else rules.patient_messages.text(kind, language)


def _patient_message_translations(
    findings: tuple[SafetyFinding, ...], rules: Rules, hold: bool
) -> tuple[tuple[str, str], ...]:
    """The message in every language the programme has (English and Danish): the CarePlan
    carries the others as translations, so the app can show either."""
    kind = _patient_message_kind(findings, hold)
    return () if kind is None else tuple(getattr(rules.patient_messages, kind))


def _case_votes(
    neighbours: tuple[Neighbour, ...], catalogue: Catalogue
) -> tuple[dict[str, float], dict[str, float], dict[str, tuple[Reason, ...]]]:
    exercise_keys = {n.case.id: [e for e, _ in n.case.solution.exercises] for n in neighbours}
    type_keys = {
        n.case.id: [catalogue.exercise_type(e) for e, _ in n.case.solution.exercises]
        for n in neighbours
    }
    reasons: dict[str, list[Reason]] = defaultdict(list)
    for n in neighbours:
        for exercise_id in dict.fromkeys(exercise_keys[n.case.id]):
            reasons[exercise_id].append(
                Reason(
                    "case",
                    n.case.id,
                    round(n.vote, 4),
                    f"A similar successful case (similarity {n.retrieved.similarity:.2f}) "
                    "used this exercise.",
                )
            )
    return (
        votes(neighbours, type_keys),
        votes(neighbours, exercise_keys),
        {k: tuple(v) for k, v in reasons.items()},
    )


def decide_plan(snapshot: PatientSnapshot, as_of: date) -> PlanDecision:
    """The next weekly plan for ``snapshot``, starting on ``as_of``."""
    rules = load_rules()
    similarity = load_similarity()
    catalogue = load_catalogue()
    case_base = load_case_base()
    issues = validate_snapshot(snapshot, as_of, catalogue)
    if issues:
        raise SnapshotError(issues)
    # Only the window of history the rules read goes further, into the decision key too, so
    # the cost of a plan does not grow with the patient's history (finding 6).
    snapshot = bounded_snapshot(snapshot, as_of, rules)
    engine_versions = versions()
    key = decision_key(snapshot, as_of, engine_versions)
    rng = weekly_rng(snapshot.patient_id, as_of)
    features = derive_features(snapshot, as_of, rules)
    week_end = as_of + timedelta(days=PLAN_DAYS - 1)

    earlier = tuple(p for p in snapshot.previous_plans if p.week_start < as_of)
    previous: PreviousPlan | None = earlier[-1] if earlier else None  # newest, never oldest
    memory = next(
        (p for p in reversed(earlier) if p.mode == codes.MODE_STANDARD and p.exercises), None
    )

    if not snapshot.consent.programme:
        reason = Reason(
            "rule",
            "CONSENT-NOT-ACTIVE",
            1.0,
            "No active consent to the self-management programme: no plan is made.",
        )
        content = DecisionContent(
            key, snapshot, as_of, features.week_number, week_end, "not-permitted",
            codes.MODE_NOT_PERMITTED, (reason,), None, (), (), (), None, (), (), (), previous,
            engine_versions, rules.exercise.sessions_per_week,
        )  # fmt: skip
        return _decision(content, features)

    findings = assess(snapshot, features, as_of, rules)
    unreviewed = awaiting_review(snapshot, earlier)
    relief = pain_relief_plans(earlier, as_of, rules)
    mode, mode_reasons = choose_mode(findings, features, rules, previous, unreviewed, len(relief))
    if any(r.ref == "PR-MAX-WEEKS" for r in mode_reasons):
        limit_finding = pain_relief_limit_finding(relief, snapshot.language)
        raised = raised_before(snapshot, as_of)
        if not all((limit_finding.id, e) in raised for e in limit_finding.evidence):
            findings = tuple(sorted((*findings, limit_finding), key=lambda f: f.id))
    graded = graded_return_reason(previous, mode, rules)
    if graded is not None:
        mode_reasons = (*mode_reasons, graded)
    urgent = mode == codes.MODE_SAFETY_HOLD
    safety_holds = tuple(r for f in findings for r in f.reasons)
    if unreviewed is not None:
        safety_holds += (unreviewed,)
    worse = worsening_reason(features)
    hold = safety_holds + ((worse,) if worse else ())
    step_hold = hold + (mode_reasons if mode == codes.MODE_PAIN_RELIEF else ())
    if graded is not None:
        step_hold += (graded,)

    goal: StepGoalDecision = next_goal(
        snapshot.step_days,
        as_of,
        StepContext(
            previous, snapshot.overrides.fixed_step_goal, step_hold, snapshot.goals.step_target
        ),
        rules.step_goal,
    )

    problem = problem_of(snapshot, features)
    neighbours = retrieve(
        problem,
        case_base,
        similarity,
        (("exercise", similarity.k), ("education", rules.education.case_neighbours)),
    )
    exercise_cases, education_cases = neighbours["exercise"], neighbours["education"]
    if not exercise_cases and not urgent:
        mode_reasons = (
            *mode_reasons,
            _rule(
                "CBR-FALLBACK",
                f"No successful case with similarity at least {similarity.threshold}: "
                "exercise choice falls back to the rule default.",
            ),
        )
    type_votes, exercise_votes, case_reasons = _case_votes(exercise_cases, catalogue)

    exercises: tuple[ExerciseDecision, ...] = ()
    dropped: tuple[DiffEntry, ...] = ()
    education: tuple[EducationDecision, ...] = ()
    if not urgent:
        exercise_plan = plan_exercises(
            snapshot,
            as_of,
            ExerciseContext(
                mode,
                mode_reasons,
                previous,
                memory,
                hold,
                type_votes,
                exercise_votes,
                case_reasons,
                graded,
                rules.pain_relief.graded_return_level_drop,
            ),
            catalogue,
            rules.exercise,
            rng,
        )
        exercises = tuple(
            replace(e, reasons=(*e.reasons, exercise_plan.count_reason))
            for e in exercise_plan.exercises
        )
        dropped = exercise_plan.dropped
        education = plan_education(
            snapshot, features, as_of, education_cases, catalogue, rules.education
        )
    goal, exercises = enforce_no_harder(goal, exercises, previous, memory, catalogue, step_hold)

    clinician_messages = _clinician_messages(snapshot, findings)
    content = DecisionContent(
        key=key,
        snapshot=snapshot,
        as_of=as_of,
        week_number=features.week_number,
        week_end=week_end,
        status="on-hold" if urgent else "active",
        mode=mode,
        mode_reasons=mode_reasons,
        goal=goal,
        exercises=exercises,
        education=education,
        findings=findings,
        patient_message=_patient_message(findings, snapshot.language, rules, urgent),
        patient_message_translations=_patient_message_translations(findings, rules, urgent),
        clinician_messages=clinician_messages,
        retrieved=tuple(n.retrieved for n in exercise_cases + education_cases),
        diff=plan_diff(previous, mode, mode_reasons, goal, exercises, education, dropped),
        previous=previous,
        versions=engine_versions,
        sessions_per_week=rules.exercise.sessions_per_week,
    )
    return _decision(content, features)


def _decision(content: DecisionContent, features: Features) -> PlanDecision:
    return PlanDecision(
        decision_id=content.key,
        patient_id=content.snapshot.patient_id,
        as_of=content.as_of,
        week_number=features.week_number,
        week_start=content.as_of,
        week_end=content.week_end,
        status=content.status,  # type: ignore[arg-type]
        mode=content.mode,
        mode_reasons=content.mode_reasons,
        step_goal=content.goal,
        exercises=content.exercises,
        education=content.education,
        findings=content.findings,
        patient_message=content.patient_message,
        clinician_messages=content.clinician_messages,
        retrieved_cases=content.retrieved,
        diff=content.diff,
        versions=content.versions,
        previous_plan_id=content.previous.plan_id if content.previous else None,
        resources=build_resources(content),
    )
