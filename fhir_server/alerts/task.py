"""The Task for a safety alert and the facts a clinician needs to act on it (pure).

Shared contract (BRIEF "safety alerts", ARCHITECTURE.md "Access control"): the Task is
``requested``/``order``, coded with our ``alert`` code, ``for`` the Patient, ``focus`` the
DetectedIssue, ``owner`` the responsible PractitionerRole (the Organization when none), its
priority from the urgency (emergency -> stat, urgent -> asap, review -> routine; R4
request-priority), and it carries in itself what is needed to act -- the patient's name,
identifier and phone, which answer, and when -- so the clinician needs nothing else from a
record the patient's Consent may not open to them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

from terminology.systems import ALERT as ALERT_SYSTEM
from terminology.systems import SECURITY_TAG as SECURITY_TAG_SYSTEM

# terminology/content/CodeSystem-security-tag.json and CodeSystem-alert.json
SAFETY_TAG = {"system": SECURITY_TAG_SYSTEM, "code": "safety-alert"}

Urgency = Literal["emergency", "urgent", "review"]

# Communication.priority (set by the engine) -> urgency -> Task.priority.
_URGENCY: dict[str, Urgency] = {
    "stat": "emergency",
    "asap": "urgent",
    "urgent": "urgent",
    "routine": "review",
}
TASK_PRIORITY: dict[Urgency, str] = {"emergency": "stat", "urgent": "asap", "review": "routine"}


def urgency_of(communication: dict[str, Any]) -> Urgency:
    return _URGENCY.get(str(communication.get("priority") or "routine"), "review")


def task_id_for(communication_id: str) -> str:
    """One Task per alert, its id derived from the Communication's (so a re-run finds it)."""
    return "alert-" + hashlib.sha256(communication_id.encode()).hexdigest()[:32]


def references(resource: dict[str, Any], element: str) -> list[str]:
    return [str(r.get("reference") or "") for r in resource.get(element) or []]


def is_engine_alert(communication: dict[str, Any]) -> bool:
    """A Communication about a DetectedIssue addressed to someone: a safety alert (the
    engine's, or an escalation of one)."""
    return any(r.startswith("DetectedIssue/") for r in references(communication, "about")) and bool(
        communication.get("recipient")
    )


def with_safety_tag(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource with the safety-alert meta.tag added (unchanged if it has it)."""
    meta = dict(resource.get("meta") or {})
    tags = list(meta.get("tag") or [])
    if any(
        t.get("system") == SAFETY_TAG["system"] and t.get("code") == "safety-alert" for t in tags
    ):
        return resource
    meta["tag"] = [*tags, dict(SAFETY_TAG)]
    return {**resource, "meta": meta}


@dataclass(frozen=True, slots=True)
class AlertFacts:
    """The minimum needed to act on an alert."""

    patient_ref: str
    patient_name: str
    patient_identifier: str
    patient_phone: str
    answer: str  # which answer (the finding, and the response it was given in)
    answered_at: str  # when
    issue_ref: str
    urgency: Urgency

    def summary(self) -> str:
        parts = [
            f"Patient: {self.patient_name or 'name not recorded'}",
            f"identifier {self.patient_identifier or 'none'}",
            f"phone {self.patient_phone or 'none'}",
        ]
        return f"{', '.join(parts)}. Answer: {self.answer}. When: {self.answered_at}."


def _name(patient: dict[str, Any]) -> str:
    for name in patient.get("name") or []:
        text = name.get("text") or " ".join([*(name.get("given") or []), name.get("family") or ""])
        if text.strip():
            return str(text).strip()
    return ""


def _identifier(patient: dict[str, Any]) -> str:
    for identifier in patient.get("identifier") or []:
        if identifier.get("value"):
            system = identifier.get("system") or ""
            return f"{system}|{identifier['value']}" if system else str(identifier["value"])
    return f"Patient/{patient.get('id', '')}"


def phone_of(resource: dict[str, Any] | None) -> str:
    """The first phone/SMS ContactPoint (R4 ContactPoint.system), preferring rank 1."""
    if not resource:
        return ""
    points = [
        t
        for t in resource.get("telecom") or []
        if t.get("system") in ("phone", "sms") and t.get("value") and t.get("use") != "old"
    ]
    points.sort(key=lambda t: (t.get("system") != "sms", t.get("rank", 1_000_000)))
    return str(points[0]["value"]) if points else ""


def alert_facts(
    communication: dict[str, Any],
    issue: dict[str, Any] | None,
    patient: dict[str, Any] | None,
) -> AlertFacts:
    patient = patient or {}
    issue = issue or {}
    code = issue.get("code") or (communication.get("reasonCode") or [{}])[0]
    finding = str(code.get("text") or issue.get("detail") or "safety finding")
    evidence = [
        str(d.get("reference"))
        for e in issue.get("evidence") or []
        for d in e.get("detail") or []
        if d.get("reference")
    ]
    answer = finding + (f" ({', '.join(evidence)})" if evidence else "")
    issue_ref = next(
        (r for r in references(communication, "about") if r.startswith("DetectedIssue/")), ""
    )
    return AlertFacts(
        patient_ref=str((communication.get("subject") or {}).get("reference") or ""),
        patient_name=_name(patient),
        patient_identifier=_identifier(patient) if patient else "",
        patient_phone=phone_of(patient),
        answer=answer,
        answered_at=str(issue.get("identifiedDateTime") or communication.get("sent") or ""),
        issue_ref=issue_ref,
        urgency=urgency_of(communication),
    )


def _input(code: str, value: str) -> dict[str, Any]:
    return {"type": {"coding": [{"system": ALERT_SYSTEM, "code": code}]}, "valueString": value}


def build_task(
    communication: dict[str, Any], facts: AlertFacts, owner_ref: str, authored_on: str
) -> dict[str, Any]:
    """The worklist Task for the alert ``communication`` (owned by ``owner_ref``)."""
    task: dict[str, Any] = {
        "resourceType": "Task",
        "id": task_id_for(str(communication["id"])),
        "meta": {"tag": [dict(SAFETY_TAG)]},
        "status": "requested",
        "intent": "order",
        "priority": TASK_PRIORITY[facts.urgency],
        "code": {
            "coding": [{"system": ALERT_SYSTEM, "code": "alert", "display": "Safety alert"}],
            "text": f"Safety alert ({facts.urgency})",
        },
        "description": facts.summary(),
        "focus": {"reference": facts.issue_ref},
        "for": {"reference": facts.patient_ref},
        "authoredOn": authored_on,
        "lastModified": authored_on,
        "owner": {"reference": owner_ref},
        "reasonReference": {"reference": f"Communication/{communication['id']}"},
        "input": [
            _input("urgency", facts.urgency),
            _input("patient-name", facts.patient_name),
            _input("patient-identifier", facts.patient_identifier),
            _input("patient-phone", facts.patient_phone),
            _input("answer", facts.answer),
            _input("answered-at", facts.answered_at),
        ],
    }
    task["input"] = [i for i in task["input"] if i["valueString"]]
    if not facts.issue_ref:
        task.pop("focus")
    return task


def with_facts(communication: dict[str, Any], facts: AlertFacts) -> dict[str, Any]:
    """The Communication carrying the facts in itself: a second payload with the summary
    (added once)."""
    summary = facts.summary()
    payload = list(communication.get("payload") or [])
    if any(p.get("contentString") == summary for p in payload):
        return communication
    return {**communication, "payload": [*payload, {"contentString": summary}]}
