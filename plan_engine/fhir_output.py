"""FHIR R4 resources (plain dicts) for one plan decision.

CarePlan (the week), Goal (daily steps), GuidanceResponse (the explanation, with the
per-element reasons, retrieved cases and the diff in a contained Parameters), Provenance
(inputs, previous plan, versions), and per safety finding a Flag, a DetectedIssue and a
Communication to the responsible clinician. Ids come from the decision key, so the same
snapshot always yields the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from plan_engine import codes
from plan_engine.decision import (
    ClinicianMessage,
    DiffEntry,
    EducationDecision,
    ExerciseDecision,
    Reason,
    RetrievedCase,
    SafetyFinding,
    StepGoalDecision,
    Versions,
)
from plan_engine.identity import resource_id
from plan_engine.snapshot import PatientSnapshot, PreviousPlan

ENGINE_NAME = "selfback plan_engine"


@dataclass(frozen=True, slots=True)
class DecisionContent:
    """Everything the resources are built from (the engine fills it in)."""

    key: str
    snapshot: PatientSnapshot
    as_of: date
    week_number: int
    week_end: date
    status: str
    mode: str
    mode_reasons: tuple[Reason, ...]
    goal: StepGoalDecision | None
    exercises: tuple[ExerciseDecision, ...]
    education: tuple[EducationDecision, ...]
    findings: tuple[SafetyFinding, ...]
    patient_message: str | None
    clinician_messages: tuple[ClinicianMessage, ...]
    retrieved: tuple[RetrievedCase, ...]
    diff: tuple[DiffEntry, ...]
    previous: PreviousPlan | None
    versions: Versions
    sessions_per_week: int
    # The patient's safety message in every language (language, text): the CarePlan
    # activity carries the patient's language as text and the others as translations.
    patient_message_translations: tuple[tuple[str, str], ...] = ()


def _ref(resource_type: str, logical_id: str) -> dict[str, str]:
    return {"reference": f"{resource_type}/{logical_id}"}


def _literal(reference: str) -> dict[str, str]:
    return {"reference": reference}


def _device(versions: Versions) -> dict[str, Any]:
    return {
        "identifier": {
            "system": codes.ENGINE_DEVICE_IDENTIFIER,
            "value": f"plan-engine-{versions.engine}",
        },
        "display": f"{ENGINE_NAME} {versions.engine}",
    }


def _coding(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return coding


def _rule_concepts(reasons: tuple[Reason, ...]) -> list[dict[str, Any]]:
    seen = dict.fromkeys(r.ref for r in reasons if r.source != "case")
    return [{"coding": [_coding(codes.PLAN_RULE, ref)]} for ref in seen]


def _instant(day: date) -> str:
    return f"{day.isoformat()}T00:00:00Z"


def _ids(content: DecisionContent) -> dict[str, str]:
    key = content.key
    return {
        "careplan": resource_id(key, "CarePlan"),
        "goal": resource_id(key, "Goal"),
        "guidance": resource_id(key, "GuidanceResponse"),
        "provenance": resource_id(key, "Provenance"),
    }


def build_resources(content: DecisionContent) -> tuple[dict[str, Any], ...]:
    ids = _ids(content)
    patient = _literal(f"Patient/{content.snapshot.patient_id}")
    flags, issues, messages = _safety_resources(content, patient)
    resources: list[dict[str, Any]] = []
    if content.status != "not-permitted":
        if content.goal is not None:
            resources.append(_goal(content, ids, patient))
        resources.append(_care_plan(content, ids, patient))
    resources += flags + issues + messages
    resources.append(_guidance_response(content, ids, patient))
    resources.append(_provenance(content, ids, resources))
    return tuple(_without_empties(r) for r in resources)


def _without_empties(value: Any) -> Any:
    """R4 json.html: no empty arrays or objects (an element with no rule reasons, say, is
    left out rather than sent as ``[]``)."""
    if isinstance(value, dict):
        pruned = {k: _without_empties(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v not in ([], {})}
    if isinstance(value, list):
        return [v for v in (_without_empties(item) for item in value) if v not in ([], {})]
    return value


def _goal_text(content: DecisionContent) -> str:
    """The goal in words, with the patient's own target and what matters to them (the
    goal-setting questionnaire) in their own words."""
    assert content.goal is not None
    goals = content.snapshot.goals
    text = f"Walk about {content.goal.steps_per_day} steps a day"
    if goals.step_target is not None:
        text += f", working towards your own goal of {goals.step_target}"
    if goals.what_matters:
        text += f". What matters to you: \u201c{goals.what_matters}\u201d"
    return text


def _goal(content: DecisionContent, ids: dict[str, str], patient: dict[str, str]) -> dict[str, Any]:
    goal = content.goal
    assert goal is not None
    measure = {
        "coding": [
            _coding(codes.LOINC, codes.LOINC_STEPS_PER_DAY, "Number of steps in 24 hour Measured")
        ]
    }
    quantity = {"system": codes.UCUM, "code": "/d", "unit": "steps/day"}
    resource: dict[str, Any] = {
        "resourceType": "Goal",
        "id": ids["goal"],
        "identifier": [{"system": codes.DECISION_IDENTIFIER, "value": f"{content.key}/goal"}],
        "lifecycleStatus": "on-hold" if content.status == "on-hold" else "active",
        "category": [{"coding": [_coding(codes.GOAL_CATEGORY, "behavioral", "Behavioral")]}],
        "description": {"text": _goal_text(content)},
        "subject": patient,
        "startDate": content.as_of.isoformat(),
        "target": [
            {
                "measure": measure,
                "detailQuantity": {"value": goal.steps_per_day, **quantity},
                "dueDate": content.week_end.isoformat(),
            },
            {
                "measure": measure,
                "detailRange": {
                    "low": {"value": goal.band_low, **quantity},
                    "high": {"value": goal.band_high, **quantity},
                },
                "dueDate": content.week_end.isoformat(),
            },
        ],
    }
    if content.snapshot.condition_id:
        resource["addresses"] = [_literal(f"Condition/{content.snapshot.condition_id}")]
    return resource


def _care_plan(
    content: DecisionContent, ids: dict[str, str], patient: dict[str, str]
) -> dict[str, Any]:
    snapshot = content.snapshot
    language = snapshot.language
    activities: list[dict[str, Any]] = []
    if content.patient_message is not None:
        activities.append(
            {
                "detail": {
                    "kind": "CommunicationRequest",
                    "code": {
                        "coding": [
                            _coding(codes.PLAN_ENGINE_ACTIVITY, codes.ACTIVITY_KIND_SAFETY_MESSAGE)
                        ]
                    },
                    "reasonCode": _rule_concepts(
                        tuple(r for f in content.findings for r in f.reasons)
                    ),
                    "status": "scheduled",
                    "scheduledPeriod": {
                        "start": content.as_of.isoformat(),
                        "end": content.as_of.isoformat(),
                    },
                    "description": content.patient_message,
                    **_translations(content.patient_message_translations, language),
                }
            }
        )
    for e in content.exercises:
        activities.append(
            {
                "detail": {
                    "kind": "ServiceRequest",
                    "instantiatesCanonical": [e.canonical],
                    "code": {
                        "coding": [
                            _coding(
                                codes.SNOMED, codes.SNOMED_EXERCISE_THERAPY, "Exercise therapy"
                            ),
                            _coding(
                                codes.PLAN_ACTIVITY_KIND,
                                codes.ACTIVITY_KIND_PAIN_RELIEF_EXERCISE
                                if e.type == codes.EXERCISE_TYPE_PAIN_RELIEF
                                else codes.ACTIVITY_KIND_EXERCISE,
                            ),
                        ]
                    },
                    "reasonCode": _rule_concepts(e.reasons),
                    "status": "scheduled",
                    "scheduledTiming": {
                        "repeat": {
                            "boundsPeriod": {
                                "start": content.as_of.isoformat(),
                                "end": content.week_end.isoformat(),
                            },
                            "frequency": content.sessions_per_week,
                            "period": 1,
                            "periodUnit": "wk",
                            # The days the patient prefers (goal-setting questionnaire).
                            "dayOfWeek": list(content.snapshot.goals.preferred_days),
                        }
                    },
                    "description": f"{e.exercise_id}, level {e.level}",
                }
            }
        )
    for item in content.education:
        activities.append(
            {
                "detail": {
                    "kind": "CommunicationRequest",
                    "instantiatesCanonical": [item.canonical],
                    "code": {
                        "coding": [
                            _coding(codes.SNOMED, codes.SNOMED_EDUCATION, "Education"),
                            _coding(
                                codes.PLAN_ACTIVITY_KIND,
                                codes.ACTIVITY_KIND_QUIZ
                                if item.as_quiz
                                else codes.ACTIVITY_KIND_EDUCATION,
                            ),
                        ]
                    },
                    "reasonCode": _rule_concepts(item.reasons),
                    "status": "scheduled",
                    "scheduledPeriod": {"start": item.day.isoformat(), "end": item.day.isoformat()},
                    "description": item.item_id + (" (quiz)" if item.as_quiz else ""),
                }
            }
        )
    title = (
        f"Uge {content.week_number}: din plan"
        if language == "da"
        else f"Week {content.week_number}: your plan"
    )
    plan: dict[str, Any] = {
        "resourceType": "CarePlan",
        "id": ids["careplan"],
        "identifier": [{"system": codes.DECISION_IDENTIFIER, "value": content.key}],
        "instantiatesCanonical": [f"{codes.PLAN_DEFINITION_URL}|{content.versions.catalogue}"],
        "basedOn": [_literal(f"CarePlan/{snapshot.programme_plan_id}")],
        "status": content.status,
        "intent": "plan",
        "category": [{"coding": [_coding(codes.PLAN_MODE, content.mode)]}],
        "title": title,
        "subject": patient,
        "period": {"start": content.as_of.isoformat(), "end": content.week_end.isoformat()},
        "created": content.as_of.isoformat(),
        "author": _device(content.versions),
        "goal": [_ref("Goal", ids["goal"])] if content.goal is not None else [],
        "activity": activities,
    }
    if content.previous is not None:
        plan["replaces"] = [_ref("CarePlan", content.previous.plan_id)]
    if snapshot.condition_id:
        plan["addresses"] = [_literal(f"Condition/{snapshot.condition_id}")]
    if snapshot.inputs:
        plan["supportingInfo"] = [_literal(r) for r in snapshot.inputs]
    if not plan["goal"]:
        del plan["goal"]
    if not activities:
        del plan["activity"]
    return plan


def _translations(texts: tuple[tuple[str, str], ...], language: str) -> dict[str, Any]:
    """``_description`` with the FHIR translation extension for each other language."""
    others = [
        {
            "url": codes.EXT_TRANSLATION,
            "extension": [
                {"url": "lang", "valueCode": lang},
                {"url": "content", "valueString": text},
            ],
        }
        for lang, text in texts
        if lang != language
    ]
    return {"_description": {"extension": others}} if others else {}


def _safety_alert_meta(finding: SafetyFinding) -> dict[str, Any]:
    """The shared "safety alert" tag (BRIEF_COMMON.md contract) on what a clinician must act
    on; a nudge about missing data is not an alert."""
    if finding.severity == "info":
        return {}
    return {"meta": {"tag": [_coding(codes.SECURITY_TAG, codes.SAFETY_ALERT_TAG)]}}


def _evidence_of(finding: SafetyFinding) -> list[dict[str, Any]]:
    """DetectedIssue.evidence: the red-flag codes of the answers (the same codes the
    Questionnaire items carry in ``item.code``) and the responses that gave them."""
    evidence: dict[str, Any] = {}
    answer_codes = [
        _coding(codes.RED_FLAG, codes.RED_FLAG_ANSWER_CODES[name])
        for name in finding.answers
        if name in codes.RED_FLAG_ANSWER_CODES
    ]
    if answer_codes:
        evidence["code"] = [{"coding": [c]} for c in answer_codes]
    if finding.evidence:
        evidence["detail"] = [_literal(e) for e in finding.evidence]
    return [evidence] if evidence else []


def _safety_resources(
    content: DecisionContent, patient: dict[str, str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    flags, issues, messages = [], [], []
    clinician = _literal(f"PractitionerRole/{content.snapshot.clinician_role_id}")
    by_finding = {m.finding_ids[0]: m for m in content.clinician_messages}
    for index, finding in enumerate(content.findings):
        flag_id = resource_id(content.key, "Flag", index)
        issue_id = resource_id(content.key, "DetectedIssue", index)
        codings = [_coding(codes.PLAN_RULE, finding.id)]
        if finding.id in codes.FINDING_RED_FLAG_CODES:
            codings.insert(0, _coding(codes.RED_FLAG, codes.FINDING_RED_FLAG_CODES[finding.id]))
        elif len(finding.answers) == 1 and finding.answers[0] in codes.RED_FLAG_ANSWER_CODES:
            red_flag = codes.RED_FLAG_ANSWER_CODES[finding.answers[0]]
            codings.insert(0, _coding(codes.RED_FLAG, red_flag))
        meta = _safety_alert_meta(finding)
        code = {"coding": codings, "text": finding.text}
        flags.append(
            {
                "resourceType": "Flag",
                "id": flag_id,
                **meta,
                "status": "active",
                "category": [{"coding": [_coding(codes.FLAG_CATEGORY, "safety", "Safety")]}],
                "code": code,
                "subject": patient,
                "period": {"start": content.as_of.isoformat()},
                "author": _device(content.versions),
            }
        )
        issue: dict[str, Any] = {
            "resourceType": "DetectedIssue",
            "id": issue_id,
            **meta,
            "status": "final",
            "code": code,
            "severity": finding.issue_severity,
            "patient": patient,
            "identifiedDateTime": content.as_of.isoformat(),
            "author": _device(content.versions),
            "detail": finding.text,
        }
        if evidence := _evidence_of(finding):
            issue["evidence"] = evidence
        issues.append(issue)
        message = by_finding[finding.id]
        messages.append(
            {
                "resourceType": "Communication",
                "id": resource_id(content.key, "Communication", index),
                **meta,
                "status": "preparation",
                "category": [
                    {
                        "coding": [
                            _coding(
                                codes.COMMUNICATION_CATEGORY,
                                "alert"
                                if finding.severity in ("emergency", "urgent")
                                else "notification",
                            )
                        ]
                    }
                ],
                "priority": message.priority,
                "subject": patient,
                "about": [_ref("Flag", flag_id), _ref("DetectedIssue", issue_id)],
                "recipient": [clinician],
                "sender": _device(content.versions),
                "reasonCode": [code],
                "payload": [{"contentString": message.text}],
            }
        )
    return flags, issues, messages


def _reason_part(reason: Reason) -> dict[str, Any]:
    return {
        "name": "reason",
        "part": [
            {"name": "source", "valueCode": reason.source},
            {"name": "ref", "valueString": reason.ref},
            {"name": "weight", "valueDecimal": round(reason.weight, 4)},
            {"name": "text", "valueString": reason.text},
        ],
    }


def _element(name: str, value: str, reasons: tuple[Reason, ...]) -> dict[str, Any]:
    return {
        "name": name,
        "part": [{"name": "value", "valueString": value}, *(_reason_part(r) for r in reasons)],
    }


def _explanation(content: DecisionContent) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {"name": "mode", "valueCode": content.mode},
        _element("mode-reasons", content.mode, content.mode_reasons),
    ]
    if content.goal is not None:
        parameters.append(
            _element("step-goal", str(content.goal.steps_per_day), content.goal.reasons)
        )
    parameters += [
        _element("exercise", f"{e.exercise_id}@{e.level}", e.reasons) for e in content.exercises
    ]
    parameters += [
        _element("education", f"{i.day.isoformat()} {i.item_id}", i.reasons)
        for i in content.education
    ]
    parameters += [_element("finding", f.id, f.reasons) for f in content.findings]
    for case in content.retrieved:
        parameters.append(
            {
                "name": "case",
                "part": [
                    {"name": "id", "valueString": case.case_id},
                    {"name": "component", "valueCode": case.component},
                    {"name": "similarity", "valueDecimal": case.similarity},
                    {"name": "case-weight", "valueDecimal": case.case_weight},
                    *(
                        {
                            "name": "attribute",
                            "part": [
                                {"name": "name", "valueString": c.attribute},
                                {"name": "similarity", "valueDecimal": c.similarity},
                                {"name": "weight", "valueDecimal": c.weight},
                            ],
                        }
                        for c in case.contributions
                    ),
                ],
            }
        )
    for entry in content.diff:
        parts: list[dict[str, Any]] = [
            {"name": "element", "valueCode": entry.element},
            {"name": "change", "valueCode": entry.change},
        ]
        if entry.before is not None:
            parts.append({"name": "before", "valueString": entry.before})
        if entry.after is not None:
            parts.append({"name": "after", "valueString": entry.after})
        parts += [_reason_part(r) for r in entry.reasons]
        parameters.append({"name": "diff", "part": parts})
    return {"resourceType": "Parameters", "id": "explanation", "parameter": parameters}


def _guidance_response(
    content: DecisionContent, ids: dict[str, str], patient: dict[str, str]
) -> dict[str, Any]:
    reasons: list[Reason] = list(content.mode_reasons)
    if content.goal is not None:
        reasons += content.goal.reasons
    for e in content.exercises:
        reasons += e.reasons
    for i in content.education:
        reasons += i.reasons
    for f in content.findings:
        reasons += f.reasons
    response: dict[str, Any] = {
        "resourceType": "GuidanceResponse",
        "id": ids["guidance"],
        "contained": [_explanation(content)],
        "requestIdentifier": {"system": codes.DECISION_IDENTIFIER, "value": content.key},
        "moduleCanonical": f"{codes.PLAN_DEFINITION_URL}|{content.versions.catalogue}",
        "status": "success",
        "subject": patient,
        "occurrenceDateTime": content.as_of.isoformat(),
        "performer": _device(content.versions),
        "reasonCode": _rule_concepts(tuple(reasons)),
        "outputParameters": {"reference": "#explanation"},
    }
    if content.status != "not-permitted":
        response["result"] = _ref("CarePlan", ids["careplan"])
    else:
        response["status"] = "failure"
    return response


def _provenance(
    content: DecisionContent, ids: dict[str, str], resources: list[dict[str, Any]]
) -> dict[str, Any]:
    versions = content.versions
    entities = [{"role": "source", "what": _literal(r)} for r in content.snapshot.inputs]
    if content.previous is not None:
        entities.append({"role": "revision", "what": _ref("CarePlan", content.previous.plan_id)})
    return {
        "resourceType": "Provenance",
        "id": ids["provenance"],
        "target": [_ref(r["resourceType"], r["id"]) for r in resources],
        "recorded": _instant(content.as_of),
        "policy": [
            f"{codes.RULESET_LIBRARY_URL}|{versions.rules}",
            f"{codes.SIMILARITY_LIBRARY_URL}|{versions.similarity}",
            f"{codes.CASE_BASE_LIBRARY_URL}|{versions.case_base}",
            f"{codes.PLAN_DEFINITION_URL}|{versions.catalogue}",
        ],
        "activity": {"coding": [_coding(codes.DATA_OPERATION, "CREATE", "create")]},
        "reason": [{"coding": [_coding(codes.ACT_REASON, "TREAT", "treatment")]}],
        "agent": [
            {
                "type": {
                    "coding": [_coding(codes.PROVENANCE_PARTICIPANT_TYPE, "assembler", "Assembler")]
                },
                "who": _device(versions),
            }
        ],
        **({"entity": entities} if entities else {}),
    }
