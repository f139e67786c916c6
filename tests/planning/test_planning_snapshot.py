"""Stored resources -> PatientSnapshot (pure): what counts, by the rules in
fhir_server/planning/snapshot.py and docs/PLAN_ENGINE.md "In the server"."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from fhir_server.planning import conventions as fc
from fhir_server.planning.snapshot import PatientRecord, PlanningInputError, build_snapshot
from fhir_server.planning.weeks import first_scheduled_week, target_week, week_start
from mappings import score_observations, score_response
from plan_engine import decide_plan, load_catalogue
from plan_engine.config import load_rules
from tests.planning.enrolment import (
    baseline_response,
    clinician_goal,
    exercise_feedback,
    goal_setting_response,
    patient,
    programme_plan,
    step_observation,
    steps_before,
    weekly_response,
)

START = date(2026, 3, 2)
AS_OF = START + timedelta(days=14)  # plan week 3


def scored(response: dict[str, Any]) -> list[dict[str, Any]]:
    moment = datetime.fromisoformat(response["authored"]).astimezone(UTC)
    return [
        r
        for r in score_observations(response, score_response(response, moment), moment)
        if r["resourceType"] == "Observation"
    ]


def record(*responses: dict[str, Any], **fields: Any) -> PatientRecord:
    """p1 enrolled on START with a baseline, 14 days of steps before AS_OF, and ``responses``."""
    every = [baseline_response("p1-baseline", "p1", START), *responses]
    observations = [o for r in every for o in scored(r)] + steps_before("p1", AS_OF)
    base = PatientRecord(
        patient=patient("p1"),
        programme_plan=programme_plan("p1-programme", "p1", "p1-physio", START),
        responses=tuple(every),
        observations=tuple(observations),
    )
    return replace(base, **fields)


def weekly_plan(pid: str, week: date, goal: int, **extra: Any) -> tuple[dict, dict]:
    plan = {
        "resourceType": "CarePlan",
        "id": f"plan-{week}",
        "status": "completed",
        "intent": "plan",
        "instantiatesCanonical": [
            "http://selfback.example.org/fhir/PlanDefinition/weekly-lbp-self-management|1.0.0"
        ],
        "basedOn": [{"reference": "CarePlan/p1-programme"}],
        "category": [
            {"coding": [{"system": fc.BASE + "/CodeSystem/plan-mode", "code": "standard"}]}
        ],
        "subject": {"reference": f"Patient/{pid}"},
        "period": {"start": week.isoformat(), "end": (week + timedelta(days=6)).isoformat()},
        "goal": [{"reference": f"Goal/goal-{week}"}],
        "activity": [
            {
                "detail": {
                    "kind": "ServiceRequest",
                    "instantiatesCanonical": [
                        "http://selfback.example.org/fhir/ActivityDefinition/exercise-ab-curl-l2|1.0.0"
                    ],
                    "status": "scheduled",
                }
            }
        ],
        **extra,
    }
    goal = {
        "resourceType": "Goal",
        "id": f"goal-{week}",
        "lifecycleStatus": "completed",
        "subject": {"reference": f"Patient/{pid}"},
        "description": {"text": "steps"},
        "target": [
            {"detailQuantity": {"value": goal, "system": "http://unitsofmeasure.org", "code": "/d"}}
        ],
    }
    return plan, goal


@pytest.mark.parametrize(
    ("day", "planned", "expected"),
    [
        (START, set(), START),  # the first plan: the week holding the day
        (START + timedelta(days=6), {START}, START + timedelta(days=7)),  # check-in: next week
        (START + timedelta(days=3), {START, START + timedelta(days=7)}, START + timedelta(days=7)),
        (START + timedelta(days=8), {START}, START + timedelta(days=7)),  # boundary not reached
        (START - timedelta(days=2), set(), START),  # before the programme: week 1
        # late data: week 1 unplanned, week 2 planned -> re-plan week 2
        (START + timedelta(days=2), {START + timedelta(days=7)}, START + timedelta(days=7)),
    ],
)
def test_target_week(day: date, planned: set[date], expected: date) -> None:
    assert target_week(START, day, planned) == expected


def test_week_start_and_first_scheduled_week() -> None:
    assert week_start(START, START + timedelta(days=13)) == START + timedelta(days=7)
    assert first_scheduled_week(START, START - timedelta(days=5)) == START
    assert first_scheduled_week(START, START + timedelta(days=16)) == START + timedelta(days=14)


def test_baseline_scores_and_answers() -> None:
    snapshot = build_snapshot(record(), AS_OF)
    baseline = snapshot.baseline
    assert (baseline.completed_on, baseline.age, baseline.sex) == (START, 47, "female")
    assert (baseline.pain_average, baseline.pain_worst, baseline.rmdq) == (5, 7, 10)
    assert baseline.pseq == 40 and baseline.episode_duration == "5-12w"
    assert baseline.start_back_risk in ("low", "medium", "high")
    assert baseline.comorbidities == frozenset()
    assert snapshot.clinician_role_id == "p1-physio" and snapshot.exercise_minutes == 15
    assert "QuestionnaireResponse/p1-baseline" in snapshot.inputs


def test_no_baseline_or_no_clinician_cannot_be_planned() -> None:
    with pytest.raises(PlanningInputError, match="baseline"):
        build_snapshot(replace(record(), responses=(), observations=()), AS_OF)
    plan = programme_plan("p1-programme", "p1", "p1-physio", START)
    del plan["author"]
    with pytest.raises(PlanningInputError, match="PractitionerRole"):
        build_snapshot(replace(record(), programme_plan=plan), AS_OF)


def test_reports_before_as_of_count_and_red_flags_on_as_of_too() -> None:
    before = weekly_response("w-before", "p1", AS_OF - timedelta(days=1), pain=6)
    on_day = weekly_response("w-on", "p1", AS_OF, pain=9, red_flags={"rf-trauma": True})
    snapshot = build_snapshot(record(before, on_day), AS_OF)
    assert [(r.reported_on, r.pain_average) for r in snapshot.weekly_reports] == [
        (AS_OF - timedelta(days=1), 6)
    ]
    assert [(a.answered_on, a.significant_trauma) for a in snapshot.red_flags] == [
        (START, False),  # the baseline's safety check
        (AS_OF - timedelta(days=1), False),
        (AS_OF, True),
    ]


def test_step_days_window_duplicates_and_validity() -> None:
    extra = [
        step_observation("dup", "p1", AS_OF - timedelta(days=1), 9000),  # the higher count wins
        step_observation("worn-briefly", "p1", AS_OF - timedelta(days=2), 800, valid=False),
        step_observation("too-old", "p1", AS_OF - timedelta(days=29), 7000),
        step_observation("in-the-week", "p1", AS_OF, 7000),
    ]
    base = record()
    snapshot = build_snapshot(replace(base, observations=base.observations + tuple(extra)), AS_OF)
    days = {d.day: d for d in snapshot.step_days}
    assert min(days) == AS_OF - timedelta(days=14) and max(days) == AS_OF - timedelta(days=1)
    assert days[AS_OF - timedelta(days=1)].steps == 9000
    assert days[AS_OF - timedelta(days=2)].valid is True  # 800 invalid < the valid 5274
    assert "Observation/dup" in snapshot.inputs


def test_newest_earlier_plan_is_previous_whatever_the_order_and_superseded_ones_drop_out() -> None:
    week1, goal1 = weekly_plan("p1", START, 4000)
    week2, goal2 = weekly_plan("p1", START + timedelta(days=7), 4500)
    stale, stale_goal = weekly_plan("p1", START + timedelta(days=7), 9999)
    stale = {
        **stale,
        "id": "stale",
        "goal": [{"reference": "Goal/stale-goal"}],
        "status": "revoked",
        "extension": [{"url": fc.EXT_SUPERSEDED_BY, "valueReference": {"reference": "CarePlan/x"}}],
    }
    stale_goal = {**stale_goal, "id": "stale-goal"}
    future, future_goal = weekly_plan("p1", AS_OF, 5000)
    plans = (future, week2, stale, week1)
    snapshot = build_snapshot(
        replace(record(), weekly_plans=plans, goals=(goal1, goal2, stale_goal, future_goal)), AS_OF
    )
    assert [p.plan_id for p in snapshot.previous_plans] == [week1["id"], week2["id"]]
    assert snapshot.previous_plans[-1].step_goal == 4500
    assert snapshot.previous_plans[-1].exercises[0].exercise_id == "ab-curl"
    decision = decide_plan(snapshot, AS_OF)
    assert decision.previous_plan_id == week2["id"]  # the newest, never the oldest


def test_exercise_feedback_becomes_a_log_with_its_reason() -> None:
    feedback = exercise_feedback("fb", "p1", AS_OF - timedelta(days=2), "ab-curl", 2, "easy")
    unknown = exercise_feedback("fb2", "p1", AS_OF - timedelta(days=2), "moonwalk", 2, "easy")
    snapshot = build_snapshot(record(feedback, unknown), AS_OF)
    assert [(e.exercise_id, e.level, e.feedback, e.skipped) for e in snapshot.exercise_logs] == [
        ("ab-curl", 2, "easy", True)
    ]


def test_clinician_overrides() -> None:
    older = clinician_goal("g-old", "p1", "p1-physio", 3500, START)
    newer = clinician_goal("g-new", "p1", "p1-physio", 4200, START + timedelta(days=3))
    engine_goal = {**clinician_goal("g-engine", "p1", "p1-physio", 9000, AS_OF)}
    del engine_goal["expressedBy"]
    plan = programme_plan("p1-programme", "p1", "p1-physio", START, excluded=("core-plank",))
    snapshot = build_snapshot(
        replace(record(), goals=(older, newer, engine_goal), programme_plan=plan), AS_OF
    )
    assert snapshot.overrides.fixed_step_goal == 4200
    assert snapshot.overrides.excluded_exercises == frozenset({"core-plank"})
    assert {"Goal/g-new", "CarePlan/p1-programme"} <= set(snapshot.inputs)


def test_consent_newest_decides_and_language() -> None:
    def consent(cid: str, status: str, when: str) -> dict[str, Any]:
        return {
            "resourceType": "Consent",
            "id": cid,
            "status": status,
            "dateTime": when,
            "scope": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                        "code": "treatment",
                    }
                ]
            },
        }

    withdrawn = (consent("c1", "active", "2026-03-01"), consent("c2", "rejected", "2026-03-10"))
    danish = {**patient("p1"), "communication": [{"language": {"coding": [{"code": "da"}]}}]}
    snapshot = build_snapshot(replace(record(), consents=withdrawn, patient=danish), AS_OF)
    assert snapshot.consent.programme is False and snapshot.language == "da"
    assert build_snapshot(record(), AS_OF).consent.programme is True  # enrolment is consent
    assert decide_plan(snapshot, AS_OF).status == "not-permitted"


def engine_issue(iid: str, finding: str, day: date, *evidence: str) -> dict[str, Any]:
    """A DetectedIssue as the engine writes it for a finding of the plan of week ``day``."""
    return {
        "resourceType": "DetectedIssue",
        "id": iid,
        "status": "final",
        "code": {"coding": [{"system": fc.BASE + "/CodeSystem/plan-rule", "code": finding}]},
        "patient": {"reference": "Patient/p1"},
        "identifiedDateTime": day.isoformat(),
        "evidence": [{"detail": [{"reference": e} for e in evidence]}],
    }


def test_findings_of_earlier_plans_come_from_the_engines_detected_issues() -> None:
    """Engine finding 4: an answer on the previous plan's first day, which that plan already
    raised, is not raised again; a new answer is."""
    last_week = AS_OF - timedelta(days=7)
    saddle = {"rf-saddle-numbness": True}
    answer = weekly_response("w-rf", "p1", last_week, pain=5, red_flags=saddle)
    plan, goal = weekly_plan("p1", last_week, 4000)
    raised = engine_issue("di-1", "RF-SADDLE-NUMBNESS", last_week, "QuestionnaireResponse/w-rf")
    withdrawn = {**engine_issue("di-2", "REV-PAIN-RISE", last_week), "status": "entered-in-error"}
    older = engine_issue("di-3", "REV-PAIN-RISE", START)
    base = replace(
        record(answer),
        weekly_plans=(plan,),
        goals=(goal,),
        detected_issues=(raised, withdrawn, older),
    )
    snapshot = build_snapshot(base, AS_OF)
    (previous,) = snapshot.previous_plans
    assert [(f.finding_id, f.evidence) for f in previous.findings] == [
        ("RF-SADDLE-NUMBNESS", ("QuestionnaireResponse/w-rf",))
    ]
    assert snapshot.baseline.source == "QuestionnaireResponse/p1-baseline"
    review = {"date": last_week.isoformat(), "author": {"reference": "PractitionerRole/p1-physio"}}
    reviewed = replace(base, detected_issues=({**raised, "mitigation": [review]},))
    findings = decide_plan(build_snapshot(reviewed, AS_OF), AS_OF).findings
    assert [f.id for f in findings if f.severity in ("emergency", "urgent")] == []
    again = weekly_response("w-rf2", "p1", AS_OF, pain=5, red_flags=saddle)
    with_new = replace(reviewed, responses=(*reviewed.responses, again))
    decision = decide_plan(build_snapshot(with_new, AS_OF), AS_OF)
    assert [
        (f.id, f.evidence) for f in decision.findings if f.severity in ("emergency", "urgent")
    ] == [("RF-SADDLE-NUMBNESS", ("QuestionnaireResponse/w-rf2",))]


def test_a_long_history_gives_the_engine_only_its_window() -> None:
    """Engine finding 6: after 30 weekly check-ins and plans the snapshot holds the window
    the rules read (plan_engine config ``history``), not the whole history, and the plan's
    inputs name only the reports it kept."""
    history = load_rules().history
    as_of = START + timedelta(weeks=30)
    responses = [
        weekly_response(f"w-{n}", "p1", START + timedelta(weeks=n, days=6), pain=4 + n % 3)
        for n in range(30)
    ]
    plans = [weekly_plan("p1", START + timedelta(weeks=n), 4000 + 10 * n) for n in range(30)]
    base = record(*responses)
    long = replace(
        base,
        observations=base.observations + tuple(steps_before("p1", as_of)),
        weekly_plans=tuple(p for p, _ in plans),
        goals=tuple(g for _, g in plans),
    )
    snapshot = build_snapshot(long, as_of)
    assert len(snapshot.previous_plans) <= history.plan_weeks + 2
    assert snapshot.previous_plans[-1].week_start == as_of - timedelta(weeks=1)
    assert len(snapshot.weekly_reports) <= max(history.weekly_values_kept, 4) + 1
    assert len(snapshot.education) <= len(load_catalogue().education)
    kept = {r.source for r in snapshot.weekly_reports}
    weekly_inputs = {i for i in snapshot.inputs if i.startswith("QuestionnaireResponse/w-")}
    assert weekly_inputs == kept and "QuestionnaireResponse/w-0" not in weekly_inputs
    assert decide_plan(snapshot, as_of).previous_plan_id == plans[-1][0]["id"]


def _rated(rid: str, day: date, outcome: str, rating: str | None) -> dict[str, Any]:
    from tests.planning.enrolment import _response

    answers: dict[str, Any] = {
        "exercise": "ab-curl",
        "exercise-level": 2,
        "exercise-outcome": outcome,
    }
    if outcome == "exercise-completed":
        answers.update({"reps-set-1": 10, "reps-set-2": 10, "reps-set-3": 10})
        if rating is not None:
            answers["exercise-rating"] = rating
    return _response("selfback-exercise-feedback", rid, "p1", answers, day)


@pytest.mark.parametrize("rating", ["easy", "just-right", "hard", "painful", None])
def test_the_rating_of_a_completed_exercise_reaches_the_log(rating: str | None) -> None:
    day = AS_OF - timedelta(days=2)
    snapshot = build_snapshot(record(_rated("fb", day, "exercise-completed", rating)), AS_OF)
    assert [(e.rating, e.skipped, e.reps_done) for e in snapshot.exercise_logs] == [
        (rating, False, (10, 10, 10))
    ]


def test_the_newest_goal_setting_answers_before_as_of_are_the_patients_goals() -> None:
    def goals(rid: str, day: date, **answers: Any) -> dict[str, Any]:
        response = goal_setting_response("p1", day, **answers)
        response["id"] = rid
        return response

    older = goals("gs-1", START + timedelta(days=1), **{"goal-steps": 4000})
    newer = goals("gs-2", START + timedelta(days=8), **{"goal-steps": 7000, "goal-minutes": 25})
    later = goals("gs-3", AS_OF, **{"goal-steps": 9999})  # on as_of: for the next plan
    snapshot = build_snapshot(record(older, newer, later), AS_OF)
    assert snapshot.goals.step_target == 7000
    assert snapshot.goals.preferred_days == ("mon", "wed", "fri")
    assert snapshot.goals.what_matters == "Playing football with my son"
    assert snapshot.exercise_minutes == 25
    assert "QuestionnaireResponse/gs-2" in snapshot.inputs
    assert "QuestionnaireResponse/gs-3" not in snapshot.inputs
    without = build_snapshot(record(), AS_OF)
    assert without.goals.step_target is None and without.exercise_minutes == 15
