"""The access decision: every resource type kind x interaction x scope kind (patient, user,
system; v1 and v2) answers Allow, Deny or Filter as specified (fhir_server.access.decision)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from itertools import product
from typing import Any

import pytest

from fhir_server.access.claims import Claims
from fhir_server.access.decision import (
    PERMISSIONS,
    Allow,
    Deny,
    Filter,
    compartment_patients,
    decide,
    matches_query,
)
from fhir_server.access.scopes import parse

P1, P2 = "p1", "p2"
CLINICIAN = "Practitioner/d1"
INSTANCE = ["read", "vread", "history-instance", "create", "update", "patch", "delete"]
WRITES = {"create", "update", "patch", "delete"}


class ConsentFor:
    """Consent policy for the tests: ``CLINICIAN`` may see ``P1`` only."""

    def __init__(self, grants: dict[str, set[str]]) -> None:
        self.grants = grants

    def permits(
        self, user: str, patient_id: str, resource: Mapping[str, Any] | None = None
    ) -> bool:
        return patient_id in self.grants.get(user, set())

    def patients(self, user: str, resource_type: str | None = None) -> Collection[str]:
        return self.grants.get(user, set())

    def addressees(self, user: str) -> Collection[str]:
        return {user}


CONSENT = ConsentFor({CLINICIAN: {P1}})


def alternatives(decision: object, rtype: str) -> set[frozenset[tuple[str, str]]]:
    """A Filter's alternatives for ``rtype``, order aside."""
    assert isinstance(decision, Filter), decision
    return {frozenset(alt) for alt in decision.alternatives(rtype)}


def token(kind: str, scope: str, **extra: Any) -> Claims:
    if kind == "patient":
        return Claims("app", parse(scope), "acct-p1", "patient", f"Patient/{P1}", P1, **extra)
    if kind == "user":
        return Claims("app", parse(scope), "acct-d1", "practitioner", CLINICIAN, **extra)
    if kind == "admin":
        return Claims("app", parse(scope), "acct-a", "admin", None, **extra)
    return Claims("backend", parse(scope), **extra)


def observation(patient: str, category: str = "survey") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"obs-{patient}",
        "status": "final",
        "code": {"text": "pain"},
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": category,
                    }
                ]
            }
        ],
        "subject": {"reference": f"Patient/{patient}"},
    }


RESOURCES: dict[str, dict[str, Any]] = {
    "own Observation": observation(P1),
    "other's Observation": observation(P2),
    "own Patient": {"resourceType": "Patient", "id": P1},
    "other Patient": {"resourceType": "Patient", "id": P2},
    "own Condition": {
        "resourceType": "Condition",
        "id": "c1",
        "subject": {"reference": f"Patient/{P1}"},
    },
    "other's QuestionnaireResponse": {
        "resourceType": "QuestionnaireResponse",
        "id": "qr2",
        "status": "completed",
        "subject": {"reference": f"Patient/{P2}"},
    },
    "Questionnaire": {"resourceType": "Questionnaire", "id": "q", "status": "active"},
    "Binary": {"resourceType": "Binary", "id": "b", "contentType": "text/plain"},
    "own Group": {
        "resourceType": "Group",
        "id": "g",
        "type": "person",
        "actual": True,
        "member": [{"entity": {"reference": f"Patient/{P1}"}}],
    },
    "own AuditEvent": {
        "resourceType": "AuditEvent",
        "id": "ae",
        "type": {"code": "rest"},
        "recorded": "2024-01-01T00:00:00Z",
        "agent": [{"requestor": True, "who": {"reference": f"Patient/{P1}"}}],
        "source": {"observer": {"display": "x"}},
        "entity": [{"what": {"reference": f"Patient/{P1}"}}],
    },
}
SHARED = {"Questionnaire"}
OWN = {"own Observation", "own Patient", "own Condition", "own Group", "own AuditEvent"}


def expected(kind: str, full: bool, name: str, interaction: str) -> int:
    """The specified answer as an HTTP-ish code: 200 allow, 403 refuse, 404 invisible."""
    resource = RESOURCES[name]
    rtype = resource["resourceType"]
    write = interaction in WRITES
    if not full and write:
        return 403  # SAL-40: read scopes never write
    if rtype == "AuditEvent":
        if interaction in ("update", "patch", "delete"):
            return 403  # append-only
        return 200 if kind == "system" else 403
    if kind == "system":
        return 200
    if kind == "patient":
        if rtype == "Group":
            return 403
        if rtype in SHARED:
            return 403 if write else 200
        if rtype == "Binary":
            return 403
        if interaction == "create":
            return 200 if name in OWN and rtype != "Patient" else 403
        return 200 if name in OWN else 404
    # user: consent lets the clinician see P1 only; non-patient data by scope alone
    if rtype in SHARED or rtype == "Binary":
        return 200
    return 200 if name in OWN else 404


SCOPE_TEXT = {
    ("v1", True): "{k}/*.*",
    ("v1", False): "{k}/*.read",
    ("v2", True): "{k}/*.cruds",
    ("v2", False): "{k}/*.rs",
}


def as_code(decision: object) -> int:
    if isinstance(decision, Allow):
        return 200
    assert isinstance(decision, Deny), decision
    return decision.status


@pytest.mark.parametrize(
    ("kind", "version", "full", "name", "interaction"),
    list(
        product(
            ["patient", "user", "system"], ["v1", "v2"], [True, False], sorted(RESOURCES), INSTANCE
        )
    ),
)
def test_instance_matrix(kind: str, version: str, full: bool, name: str, interaction: str) -> None:
    claims = token(kind, SCOPE_TEXT[(version, full)].format(k=kind))
    resource = RESOURCES[name]
    decision = decide(claims, interaction, resource["resourceType"], resource, consent=CONSENT)
    assert as_code(decision) == expected(kind, full, name, interaction)


@pytest.mark.parametrize("interaction", INSTANCE)
def test_no_scope_for_the_type_is_403(interaction: str) -> None:
    claims = token("patient", "patient/Condition.cruds")
    decision = decide(claims, interaction, "Observation", observation(P1))
    assert isinstance(decision, Deny) and decision.status == 403


def test_patient_scope_without_patient_context_is_refused() -> None:
    claims = Claims("app", parse("patient/*.rs"), "x", "practitioner", CLINICIAN, None)
    assert as_code(decide(claims, "read", "Observation", observation(P1))) == 403


def test_clinician_without_consent_sees_nothing() -> None:
    claims = token("user", "user/*.cruds")
    for name in OWN - {"own AuditEvent"}:
        resource = RESOURCES[name]
        decision = decide(claims, "read", resource["resourceType"], resource)  # no consent known
        assert as_code(decision) == 404, name
    search = decide(claims, "search-type", "Observation", [])
    assert isinstance(search, Filter) and search.admits_nothing()


def test_admin_is_not_confined_by_consent_but_by_scope() -> None:
    claims = token("admin", "user/*.rs")
    assert as_code(decide(claims, "read", "Observation", observation(P2))) == 200
    assert as_code(decide(claims, "read", "AuditEvent", RESOURCES["own AuditEvent"])) == 200
    assert as_code(decide(claims, "create", "Observation", observation(P2))) == 403


# -- searches --------------------------------------------------------------------------------------


@pytest.mark.parametrize("interaction", ["search-type", "history-type"])
def test_patient_search_is_confined_to_the_compartment(interaction: str) -> None:
    claims = token("patient", "patient/*.rs")
    decision = decide(claims, interaction, "Observation", [("code", "x")])
    # Each alternative also says no compartment parameter names another patient.
    only = (("performer:_only-patients", "Patient/p1"), ("subject:_only-patients", "Patient/p1"))
    assert alternatives(decision, "Observation") == {
        frozenset({("subject", "Patient/p1"), *only}),
        frozenset({("performer", "Patient/p1"), *only}),
    }
    assert decide(claims, interaction, "Patient", []) == Filter({"Patient": ((("_id", P1),),)})
    assert isinstance(decide(claims, interaction, "Questionnaire", []), Allow)
    assert as_code(decide(claims, interaction, "Binary", [])) == 403
    assert as_code(decide(claims, interaction, "Group", [])) == 403


def test_user_search_is_confined_to_consented_patients() -> None:
    consent = ConsentFor({CLINICIAN: {P1, "p3"}})
    claims = token("user", "user/*.rs")
    decision = decide(claims, "search-type", "Condition", [], consent=consent)
    refs = "Patient/p1,Patient/p3"
    only = (("asserter:_only-patients", refs), ("patient:_only-patients", refs))
    assert alternatives(decision, "Condition") == {
        frozenset({("patient", refs), *only}),
        frozenset({("asserter", refs), *only}),
    }
    assert isinstance(decide(claims, "search-type", "Questionnaire", [], consent=consent), Allow)


@pytest.mark.parametrize("version", ["system/*.read", "system/*.rs"])
def test_system_search_is_unconditional(version: str) -> None:
    claims = token("system", version)
    assert isinstance(decide(claims, "search-type", "Observation", []), Allow)
    assert isinstance(decide(claims, "export", "Observation", []), Allow)


def test_SAL_42_query_scopes_filter_searches_and_instances() -> None:
    claims = token("patient", "patient/Observation.rs?category=survey")
    decision = decide(claims, "search-type", "Observation", [])
    only = (("performer:_only-patients", "Patient/p1"), ("subject:_only-patients", "Patient/p1"))
    assert alternatives(decision, "Observation") == {
        frozenset({("category", "survey"), ("subject", "Patient/p1"), *only}),
        frozenset({("category", "survey"), ("performer", "Patient/p1"), *only}),
    }
    assert as_code(decide(claims, "read", "Observation", observation(P1, "survey"))) == 200
    assert as_code(decide(claims, "read", "Observation", observation(P1, "laboratory"))) == 404
    assert as_code(decide(claims, "read", "Observation", observation(P2, "survey"))) == 404


def test_two_query_scopes_are_alternatives() -> None:
    claims = token(
        "system", "system/Observation.rs?category=survey system/Observation.rs?category=exam"
    )
    decision = decide(claims, "search-type", "Observation", [])
    assert decision == Filter({"Observation": ((("category", "exam"),), (("category", "survey"),))})


def test_search_system_answers_per_type() -> None:
    claims = token("patient", "patient/*.rs")
    decision = decide(
        claims,
        "search-system",
        None,
        [],
        all_types=["Observation", "Patient", "Questionnaire", "Binary"],
    )
    assert isinstance(decision, Filter)
    assert decision.alternatives("Questionnaire") == ((),)
    assert decision.alternatives("Patient") == ((("_id", P1),),)
    assert decision.alternatives("Binary") == ()
    everything = decide(
        token("system", "system/*.rs"),
        "search-system",
        None,
        [],
        all_types=["Observation", "Patient"],
    )
    assert isinstance(everything, Allow)


# -- rules beyond scopes --------------------------------------------------------------------------


def test_patients_cannot_change_identifiers_or_security_labels() -> None:
    claims = token("patient", "patient/*.cruds")
    before = {"resourceType": "Patient", "id": P1, "identifier": [{"system": "s", "value": "1"}]}
    changed_id = {**before, "identifier": [{"system": "s", "value": "2"}]}
    labelled = {**before, "meta": {"security": [{"code": "R"}]}}
    renamed = {**before, "name": [{"family": "New"}]}
    assert as_code(decide(claims, "update", "Patient", changed_id, previous=before)) == 403
    assert as_code(decide(claims, "update", "Patient", labelled, previous=before)) == 403
    assert as_code(decide(claims, "update", "Patient", renamed, previous=before)) == 200
    obs = {**observation(P1), "meta": {"security": [{"code": "R"}]}}
    assert as_code(decide(claims, "create", "Observation", obs)) == 403


def test_unknown_interactions_fail_closed() -> None:
    assert as_code(decide(token("system", "system/*.*"), "operation", "Patient", {})) == 403
    assert set(PERMISSIONS) >= {"read", "search-type", "create", "update", "delete", "export"}


def test_compartment_membership_ignores_foreign_absolute_references() -> None:
    obs = {**observation(P1), "subject": {"reference": "https://elsewhere.example/fhir/Patient/p1"}}
    assert compartment_patients(obs) == frozenset()
    assert compartment_patients(observation(P1)) == {P1}


@pytest.mark.parametrize(
    ("query", "matches"),
    [
        ((("category", "survey"),), True),
        (
            (("category", "http://terminology.hl7.org/CodeSystem/observation-category|survey"),),
            True,
        ),
        ((("category", "http://other|survey"),), False),
        ((("category", "exam,survey"),), True),
        ((("subject", "Patient/p1"),), True),
        ((("subject", "Patient/p2"),), False),
        ((("status", "final"), ("category", "exam")), False),
        ((("_id", "obs-p1"),), True),
        ((("category:not", "exam"),), False),  # modifiers fail closed
        ((("date", "2024"),), False),  # unmatched kinds fail closed
    ],
)
def test_query_scope_matching(query: tuple, matches: bool) -> None:
    assert matches_query(observation(P1), query) is matches
