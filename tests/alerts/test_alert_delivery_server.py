"""Safety alerts end to end over HTTP (issue 11 item 2, issue 10 item 7): a red-flag
answer in the weekly check-in -> the engine's Flag, DetectedIssue and Communication -> a
Task on the clinician's worklist -> the Communication delivered to a real signed-webhook
receiver and by SMS; retried while the receiver is down and delivered once it is up, across
a kill -9 of the server; an emergency not accepted in time escalated to the organisation; a
claim of a killed server taken back at the restart rather than after the 120 s lease.

The red flag used (saddle numbness, a cauda equina sign) fires with today's rules
(plan_engine/safety.py; tests/integration/test_planning_server.py).
"""

from __future__ import annotations

import json
import signal
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.alerts.receiver import Receiver
from tests.conftest import RunningServer, free_port, start_server, stop_server
from tests.integration.test_planning_server import plan_for, post_check_in, search, today, wait_for
from tests.planning.enrolment import enrolment, transaction

SECRET = "test-webhook-secret-" + uuid.uuid4().hex
TAG = {"system": "http://selfback.example.org/fhir/CodeSystem/security-tag", "code": "safety-alert"}
ROLE_PHONE = "+4520000001"
ORG_PHONE = "+4570000002"
PATIENT_PHONE = "+4530000003"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver(free_port(), SECRET)
    yield made
    made.down()


def serve(database_url: str, data_dir: Path, receiver: Receiver, **env: str) -> RunningServer:
    return start_server(
        database_url,
        data_dir,
        SELFBACK_ALERT_WEBHOOK_URL=receiver.url,
        SELFBACK_ALERT_WEBHOOK_SECRET=SECRET,
        SELFBACK_ALERT_RETRY_BASE_SECONDS="0.5",
        SELFBACK_ALERT_RETRY_CAP_SECONDS="1",
        **env,
    )


def enrol_reachable(fhir: httpx.Client) -> str:
    """An enrolled patient with a name, an identifier and a phone, whose physiotherapist's
    role and organisation have phones."""
    pid = f"pt-{uuid.uuid4().hex[:10]}"
    org = f"{pid}-clinic"
    resources = enrolment(pid, today() - timedelta(days=7), today())
    for resource in resources:
        if resource["resourceType"] == "Patient":
            resource["name"] = [{"given": ["Karen"], "family": "Holm"}]
            resource["identifier"] = [{"system": "urn:oid:1.2.208.176.1.2", "value": "0203791234"}]
            resource["telecom"] = [{"system": "phone", "value": PATIENT_PHONE}]
            resource["managingOrganization"] = {"reference": f"Organization/{org}"}
        if resource["resourceType"] == "PractitionerRole":
            resource["telecom"] = [{"system": "sms", "value": ROLE_PHONE}]
            resource["organization"] = {"reference": f"Organization/{org}"}
    organisation = {
        "resourceType": "Organization",
        "id": org,
        "name": "Back pain clinic",
        "telecom": [{"system": "phone", "value": ORG_PHONE}],
    }
    answer = fhir.post("/", json=transaction([organisation, *resources]))
    assert answer.status_code == 200, answer.text
    plan_for(fhir, pid, today())
    return pid


def alerts_of(fhir: httpx.Client, pid: str) -> list[dict[str, Any]]:
    return search(fhir, "Communication", subject=f"Patient/{pid}")


def the_alert(fhir: httpx.Client, pid: str, status: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        found = [c for c in alerts_of(fhir, pid) if c["status"] == status]
        return found[0] if found else None

    return wait_for(probe, f"a {status} alert for {pid}", seconds=90)


def sms_lines(data_dir: Path) -> list[dict[str, Any]]:
    path = data_dir / "sms-outbox.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_red_flag_becomes_a_task_and_a_delivered_signed_alert(
    database_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    receiver.up()
    server = serve(database_url, tmp_path / "server", receiver)
    try:
        with httpx.Client(base_url=server.fhir, timeout=60) as fhir:
            pid = enrol_reachable(fhir)
            response = post_check_in(fhir, pid, pain=5, red_flags={"rf-saddle-numbness": True})
            alert = the_alert(fhir, pid, "completed")

            assert TAG in alert["meta"]["tag"]
            assert alert["sent"]
            assert alert["priority"] == "stat"
            summary = alert["payload"][-1]["contentString"]
            assert "Karen Holm" in summary and PATIENT_PHONE in summary and "0203791234" in summary
            attempts = [
                e for e in alert["extension"] if e["url"].endswith("alert-delivery-attempt")
            ]
            outcomes = {
                (p["valueCode"]) for e in attempts for p in e["extension"] if p["url"] == "outcome"
            }
            assert outcomes == {"delivered"}

            (task,) = search(fhir, "Task", patient=f"Patient/{pid}")
            issue = search(fhir, "DetectedIssue", patient=f"Patient/{pid}")[0]
            assert task["status"] == "requested" and task["intent"] == "order"
            assert task["priority"] == "stat"
            assert task["code"]["coding"][0]["code"] == "alert"
            assert task["focus"] == {"reference": f"DetectedIssue/{issue['id']}"}
            assert task["owner"] == {"reference": f"PractitionerRole/{pid}-physio"}
            assert TAG in task["meta"]["tag"]
            inputs = {i["type"]["coding"][0]["code"]: i["valueString"] for i in task["input"]}
            assert inputs["patient-name"] == "Karen Holm"
            assert inputs["patient-phone"] == PATIENT_PHONE
            assert f"QuestionnaireResponse/{response['id']}" in inputs["answer"]
            assert inputs["answered-at"]
            # The worklist: the owner's open alerts by search.
            worklist = search(
                fhir, "Task", owner=f"PractitionerRole/{pid}-physio", status="requested"
            )
            assert [t["id"] for t in worklist] == [task["id"]]
            delivered = wait_for(
                lambda: [o for o in fhir.get(f"/Task/{task['id']}").json().get("output", [])],
                "the delivery on the Task",
            )
            assert delivered[0]["valueString"].startswith("Alert completed")

        # The receiver got exactly the signed payload, with the minimum needed to act.
        (payload,) = [p for p in receiver.accepted if p["patient"]["reference"] == f"Patient/{pid}"]
        assert receiver.refused == 0
        assert payload["urgency"] == "emergency"
        assert payload["task"] == f"Task/{task['id']}"
        assert payload["patient"]["phone"] == PATIENT_PHONE
        assert set(payload) == {
            "type",
            "communication",
            "task",
            "urgency",
            "recipient",
            "patient",
            "answer",
            "answeredAt",
            "message",
        }
        # The SMS gateway (outbox sender) got the emergency for the clinician's phone.
        texts = [m for m in sms_lines(tmp_path / "server") if m["to"] == ROLE_PHONE]
        assert len(texts) == 1 and f"Task/{task['id']}" in texts[0]["body"]
    finally:
        stop_server(server)


def test_receiver_down_then_up_across_a_kill_9_loses_nothing(
    database_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    data_dir = tmp_path / "server"
    server = serve(database_url, data_dir, receiver)  # the receiver is down
    try:
        with httpx.Client(base_url=server.fhir, timeout=60) as fhir:
            pid = enrol_reachable(fhir)
            post_check_in(fhir, pid, pain=5, red_flags={"rf-saddle-numbness": True})
            retrying = the_alert(fhir, pid, "in-progress")
            assert "webhook unreachable" in retrying["statusReason"]["text"]
            assert "next attempt at" in retrying["statusReason"]["text"]
    finally:
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(10)
    receiver.up()
    server = serve(database_url, data_dir, receiver)
    try:
        with httpx.Client(base_url=server.fhir, timeout=60) as fhir:
            alert = the_alert(fhir, pid, "completed")
            attempts = [
                e for e in alert["extension"] if e["url"].endswith("alert-delivery-attempt")
            ]
            failed = [
                e for e in attempts if {"url": "outcome", "valueCode": "failed"} in e["extension"]
            ]
            assert failed, "the failed attempts stay visible"
        assert receiver.deliveries.count(alert["id"]) >= 1
        assert {p["communication"] for p in receiver.accepted} >= {f"Communication/{alert['id']}"}
    finally:
        stop_server(server)


def test_emergency_not_accepted_is_escalated_to_the_organisation(
    database_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    receiver.up()
    data_dir = tmp_path / "server"
    server = serve(database_url, data_dir, receiver, SELFBACK_ALERT_ESCALATION_SECONDS="2")
    try:
        with httpx.Client(base_url=server.fhir, timeout=60) as fhir:
            pid = enrol_reachable(fhir)
            post_check_in(fhir, pid, pain=5, red_flags={"rf-saddle-numbness": True})

            def escalation() -> dict[str, Any] | None:
                found = [
                    c
                    for c in alerts_of(fhir, pid)
                    if c["id"].endswith("-escalation") and c["status"] == "completed"
                ]
                return found[0] if found else None

            escalated = wait_for(escalation, "the escalation delivered", seconds=90)
            assert escalated["recipient"] == [{"reference": f"Organization/{pid}-clinic"}]
            assert escalated["payload"][0]["contentString"].startswith("ESCALATED")
            assert TAG in escalated["meta"]["tag"]
            tasks = search(fhir, "Task", patient=f"Patient/{pid}")
            owners = sorted(t["owner"]["reference"] for t in tasks)
            assert owners == [f"Organization/{pid}-clinic", f"PractitionerRole/{pid}-physio"]
        texts = [m["to"] for m in sms_lines(data_dir)]
        assert ORG_PHONE in texts and ROLE_PHONE in texts
    finally:
        stop_server(server)


def test_claim_of_a_killed_server_is_taken_back_at_the_restart(
    database_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    """kill -9 while a delivery is in flight (the receiver holds the request): the
    restarted server takes the dead worker's claim back at start-up and delivers, well
    before the 120 s lease would have expired."""
    receiver.hold_seconds = 600
    receiver.up()
    data_dir = tmp_path / "server"
    server = serve(database_url, data_dir, receiver, SELFBACK_ALERT_SMS="off")
    try:
        with httpx.Client(base_url=server.fhir, timeout=60) as fhir:
            pid = enrol_reachable(fhir)
            post_check_in(fhir, pid, pain=5, red_flags={"rf-saddle-numbness": True})
            wait_for(lambda: receiver.requests > 0, "the delivery in flight")
    finally:
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(10)
    receiver.down()
    receiver.hold_seconds = 0
    receiver.up()
    server = serve(database_url, data_dir, receiver, SELFBACK_ALERT_SMS="off")
    try:
        with httpx.Client(base_url=server.fhir, timeout=60) as fhir:
            # Well inside the 120 s lease: only a reclaim at start-up can deliver it.
            alert = wait_for(
                lambda: [c for c in alerts_of(fhir, pid) if c["status"] == "completed"],
                "the reclaimed delivery",
                seconds=60,
            )[0]
        assert alert["id"] in receiver.deliveries
        assert "reclaimed" in server.log.read_text()
    finally:
        stop_server(server)
