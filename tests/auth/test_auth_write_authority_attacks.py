"""Write authority by role (issue 10 item 4; docs/AUTH.md "Write authority"): the attacks
of the security review, over HTTP with real tokens against the real server, on SQLite and
PostgreSQL (beside tests/auth/test_write_authority.py, which tests the table's rules).

The attacks a security review made (a patient writing into another patient's record,
lifting its own stop-and-refer hold, setting itself a clinician's goal, deleting a Flag,
closing a clinician's message, revoking its programme) are refused with a 403 naming the
rule; what a patient reports, a clinician's review and override with Consent, and an
alert owner's acknowledgement go through. A table-driven case runs every role x type x
create/update/delete of the declared table and counts forbidden writes that succeeded:
there must be none. Patient/{id}/$plan-week works for the patient and a consented
clinician, and the plan's GuidanceResponse is readable by the patient.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest

from plan_engine import codes
from tests.auth.access_world import CATEGORY, World, body_for, care_team, consent
from tests.auth.smart_app import bearer
from tests.planning.enrolment import enrolment, step_observation, transaction

pytestmark = pytest.mark.db

ENGINE_DEVICE = {
    "identifier": {"system": codes.ENGINE_DEVICE_IDENTIFIER, "value": "plan-engine-test"},
    "display": "selfback plan_engine",
}
SAFETY_TAG = {"system": codes.SECURITY_TAG, "code": codes.SAFETY_ALERT_TAG}
PROGRAMME = {
    "coding": [
        {"system": "http://selfback.example.org/fhir/CodeSystem/careplan-kind", "code": "programme"}
    ]
}


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=60) as client:
        yield client


class Actors:
    """Real tokens for every role the table names, minted into the server's token store."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.patient_a = bearer(
            world.mint(
                "patient/*.cruds", role="patient", patient=world.a, fhir_user=f"Patient/{world.a}"
            )
        )
        self.patient_b = bearer(
            world.mint(
                "patient/*.cruds", role="patient", patient=world.b, fhir_user=f"Patient/{world.b}"
            )
        )
        self.clinician = bearer(
            world.mint(
                "user/*.cruds", role="practitioner", fhir_user=f"Practitioner/{world.consented}"
            )
        )
        self.stranger = bearer(
            world.mint(
                "user/*.cruds", role="practitioner", fhir_user=f"Practitioner/{world.stranger}"
            )
        )
        self.admin = world.admin()


@pytest.fixture(scope="module")
def actors(world: World) -> Actors:
    return Actors(world)


def ref(rtype: str, id: str) -> dict[str, str]:
    return {"reference": f"{rtype}/{id}"}


def body(kind: str, patient: str, world: World) -> dict[str, Any]:
    """A valid resource of ``kind`` about ``patient`` (kinds name who wrote it)."""
    me = ref("Patient", patient)
    clinician = ref("Practitioner", world.consented)
    if kind == "QuestionnaireResponse":
        return body_for("QuestionnaireResponse", patient)
    if kind == "Observation-steps":
        obs = step_observation("x", patient, date(2026, 3, 2), 5200)
        obs.pop("id")
        return obs
    if kind == "Observation-score":
        score = body_for("Observation", patient)  # a score: the server's, from the answers
        return score | {"category": [{"coding": [{"system": CATEGORY, "code": "survey"}]}]}
    if kind == "Consent":
        return body_for("Consent", patient)
    if kind == "Communication-reply":
        return {
            "resourceType": "Communication",
            "status": "completed",
            "subject": me,
            "sender": me,
            "recipient": [clinician],
            "payload": [{"contentString": "Thank you, I will"}],
        }
    if kind == "Communication-clinician":
        return {
            "resourceType": "Communication",
            "status": "in-progress",
            "subject": me,
            "sender": clinician,
            "recipient": [me],
            "payload": [{"contentString": "Please call the clinic"}],
        }
    if kind == "Goal-patient":
        return body_for("Goal", patient) | {"expressedBy": me}
    if kind == "Goal-clinician":
        return step_goal(patient, clinician, 8000)  # within the override bounds
    if kind == "CarePlan":
        return {
            "resourceType": "CarePlan",
            "status": "active",
            "intent": "plan",
            "category": [PROGRAMME],
            "subject": me,
        }
    if kind == "Flag":
        return {
            "resourceType": "Flag",
            "status": "active",
            "code": {"text": "Red flag reported"},
            "subject": me,
            "author": ENGINE_DEVICE,
        }
    if kind == "DetectedIssue":
        return engine_issue(patient)
    if kind == "Task":
        return {"resourceType": "Task", "status": "requested", "intent": "order", "for": me}
    if kind == "Provenance":
        return {
            "resourceType": "Provenance",
            "target": [me],
            "recorded": "2026-03-02T00:00:00Z",
            "agent": [{"who": ENGINE_DEVICE}],
        }
    if kind == "GuidanceResponse":
        return {
            "resourceType": "GuidanceResponse",
            "status": "success",
            "moduleUri": "http://selfback.example.org/fhir/PlanDefinition/weekly",
            "subject": me,
            "performer": ENGINE_DEVICE,
        }
    if kind == "AuditEvent":
        return body_for("AuditEvent", patient)
    raise ValueError(kind)


def step_goal(patient: str, by: dict[str, str], steps: int) -> dict[str, Any]:
    return {
        "resourceType": "Goal",
        "lifecycleStatus": "active",
        "description": {"text": f"{steps} steps a day"},
        "subject": ref("Patient", patient),
        "startDate": "2026-03-02",
        "expressedBy": by,
        "target": [
            {
                "measure": {"coding": [{"system": "http://loinc.org", "code": "41950-7"}]},
                "detailQuantity": {
                    "value": steps,
                    "unit": "steps/day",
                    "system": "http://unitsofmeasure.org",
                    "code": "/d",
                },
            }
        ],
    }


def engine_issue(patient: str) -> dict[str, Any]:
    """The engine's stop-and-refer DetectedIssue (docs/PLAN_ENGINE.md "Output")."""
    return {
        "resourceType": "DetectedIssue",
        "status": "final",
        "severity": "high",
        "patient": ref("Patient", patient),
        "identifiedDateTime": "2026-03-02",
        "author": ENGINE_DEVICE,
        "detail": "Saddle numbness reported: stop and refer",
    }


def stored(world: World, resource: dict[str, Any]) -> dict[str, Any]:
    """Create ``resource`` with the set-up (system) client; the stored version."""
    answer = httpx.post(
        f"{world.fhir}/{resource['resourceType']}", json=resource, headers=world.admin()
    )
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def admin_read(world: World, rtype: str, id: str) -> httpx.Response:
    return httpx.get(f"{world.fhir}/{rtype}/{id}", headers=world.admin())


def refused_by_rule(answer: httpx.Response, rule: str = "write-authority") -> None:
    assert answer.status_code == 403, answer.text
    outcome = answer.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert rule in outcome["issue"][0]["diagnostics"], outcome


def without_meta(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k != "meta"}


# -- the attacks of the security review ---------------------------------------------------------


def test_a_patient_cannot_write_into_another_patients_record(
    world: World, actors: Actors, http: httpx.Client
) -> None:
    mixed = body("Observation-steps", world.a, world) | {"performer": [ref("Patient", world.b)]}
    answer = http.post(f"{world.fhir}/Observation", json=mixed, headers=actors.patient_a)
    assert answer.status_code == 403, answer.text
    # Anywhere in the resource: basedOn, partOf, a contained resource's reference.
    for extra in (
        {"partOf": [ref("Patient", world.b)]},
        {"focus": [{"reference": f"{world.fhir}/Patient/{world.b}"}]},
        {
            "contained": [
                {
                    "resourceType": "Observation",
                    "id": "c1",
                    "status": "final",
                    "code": {"text": "x"},
                    "subject": ref("Patient", world.b),
                }
            ],
            "hasMember": [{"reference": "#c1"}],
        },
    ):
        answer = http.post(
            f"{world.fhir}/Observation",
            json=body("Observation-steps", world.a, world) | extra,
            headers=actors.patient_a,
        )
        refused_by_rule(answer)
        assert "another patient" in answer.json()["issue"][0]["diagnostics"]


def test_the_other_patient_cannot_change_or_delete_a_resource_naming_both(
    world: World, actors: Actors, http: httpx.Client
) -> None:
    mixed = stored(
        world, body("Observation-steps", world.a, world) | {"performer": [ref("Patient", world.b)]}
    )
    url = f"{world.fhir}/Observation/{mixed['id']}"
    changed = without_meta(mixed) | {"valueQuantity": {**mixed["valueQuantity"], "value": 1}}
    for headers in (actors.patient_b, actors.patient_a):
        assert http.put(url, json=changed, headers=headers).status_code in (403, 404)
        http.delete(url, headers=headers)  # 204 as for a missing one, or 403: nothing written
    after = admin_read(world, "Observation", mixed["id"])
    assert after.status_code == 200
    assert after.json()["meta"]["versionId"] == mixed["meta"]["versionId"]


def test_a_patient_cannot_lift_its_own_stop_by_reviewing_the_detected_issue(
    world: World, actors: Actors, http: httpx.Client
) -> None:
    issue = stored(world, engine_issue(world.a))
    review = without_meta(issue) | {
        "mitigation": [
            {
                "action": {"text": "Reviewed: safe to continue"},
                "date": "2026-03-03",
                "author": ref("Patient", world.a),
            }
        ]
    }
    url = f"{world.fhir}/DetectedIssue/{issue['id']}"
    refused_by_rule(http.put(url, json=review, headers=actors.patient_a))
    patch = [{"op": "add", "path": "/mitigation", "value": review["mitigation"]}]
    refused_by_rule(
        http.patch(
            url,
            content=orjson.dumps(patch),
            headers={**actors.patient_a, "Content-Type": "application/json-patch+json"},
        )
    )
    assert "mitigation" not in admin_read(world, "DetectedIssue", issue["id"]).json()


def test_a_patient_cannot_set_itself_a_clinicians_goal(
    world: World, actors: Actors, http: httpx.Client
) -> None:
    goal = step_goal(world.a, ref("Practitioner", world.consented), 25000)
    refused_by_rule(http.post(f"{world.fhir}/Goal", json=goal, headers=actors.patient_a))
    unsigned = {k: v for k, v in goal.items() if k != "expressedBy"}
    refused_by_rule(http.post(f"{world.fhir}/Goal", json=unsigned, headers=actors.patient_a))


def test_a_patient_cannot_delete_a_flag_close_a_clinicians_message_or_revoke_its_programme(
    world: World, actors: Actors, http: httpx.Client
) -> None:
    flag = stored(world, body("Flag", world.a, world))
    answer = http.delete(f"{world.fhir}/Flag/{flag['id']}", headers=actors.patient_a)
    refused_by_rule(answer)
    assert "a patient may not delete Flag" in answer.json()["issue"][0]["diagnostics"]
    assert admin_read(world, "Flag", flag["id"]).status_code == 200

    message = stored(world, body("Communication-clinician", world.a, world))
    done = without_meta(message) | {"status": "completed"}
    refused_by_rule(
        http.put(f"{world.fhir}/Communication/{message['id']}", json=done, headers=actors.patient_a)
    )
    programme = stored(world, body("CarePlan", world.a, world))
    revoked = without_meta(programme) | {"status": "revoked"}
    refused_by_rule(
        http.put(f"{world.fhir}/CarePlan/{programme['id']}", json=revoked, headers=actors.patient_a)
    )
    # Conditional forms too (http.html#cond-update, #cdelete).
    refused_by_rule(
        http.put(
            f"{world.fhir}/CarePlan",
            params={"_id": programme["id"]},
            json=revoked,
            headers=actors.patient_a,
        )
    )
    refused_by_rule(
        http.delete(f"{world.fhir}/Flag", params={"_id": flag["id"]}, headers=actors.patient_a)
    )
    assert admin_read(world, "CarePlan", programme["id"]).json()["status"] == "active"
    assert admin_read(world, "Flag", flag["id"]).status_code == 200


@pytest.mark.parametrize(
    "kind", ["Task", "Provenance", "GuidanceResponse", "AuditEvent", "Flag", "DetectedIssue"]
)
def test_a_patient_cannot_write_clinical_or_safety_records(
    world: World, actors: Actors, http: httpx.Client, kind: str
) -> None:
    resource = body(kind, world.a, world)
    answer = http.post(
        f"{world.fhir}/{resource['resourceType']}", json=resource, headers=actors.patient_a
    )
    assert answer.status_code == 403, answer.text


def test_a_refused_entry_rolls_back_the_whole_transaction(
    world: World, actors: Actors, http: httpx.Client
) -> None:
    tag = f"tx-{uuid.uuid4().hex[:8]}"
    response = body("QuestionnaireResponse", world.a, world) | {
        "identifier": {"system": "urn:test", "value": tag}
    }
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": r, "request": {"method": "POST", "url": r["resourceType"]}}
            for r in (response, body("Flag", world.a, world))
        ],
    }
    refused_by_rule(http.post(world.fhir, json=bundle, headers=actors.patient_a))
    found = http.get(
        f"{world.fhir}/QuestionnaireResponse",
        params={"identifier": f"urn:test|{tag}"},
        headers=actors.admin,
    ).json()
    assert not found.get("entry")  # the allowed entry was rolled back too
    # In a batch, the refused entry alone fails.
    bundle["type"] = "batch"
    answer = http.post(world.fhir, json=bundle, headers=actors.patient_a)
    assert answer.status_code == 200, answer.text
    statuses = [e["response"]["status"].split()[0] for e in answer.json()["entry"]]
    assert statuses == ["201", "403"]


# -- what is allowed ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["QuestionnaireResponse", "Observation-steps", "Consent"])
def test_a_patient_writes_what_it_reports(
    world: World, actors: Actors, http: httpx.Client, kind: str
) -> None:
    resource = body(kind, world.a, world)
    url = f"{world.fhir}/{resource['resourceType']}"
    answer = http.post(url, json=resource, headers=actors.patient_a)
    assert answer.status_code == 201, answer.text
    made = answer.json()
    changed = without_meta(made) | {"language": "en"}
    assert (
        http.put(f"{url}/{made['id']}", json=changed, headers=actors.patient_a).status_code == 200
    )


def test_a_patient_replies_to_a_message_and_reports_a_read(
    world: World, actors: Actors, http: httpx.Client
) -> None:
    message = stored(world, body("Communication-clinician", world.a, world))
    reply = body("Communication-reply", world.a, world) | {
        "inResponseTo": [ref("Communication", message["id"])]
    }
    answer = http.post(f"{world.fhir}/Communication", json=reply, headers=actors.patient_a)
    assert answer.status_code == 201, answer.text
    read_report = {
        "resourceType": "Communication",
        "status": "completed",
        "instantiatesCanonical": [
            "http://selfback.example.org/fhir/ActivityDefinition/edu-pain-1|1.0.0"
        ],
        "subject": ref("Patient", world.a),
        "sender": ref("Patient", world.a),
        "received": "2026-03-03T10:00:00Z",
    }
    answer = http.post(f"{world.fhir}/Communication", json=read_report, headers=actors.patient_a)
    assert answer.status_code == 201, answer.text
    # Replying as someone else, or into B's record, is not a reply.
    forged = reply | {"sender": ref("Practitioner", world.consented)}
    refused_by_rule(http.post(f"{world.fhir}/Communication", json=forged, headers=actors.patient_a))


def test_a_clinician_reviews_and_overrides_only_with_consent(
    world: World, actors: Actors, http: httpx.Client
) -> None:
    issue = stored(world, engine_issue(world.a))
    review = without_meta(issue) | {
        "mitigation": [
            {
                "action": {"text": "Reviewed by phone: no cauda equina signs"},
                "date": "2026-03-03",
                "author": ref("Practitioner", world.consented),
            }
        ]
    }
    url = f"{world.fhir}/DetectedIssue/{issue['id']}"
    # Without Consent: the issue is not even visible; nothing is written.
    assert http.put(url, json=review, headers=actors.stranger).status_code == 404
    goal = step_goal(world.a, ref("Practitioner", world.stranger), 6000)
    assert http.post(f"{world.fhir}/Goal", json=goal, headers=actors.stranger).status_code == 403
    task = body("Task", world.a, world)
    assert http.post(f"{world.fhir}/Task", json=task, headers=actors.stranger).status_code == 403
    # With Consent: the review and the override go through ...
    answer = http.put(url, json=review, headers=actors.clinician)
    assert answer.status_code == 200, answer.text
    goal = step_goal(world.a, ref("Practitioner", world.consented), 6000)
    assert http.post(f"{world.fhir}/Goal", json=goal, headers=actors.clinician).status_code == 201
    assert http.post(f"{world.fhir}/Task", json=task, headers=actors.clinician).status_code == 201
    # ... but the engine's own findings are not rewritten under cover of a review.
    rewritten = without_meta(answer.json()) | {"status": "cancelled"}
    refused_by_rule(http.put(url, json=rewritten, headers=actors.clinician))
    flag = stored(world, body("Flag", world.a, world))
    refused_by_rule(http.delete(f"{world.fhir}/Flag/{flag['id']}", headers=actors.clinician))


def test_the_owner_of_a_safety_alert_task_acknowledges_it_without_consent(
    world: World, actors: Actors, http: httpx.Client
) -> None:
    task = stored(
        world,
        body("Task", world.a, world)
        | {
            "meta": {"tag": [SAFETY_TAG]},
            "priority": "stat",
            "owner": ref("Practitioner", world.stranger),
            "description": "Saddle numbness reported",
        },
    )
    url = f"{world.fhir}/Task/{task['id']}"
    acknowledged = without_meta(task) | {
        "meta": {"tag": [SAFETY_TAG]},
        "status": "accepted",
        "businessStatus": {"text": "acknowledged"},
        "note": [{"text": "Called the patient"}],
    }
    answer = http.put(url, json=acknowledged, headers=actors.stranger)
    assert answer.status_code == 200, answer.text
    more = without_meta(answer.json()) | {"meta": {"tag": [SAFETY_TAG]}, "description": "nothing"}
    refused_by_rule(http.put(url, json=more, headers=actors.stranger))
    assert http.delete(url, headers=actors.stranger).status_code in (204, 403, 404)
    still = admin_read(world, "Task", task["id"])  # not deleted, only acknowledged
    assert still.status_code == 200 and still.json()["status"] == "accepted"


# -- the table, role x type x action: 0 forbidden writes -----------------------------------------

# The issue's list, restated independently of the module: what each role may do.
PATIENT_KINDS_ALLOWED = {
    "QuestionnaireResponse": {"create", "update"},
    "Observation-steps": {"create", "update", "delete"},
    "Consent": {"create", "update", "delete"},
    "Communication-reply": {"create", "update"},
}
KINDS = (
    "QuestionnaireResponse",
    "Observation-steps",
    "Observation-score",
    "Consent",
    "Communication-reply",
    "Communication-clinician",
    "Goal-patient",
    "Goal-clinician",
    "CarePlan",
    "Flag",
    "DetectedIssue",
    "Task",
    "Provenance",
    "GuidanceResponse",
    "AuditEvent",
)
ENGINE_KINDS = {"Flag", "DetectedIssue", "Provenance", "GuidanceResponse"}
ACTIONS = ("create", "update", "delete")


def expected(role: str, kind: str, action: str) -> bool:
    if role == "patient":
        return action in PATIENT_KINDS_ALLOWED.get(kind, set())
    if role == "stranger":  # a clinician without Consent writes nothing of A's
        return False
    # a consented clinician: reviews, overrides, messages and referrals (never deleted);
    # what the patient reports as the scopes say; never the engine's (nor a forged one)
    # and never the audit trail
    if kind in ENGINE_KINDS or kind in ("AuditEvent", "Goal-patient"):
        return False
    if kind in (
        "Task",
        "Goal-clinician",
        "CarePlan",
        "Communication-reply",
        "Communication-clinician",
    ):
        return action != "delete"
    return True


def test_every_role_type_and_action_of_the_table(
    world: World, actors: Actors, http: httpx.Client
) -> None:
    tokens = {
        "patient": actors.patient_a,
        "clinician": actors.clinician,
        "stranger": actors.stranger,
    }
    forbidden_written: list[str] = []
    refused_allowed: list[str] = []
    for role, headers in tokens.items():
        for kind in KINDS:
            for action in ACTIONS:
                resource = body(kind, world.a, world)
                rtype = resource["resourceType"]
                if action == "create":
                    answer = http.post(f"{world.fhir}/{rtype}", json=resource, headers=headers)
                    ok = answer.status_code == 201
                else:
                    target = stored(world, resource)
                    url = f"{world.fhir}/{rtype}/{target['id']}"
                    if action == "update":
                        answer = http.put(
                            url, json=without_meta(target) | {"language": "en"}, headers=headers
                        )
                        ok = answer.status_code == 200
                    else:
                        answer = http.delete(url, headers=headers)
                        ok = answer.status_code == 204 and (
                            admin_read(world, rtype, target["id"]).status_code == 410
                        )
                    after = admin_read(world, rtype, target["id"])
                    if not ok:  # a refusal wrote nothing
                        assert after.status_code == 200
                        assert after.json()["meta"]["versionId"] == target["meta"]["versionId"]
                assert answer.status_code < 500, answer.text
                case = f"{role} {action} {kind}: {answer.status_code}"
                if ok and not expected(role, kind, action):
                    forbidden_written.append(case)
                if not ok and expected(role, kind, action):
                    refused_allowed.append(case)
    assert forbidden_written == [], forbidden_written
    assert refused_allowed == [], refused_allowed


# -- $plan-week for the patient and the clinician; the explanation is the patient's to read -------


def today() -> date:
    return datetime.now(UTC).date()


@pytest.fixture(scope="module")
def enrolled(world: World, actors: Actors) -> dict[str, Any]:
    """A patient enrolled a week ago (planned by the worker), consented to the clinician."""
    pid = f"pt-{uuid.uuid4().hex[:10]}"
    start = today() - timedelta(days=7)
    answer = httpx.post(
        world.fhir, json=transaction(enrolment(pid, start, today())), headers=world.admin()
    )
    assert answer.status_code == 200, answer.text
    world.create(consent(pid, f"Practitioner/{world.consented}"))
    world.create(care_team(pid, f"Practitioner/{world.consented}"))
    token = world.mint("patient/*.cruds", role="patient", patient=pid, fhir_user=f"Patient/{pid}")
    return {"id": pid, "start": start, "headers": bearer(token)}


def _week_plan(bundle: dict[str, Any]) -> dict[str, Any]:
    return next(
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "CarePlan"
    )


def test_plan_week_for_the_patient_itself_and_its_explanation(
    world: World, actors: Actors, http: httpx.Client, enrolled: dict[str, Any]
) -> None:
    pid, headers = enrolled["id"], enrolled["headers"]
    next_week = (today() + timedelta(days=7)).isoformat()
    answer = http.post(
        f"{world.fhir}/Patient/{pid}/$plan-week",
        json={
            "resourceType": "Parameters",
            "parameter": [{"name": "asOf", "valueDate": next_week}],
        },
        headers=headers,
    )
    assert answer.status_code == 200, answer.text
    plan = _week_plan(answer.json())
    assert plan["period"]["start"] == next_week
    guidance = [
        e["resource"]
        for e in answer.json()["entry"]
        if e["resource"]["resourceType"] == "GuidanceResponse"
    ]
    assert guidance
    # The explanation is the patient's to read, by id and by search; not another's.
    gid = guidance[0]["id"]
    read = http.get(f"{world.fhir}/GuidanceResponse/{gid}", headers=headers)
    assert read.status_code == 200, read.text
    found = http.get(f"{world.fhir}/GuidanceResponse", headers=headers).json()
    assert gid in {e["resource"]["id"] for e in found.get("entry", [])}
    assert (
        http.get(f"{world.fhir}/GuidanceResponse/{gid}", headers=actors.patient_b).status_code
        == 404
    )
    # What the engine wrote stays read-only to the patient who asked for it.
    closed = without_meta(plan) | {"status": "revoked"}
    refused_by_rule(http.put(f"{world.fhir}/CarePlan/{plan['id']}", json=closed, headers=headers))


def test_plan_week_for_a_reachable_patient_and_403_otherwise(
    world: World, actors: Actors, http: httpx.Client, enrolled: dict[str, Any]
) -> None:
    pid = enrolled["id"]
    week_after = (today() + timedelta(days=14)).isoformat()
    parameters = {
        "resourceType": "Parameters",
        "parameter": [{"name": "asOf", "valueDate": week_after}],
    }
    url = f"{world.fhir}/Patient/{pid}/$plan-week"
    answer = http.post(url, json=parameters, headers=actors.clinician)
    assert answer.status_code == 200, answer.text
    assert _week_plan(answer.json())["period"]["start"] == week_after
    # The clinician reads the explanation of a patient who consented.
    gid = next(
        e["resource"]["id"]
        for e in answer.json()["entry"]
        if e["resource"]["resourceType"] == "GuidanceResponse"
    )
    assert (
        http.get(f"{world.fhir}/GuidanceResponse/{gid}", headers=actors.clinician).status_code
        == 200
    )
    assert (
        http.get(f"{world.fhir}/GuidanceResponse/{gid}", headers=actors.stranger).status_code == 404
    )
    # Without Consent, or for someone else: refused, and the same answer for an id that
    # does not exist (nothing tells which patients exist).
    for headers in (actors.stranger, actors.patient_a):
        answers = {
            http.post(
                f"{world.fhir}/Patient/{target}/$plan-week", json=parameters, headers=headers
            ).status_code
            for target in (pid, "nobody-here")
        }
        assert len(answers) == 1 and answers <= {403, 404}, answers
