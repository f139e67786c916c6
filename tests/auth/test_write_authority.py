"""Write authority by role over HTTP with real tokens (issue 10 item 4, issue 11 items 4-5).

The attacks a security review made as a patient are each refused with a 403 naming the
rule, and nothing is written; what a patient reports, and what a clinician who may reach
the patient reviews and overrides, is accepted. ``$plan-week`` works for the patient and
for a clinician with Consent (403, never a 404, for a token that may not), and the patient
reads the explanation (GuidanceResponse) of its own plan. The table in docs/AUTH.md is the
module's table.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_server.access.write_authority import TABLE
from tests.auth.access_world import CATEGORY, LOINC, World, care_team, consent
from tests.auth.smart_app import bearer
from tests.planning.enrolment import clinician_goal, enrolment, transaction

pytestmark = pytest.mark.db
ENGINE = "http://selfback.example.org/fhir/identifier/software"


@pytest.fixture(scope="module")
def http() -> Any:
    with httpx.Client(timeout=120) as client:
        yield client


@pytest.fixture(scope="module")
def plannable(world: World, http: httpx.Client) -> dict[str, str]:
    """An enrolled patient (baseline, programme plan, steps) with a patient token, a
    clinician with Consent + CareTeam and one without, and a plan made by $plan-week."""
    pid = f"wa-{world.a[:8]}"
    today = datetime.now(UTC).date()
    answer = http.post(
        world.fhir,
        json=transaction(enrolment(pid, today - timedelta(days=7), today)),
        headers=world.admin(),
    )
    assert answer.status_code == 200, answer.text
    doctor = world.create({"resourceType": "Practitioner", "name": [{"family": "Review"}]})
    world.create(consent(pid, f"Practitioner/{doctor}"))
    world.create(care_team(pid, f"Practitioner/{doctor}"))
    return {
        "pid": pid,
        "role": f"{pid}-physio",
        "patient": world.mint("patient/*.cruds", role="patient", patient=pid,
                              fhir_user=f"Patient/{pid}"),
        "doctor": world.mint("user/*.cruds", role="practitioner", fhir_user=f"Practitioner/{doctor}"),
        "doctor-ehr-read": world.mint("patient/*.rs", role="practitioner", patient=pid,
                                      fhir_user=f"Practitioner/{doctor}"),
        "stranger": world.mint("user/*.cruds", role="practitioner",
                               fhir_user=f"Practitioner/{world.stranger}"),
        "other-patient": world.mint("patient/*.cruds", role="patient", patient=world.b,
                                    fhir_user=f"Patient/{world.b}"),
    }  # fmt: skip


def as_(plannable: dict[str, str], who: str) -> dict[str, str]:
    return bearer(plannable[who])


def plan_week(http: httpx.Client, world: World, pid: str, headers: dict[str, str]) -> Any:
    return http.post(
        f"{world.fhir}/Patient/{pid}/$plan-week",
        json={"resourceType": "Parameters"},
        headers=headers,
    )


def engine_resources(http: httpx.Client, world: World, pid: str) -> dict[str, dict[str, Any]]:
    """The engine's newest resources for ``pid`` by type (made by $plan-week as admin)."""
    answer = plan_week(http, world, pid, world.admin())
    assert answer.status_code == 200, answer.text
    found: dict[str, dict[str, Any]] = {}
    for entry in answer.json()["entry"]:
        found.setdefault(entry["resource"]["resourceType"], entry["resource"])
    return found


def refused(response: httpx.Response, rule: str = "write-authority") -> None:
    assert response.status_code == 403, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert rule in outcome["issue"][0]["diagnostics"], outcome


def steps(pid: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": CATEGORY, "code": "activity"}]}],
        "code": {"coding": [{"system": LOINC, "code": "41950-7"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": "2026-12-01",
        "valueQuantity": {"value": 4200, "unit": "/d", "system": "http://unitsofmeasure.org",
                          "code": "/d"},
        **extra,
    }  # fmt: skip


# -- $plan-week and the explanation ---------------------------------------------------------------


def test_plan_week_for_the_patient_and_the_consented_clinician(
    world: World, http: httpx.Client, plannable: dict[str, str]
) -> None:
    pid = plannable["pid"]
    for who in ("patient", "doctor"):
        answer = plan_week(http, world, pid, as_(plannable, who))
        assert answer.status_code == 200, (who, answer.text)
        kinds = {e["resource"]["resourceType"] for e in answer.json()["entry"]}
        assert {"CarePlan", "Goal", "GuidanceResponse", "Provenance"} <= kinds
    # A clinician without Consent: the Patient is not there for them (as a read says);
    # a read-only EHR launch of a consented clinician: 403 naming the scope it lacks.
    assert plan_week(http, world, pid, as_(plannable, "stranger")).status_code == 404
    refused(plan_week(http, world, pid, as_(plannable, "doctor-ehr-read")), "CarePlan")
    assert plan_week(http, world, pid, as_(plannable, "other-patient")).status_code == 404


def test_the_patient_reads_the_explanation_of_its_own_plan(
    world: World, http: httpx.Client, plannable: dict[str, str]
) -> None:
    pid = plannable["pid"]
    guidance = engine_resources(http, world, pid)["GuidanceResponse"]
    url = f"{world.fhir}/GuidanceResponse/{guidance['id']}"
    mine = http.get(url, headers=as_(plannable, "patient"))
    assert mine.status_code == 200, mine.text
    found = http.get(
        f"{world.fhir}/GuidanceResponse", params={"subject": f"Patient/{pid}"},
        headers=as_(plannable, "patient"),
    )  # fmt: skip
    assert guidance["id"] in {e["resource"]["id"] for e in found.json().get("entry", [])}
    # the explanation is the patient's data: not another patient's, not a stranger's
    assert http.get(url, headers=as_(plannable, "other-patient")).status_code == 404
    assert http.get(url, headers=as_(plannable, "stranger")).status_code == 404
    assert http.get(url, headers=as_(plannable, "doctor")).status_code == 200


# -- what a patient may not write --------------------------------------------------------------


def test_a_patient_cannot_touch_clinical_or_safety_records(
    world: World, http: httpx.Client, plannable: dict[str, str]
) -> None:
    pid, mine = plannable["pid"], as_(plannable, "patient")
    made = engine_resources(http, world, pid)
    plan, goal = made["CarePlan"], made["Goal"]
    # revoke its programme plan, or the engine's weekly plan
    for target in (f"CarePlan/{pid}-programme", f"CarePlan/{plan['id']}"):
        stored = http.get(f"{world.fhir}/{target}", headers=world.admin()).json()
        refused(http.put(f"{world.fhir}/{target}", json={**stored, "status": "revoked"},
                         headers=mine))  # fmt: skip
        refused(http.delete(f"{world.fhir}/{target}", headers=mine))
    # a "clinician" step goal of 25,000 a day the planner would use
    fake = clinician_goal("ignored", pid, plannable["role"], 25000, datetime.now(UTC).date())
    fake.pop("id")
    refused(http.post(f"{world.fhir}/Goal", json=fake, headers=mine))
    refused(http.put(f"{world.fhir}/Goal/{goal['id']}", json={**goal, "lifecycleStatus": "cancelled"},
                     headers=mine))  # fmt: skip
    # Flag, DetectedIssue and its mitigation (lifting a stop-and-refer hold)
    flag = {"resourceType": "Flag", "status": "active", "code": {"text": "x"},
            "subject": {"reference": f"Patient/{pid}"}}  # fmt: skip
    flag_id = world.create(flag)
    refused(http.delete(f"{world.fhir}/Flag/{flag_id}", headers=mine))
    refused(http.post(f"{world.fhir}/Flag", json=flag, headers=mine))
    issue = {"resourceType": "DetectedIssue", "status": "final",
             "patient": {"reference": f"Patient/{pid}"},
             "author": {"identifier": {"system": ENGINE, "value": "plan-engine-1"}}}  # fmt: skip
    issue_id = world.create(issue)
    reviewed = {**issue, "id": issue_id, "mitigation": [
        {"action": {"text": "reviewed"}, "date": "2026-12-07",
         "author": {"reference": f"Practitioner/{world.stranger}"}}]}  # fmt: skip
    refused(http.put(f"{world.fhir}/DetectedIssue/{issue_id}", json=reviewed, headers=mine))
    assert "mitigation" not in http.get(
        f"{world.fhir}/DetectedIssue/{issue_id}", headers=world.admin()
    ).json()
    # mark a clinician's message completed
    message = {"resourceType": "Communication", "status": "in-progress",
               "subject": {"reference": f"Patient/{pid}"},
               "sender": {"reference": f"Practitioner/{world.stranger}"},
               "recipient": [{"reference": f"Patient/{pid}"}]}  # fmt: skip
    message_id = world.create(message)
    refused(http.put(f"{world.fhir}/Communication/{message_id}",
                     json={**message, "id": message_id, "status": "completed"}, headers=mine))  # fmt: skip
    # server-only records
    for rtype, body in (
        ("Task", {"resourceType": "Task", "status": "requested", "intent": "order",
                  "for": {"reference": f"Patient/{pid}"}}),
        ("Provenance", {"resourceType": "Provenance", "target": [{"reference": f"Patient/{pid}"}],
                        "recorded": "2026-12-07T10:00:00Z",
                        "agent": [{"who": {"reference": f"Patient/{pid}"}}]}),
        ("GuidanceResponse", {"resourceType": "GuidanceResponse", "status": "success",
                              "moduleUri": "http://example.org/x",
                              "subject": {"reference": f"Patient/{pid}"}}),
    ):  # fmt: skip
        # refused by the decision (patient scopes) or by the table: a 403 either way
        refused(http.post(f"{world.fhir}/{rtype}", json=body, headers=mine), rule="")
    # a transaction holding one forbidden entry writes nothing at all
    tag = f"wa-tx-{pid}"
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": steps(pid, identifier=[{"system": "urn:x", "value": tag}]),
         "request": {"method": "POST", "url": "Observation"}},
        {"resource": flag, "request": {"method": "POST", "url": "Flag"}},
    ]}  # fmt: skip
    refused(http.post(world.fhir, json=bundle, headers=mine))
    left = http.get(f"{world.fhir}/Observation", params={"identifier": f"urn:x|{tag}"},
                    headers=world.admin()).json()  # fmt: skip
    assert not left.get("entry")


def test_a_patient_references_no_other_patient(
    world: World, http: httpx.Client, plannable: dict[str, str]
) -> None:
    pid, mine = plannable["pid"], as_(plannable, "patient")
    sneaky = steps(pid, performer=[{"reference": f"Patient/{world.b}"}])
    # (the access decision already refuses this one: B's compartment is not A's)
    refused(http.post(f"{world.fhir}/Observation", json=sneaky, headers=mine), "another patient")
    hidden = steps(pid, derivedFrom=[{"reference": f"{world.fhir}/Patient/{world.b}"}])
    refused(http.post(f"{world.fhir}/Observation", json=hidden, headers=mine))
    # and B cannot then change or delete what it could never see
    theirs = world.create(steps(pid, performer=[{"reference": f"Patient/{world.b}"}]))
    other = as_(plannable, "other-patient")
    assert http.delete(f"{world.fhir}/Observation/{theirs}", headers=other).status_code in (204, 404)
    assert http.get(f"{world.fhir}/Observation/{theirs}", headers=world.admin()).status_code == 200


def test_what_a_patient_reports_is_accepted(
    world: World, http: httpx.Client, plannable: dict[str, str]
) -> None:
    pid, mine = plannable["pid"], as_(plannable, "patient")
    created = http.post(f"{world.fhir}/Observation", json=steps(pid), headers=mine)
    assert created.status_code == 201, created.text
    # a score is the server's, not the patient's
    score = steps(pid) | {"category": [{"coding": [{"system": CATEGORY, "code": "survey"}]}]}
    refused(http.post(f"{world.fhir}/Observation", json=score, headers=mine))
    reply = {"resourceType": "Communication", "status": "completed",
             "subject": {"reference": f"Patient/{pid}"},
             "sender": {"reference": f"Patient/{pid}"},
             "recipient": [{"reference": f"PractitionerRole/{plannable['role']}"}],
             "payload": [{"contentString": "Thank you"}]}  # fmt: skip
    answer = http.post(f"{world.fhir}/Communication", json=reply, headers=mine)
    assert answer.status_code == 201, answer.text
    mine_consent = consent(pid, f"PractitionerRole/{plannable['role']}")
    answer = http.post(f"{world.fhir}/Consent", json=mine_consent, headers=mine)
    assert answer.status_code == 201, answer.text


# -- clinicians -----------------------------------------------------------------------------------


def test_a_clinician_reviews_and_overrides_only_where_they_may_reach(
    world: World, http: httpx.Client, plannable: dict[str, str]
) -> None:
    pid = plannable["pid"]
    doctor, stranger = as_(plannable, "doctor"), as_(plannable, "stranger")
    goal = clinician_goal("ignored", pid, plannable["role"], 6000, datetime.now(UTC).date())
    goal.pop("id")
    answer = http.post(f"{world.fhir}/Goal", json=goal, headers=doctor)
    assert answer.status_code == 201, answer.text
    assert http.post(f"{world.fhir}/Goal", json=goal, headers=stranger).status_code == 403
    # a review: a mitigation on the engine's DetectedIssue, nothing else changed
    issue = {"resourceType": "DetectedIssue", "status": "final",
             "patient": {"reference": f"Patient/{pid}"}, "detail": "red flag",
             "author": {"identifier": {"system": ENGINE, "value": "plan-engine-1"}}}  # fmt: skip
    issue_id = world.create(issue)
    url = f"{world.fhir}/DetectedIssue/{issue_id}"
    review = {**issue, "id": issue_id, "mitigation": [
        {"action": {"text": "called the patient"}, "date": "2026-12-07",
         "author": {"reference": f"PractitionerRole/{plannable['role']}"}}]}  # fmt: skip
    assert http.put(url, json=review, headers=stranger).status_code == 404
    answer = http.put(url, json=review, headers=doctor)
    assert answer.status_code == 200, answer.text
    refused(http.put(url, json={**review, "detail": "nothing to see"}, headers=doctor))
    # the engine's plan and its reasons stay the engine's
    made = engine_resources(http, world, pid)
    plan = made["CarePlan"]
    refused(http.put(f"{world.fhir}/CarePlan/{plan['id']}",
                     json={**plan, "status": "revoked"}, headers=doctor))  # fmt: skip
    # nobody but the server writes as the engine
    forged = {**goal, "expressedBy": {"identifier": {"system": ENGINE, "value": "plan-engine-9"}}}
    refused(http.post(f"{world.fhir}/Goal", json=forged, headers=doctor))


def test_the_table_in_the_docs_is_the_table_in_the_code() -> None:
    text = (Path(__file__).parents[2] / "docs" / "AUTH.md").read_text()
    section = text.split("## Write authority", 1)[1].split("\n## ", 1)[0]
    rows = set(re.findall(r"^\| `(\w+)` \| (\w+) \| ([a-z, ]*) \|", section, re.M))
    expected = {
        (r.resource_type, r.role, ", ".join(i for i in ("create", "update", "patch", "delete")
                                             if i in r.interactions) or "none")
        for r in TABLE
    }  # fmt: skip
    assert rows == expected

