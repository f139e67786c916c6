"""A red flag reported by the patient app itself, with a SMART patient token (issue 11,
item 1): the check-in is the patient's own write; the outbox worker plans; the plan is on
hold with the safety message in English and Danish, readable by the patient, and the
clinician's Flag, DetectedIssue and Communication are tagged safety-alert.

The generated coverage of every answer path is tests/integration/test_red_flag_coverage.py
(admin writes on an unauthenticated loopback server); this test shows the same loop under
``SELFBACK_AUTH=smart`` for one emergency and one urgent answer.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest

from plan_engine import codes
from plan_engine.config import load_rules
from tests.auth.smart_app import bearer
from tests.integration.test_planning_server import today, wait_for
from tests.planning.enrolment import enrolment, transaction, weekly_response

# The smart server has its own database: run in the PostgreSQL pass too (-m db).
pytestmark = pytest.mark.db

TAG = {"system": codes.SECURITY_TAG, "code": codes.SAFETY_ALERT_TAG}


@pytest.mark.parametrize(
    ("item", "rule", "urgency"),
    [("rf-saddle-numbness", "RF-SADDLE-NUMBNESS", "emergency"), ("rf-fever", "RF-FEVER", "urgent")],
)
def test_patient_reported_red_flag_stops_the_plan_and_alerts(
    world: Any, item: str, rule: str, urgency: str
) -> None:
    fhir, admin = world.fhir, world.admin()
    pid = f"rfp-{uuid.uuid4().hex[:10]}"
    start = today() - timedelta(days=7)
    answer = httpx.post(
        f"{fhir}/", json=transaction(enrolment(pid, start, today())), headers=admin, timeout=60
    )
    assert answer.status_code == 200, answer.text

    def plans() -> dict[str, dict[str, Any]]:
        got = httpx.get(
            f"{fhir}/CarePlan",
            params={"based-on": f"CarePlan/{pid}-programme"},
            headers=admin,
            timeout=60,
        ).json()
        return {e["resource"]["period"]["start"]: e["resource"] for e in got.get("entry", [])}

    wait_for(lambda: plans().get(today().isoformat()), "this week's plan", 120)

    patient = bearer(
        world.mint("patient/*.cruds", role="patient", patient=pid, fhir_user=f"Patient/{pid}")
    )
    response = weekly_response("x", pid, today(), pain=5, red_flags={item: True})
    response.pop("id")
    posted = httpx.post(f"{fhir}/QuestionnaireResponse", json=response, headers=patient, timeout=60)
    assert posted.status_code == 201, posted.text
    source = f"QuestionnaireResponse/{posted.json()['id']}"

    nxt = (today() + timedelta(days=7)).isoformat()
    held = wait_for(lambda: plans().get(nxt), "next week's plan", 120)
    assert held["status"] == "on-hold"

    # The patient reads its own plan and the safety message in both languages.
    mine = httpx.get(f"{fhir}/CarePlan/{held['id']}", headers=patient, timeout=60)
    assert mine.status_code == 200, mine.text
    detail = mine.json()["activity"][0]["detail"]
    texts = dict(getattr(load_rules().patient_messages, urgency))
    assert detail["description"] == texts["en"]
    translation = detail["_description"]["extension"][0]["extension"]
    assert {"url": "content", "valueString": texts["da"]} in translation

    def safety(rtype: str, param: str) -> list[dict[str, Any]]:
        got = httpx.get(
            f"{fhir}/{rtype}", params={param: f"Patient/{pid}"}, headers=admin, timeout=60
        ).json()
        return [e["resource"] for e in got.get("entry", [])]

    (flag,) = safety("Flag", "subject")
    (issue,) = safety("DetectedIssue", "patient")
    (message,) = safety("Communication", "subject")
    for resource in (flag, issue, message):
        assert TAG in resource["meta"]["tag"]
    assert {"system": codes.PLAN_RULE, "code": rule} in issue["code"]["coding"]
    assert {"reference": source} in issue["evidence"][0]["detail"]
    assert message["priority"] == codes.URGENCY_PRIORITY[urgency]
    assert message["recipient"] == [{"reference": f"PractitionerRole/{pid}-physio"}]
