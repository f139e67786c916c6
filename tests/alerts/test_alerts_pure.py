"""The pure parts of the alert path: the Task built for an alert, the webhook signature a
receiver checks, the back-off."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_server.alerts import (
    SAFETY_TAG,
    alert_facts,
    build_task,
    sign,
    task_id_for,
    urgency_of,
    verify,
    with_safety_tag,
)
from fhir_server.alerts.delivery import SIGNATURE_HEADER, TIMESTAMP_HEADER, backoff_seconds


def communication(priority: str) -> dict[str, Any]:
    return {
        "resourceType": "Communication",
        "id": "c1",
        "status": "preparation",
        "priority": priority,
        "subject": {"reference": "Patient/p1"},
        "about": [{"reference": "Flag/f1"}, {"reference": "DetectedIssue/d1"}],
        "recipient": [{"reference": "PractitionerRole/r1"}],
        "payload": [{"contentString": "Possible cauda equina: call the patient today"}],
    }


PATIENT = {
    "resourceType": "Patient",
    "id": "p1",
    "name": [{"given": ["Karen"], "family": "Holm"}],
    "identifier": [{"system": "urn:oid:1.2.208.176.1.2", "value": "0203791234"}],
    "telecom": [
        {"system": "email", "value": "k@example.org"},
        {"system": "phone", "value": "+4530000003"},
    ],
}
ISSUE = {
    "resourceType": "DetectedIssue",
    "id": "d1",
    "code": {"text": "Numbness in the saddle area"},
    "identifiedDateTime": "2026-12-07",
    "evidence": [{"detail": [{"reference": "QuestionnaireResponse/q1"}]}],
}


@pytest.mark.parametrize(
    ("priority", "urgency", "task_priority"),
    [
        ("stat", "emergency", "stat"),
        ("asap", "urgent", "asap"),
        ("urgent", "urgent", "asap"),
        ("routine", "review", "routine"),
    ],
)
def test_task_priority_follows_the_urgency(priority: str, urgency: str, task_priority: str) -> None:
    alert = communication(priority)
    assert urgency_of(alert) == urgency
    facts = alert_facts(alert, ISSUE, PATIENT)
    task = build_task(alert, facts, "PractitionerRole/r1", "2026-12-07T10:00:00Z")
    assert task["priority"] == task_priority
    assert task["id"] == task_id_for("c1")
    assert task["status"] == "requested" and task["intent"] == "order"
    assert task["for"] == {"reference": "Patient/p1"}
    assert task["focus"] == {"reference": "DetectedIssue/d1"}
    assert task["owner"] == {"reference": "PractitionerRole/r1"}
    assert task["meta"]["tag"] == [SAFETY_TAG]
    inputs = {i["type"]["coding"][0]["code"]: i["valueString"] for i in task["input"]}
    assert inputs == {
        "urgency": urgency,
        "patient-name": "Karen Holm",
        "patient-identifier": "urn:oid:1.2.208.176.1.2|0203791234",
        "patient-phone": "+4530000003",
        "answer": "Numbness in the saddle area (QuestionnaireResponse/q1)",
        "answered-at": "2026-12-07",
    }


def test_tagging_is_idempotent() -> None:
    once = with_safety_tag(communication("stat"))
    assert once["meta"]["tag"] == [SAFETY_TAG]
    assert with_safety_tag(once) == once


def test_signature_is_hmac_sha256_over_timestamp_and_body() -> None:
    body = b'{"type":"safety-alert"}'
    # The example in docs/ALERTS.md, checkable with openssl:
    # printf '1796000000.{"type":"safety-alert"}' | openssl dgst -sha256 -hmac s3cret
    signature = sign("s3cret", 1796000000, body)
    assert (
        signature
        == "sha256="
        + __import__("hmac")
        .new(b"s3cret", b'1796000000.{"type":"safety-alert"}', "sha256")
        .hexdigest()
    )
    headers = {TIMESTAMP_HEADER: "1796000000", SIGNATURE_HEADER: signature}
    assert verify("s3cret", headers, body, now=1796000010)
    assert not verify("s3cret", headers, body + b" ", now=1796000010)  # tampered
    assert not verify("other", headers, body, now=1796000010)  # wrong secret
    assert not verify("s3cret", headers, body, now=1796000000 + 301)  # replayed later
    assert not verify("s3cret", {SIGNATURE_HEADER: signature}, body, now=1796000010)


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff_seconds(n, 15, 120) for n in range(1, 7)] == [15, 30, 60, 120, 120, 120]
