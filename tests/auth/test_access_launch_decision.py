"""The authorize step's question to the decision (decide_launch), and Task as a patient's
data, decided in pure code (fhir_server.access.decision)."""

from __future__ import annotations

from fhir_server.access.claims import Claims
from fhir_server.access.consent import grants
from fhir_server.access.decision import Allow, Deny, decide, decide_launch
from fhir_server.access.scopes import parse
from tests.auth.access_world import consent

NOW = 1_800_000_000_000_000  # 2027-01-15, after the Consents' dateTime
DOC = "Practitioner/d1"


def _grants(linked: list[str] | None) -> object:
    return grants(DOC, [consent("p1", DOC)], [DOC], NOW, linked)


def test_a_practitioner_is_given_only_a_patient_whose_consent_and_care_team_permit() -> None:
    assert isinstance(decide_launch("practitioner", DOC, "p1", _grants(["p1"])), Allow)
    # no CareTeam link (SELFBACK_CARE_TEAM_REQUIRED on): refused
    assert isinstance(decide_launch("practitioner", DOC, "p1", _grants([])), Deny)
    # the link is not asked for: the Consent decides
    assert isinstance(decide_launch("practitioner", DOC, "p1", _grants(None)), Allow)
    # no Consent from p2, or no Consent facts at all
    assert isinstance(decide_launch("practitioner", DOC, "p2", _grants(["p1", "p2"])), Deny)
    assert isinstance(decide_launch("practitioner", DOC, "p1", None), Deny)
    # another practitioner's facts never count
    assert isinstance(decide_launch("practitioner", "Practitioner/d2", "p1", _grants(None)), Deny)


def test_patients_and_admins_keep_their_launch_rules() -> None:
    assert isinstance(decide_launch("patient", "Patient/p1", "p1"), Allow)
    assert isinstance(decide_launch("patient", "Patient/p1", "p2"), Deny)
    assert isinstance(decide_launch("admin", None, "p2"), Allow)
    assert isinstance(decide_launch(None, None, "p1"), Deny)


def _task(patient: str) -> dict[str, object]:
    return {
        "resourceType": "Task",
        "id": "t1",
        "status": "requested",
        "intent": "order",
        "for": {"reference": f"Patient/{patient}"},
    }


def test_task_is_the_patients_data_read_but_never_written_by_a_patient_app() -> None:
    me = Claims("app", parse("patient/*.cruds"), "acct", "patient", "Patient/p1", "p1")
    assert isinstance(decide(me, "read", "Task", _task("p1")), Allow)
    refused = decide(me, "read", "Task", _task("p2"))
    assert isinstance(refused, Deny) and refused.status == 404
    for interaction in ("create", "update", "delete"):
        denied = decide(me, interaction, "Task", _task("p1"), previous=_task("p1"))
        assert isinstance(denied, Deny) and denied.status == 403, interaction
    doc = Claims("app", parse("user/*.rs"), "acct-d", "practitioner", DOC)
    assert isinstance(decide(doc, "read", "Task", _task("p1"), consent=_grants(["p1"])), Allow)
    assert isinstance(decide(doc, "read", "Task", _task("p2"), consent=_grants(["p1"])), Deny)
