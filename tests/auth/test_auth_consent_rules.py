"""The Consent rules (fhir_server/auth/consent.py), table-driven: which stored Consents let
a practitioner see a patient now. Pure; the HTTP behaviour is in test_auth_enforcement."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_server.auth.consent import ConsentGrants, organizations_of, permitted_patients
from fhir_server.search.dates import date_range

NOW = date_range("2026-06-01T12:00:00Z")[0]
DOC = "Practitioner/7"
ORG = "Organization/clinic"


def consent(
    patient: str = "p1",
    *,
    status: str = "active",
    kind: str | None = "permit",
    actor: str | None = DOC,
    when: str = "2026-01-01",
    period: dict[str, str] | None = None,
    performer: str | None = None,
    organization: str | None = None,
) -> dict[str, Any]:
    provision: dict[str, Any] = {}
    if kind is not None:
        provision["type"] = kind
    if actor is not None:
        provision["actor"] = [{"reference": {"reference": actor}}]
    if period is not None:
        provision["period"] = period
    c: dict[str, Any] = {
        "resourceType": "Consent",
        "status": status,
        "patient": {"reference": f"Patient/{patient}"},
        "dateTime": when,
        "provision": provision,
    }
    if performer:
        c["performer"] = [{"reference": performer}]
    if organization:
        c["organization"] = [{"reference": organization}]
    return c


CASES = [
    ("an active permit naming the practitioner", [consent()], {"p1"}),
    ("no provision type is a permit", [consent(kind=None)], {"p1"}),
    ("named as performer", [consent(actor=None, performer=DOC)], {"p1"}),
    ("named through the organization", [consent(actor=None, organization=ORG)], {"p1"}),
    ("the organization as actor", [consent(actor=ORG)], {"p1"}),
    ("another practitioner", [consent(actor="Practitioner/8")], set()),
    ("inactive", [consent(status="inactive")], set()),
    ("rejected", [consent(status="rejected")], set()),
    ("draft is not in force", [consent(status="draft")], set()),
    ("a deny", [consent(kind="deny")], set()),
    ("within the period", [consent(period={"start": "2026-01-01", "end": "2026-12-31"})], {"p1"}),
    ("after the period", [consent(period={"end": "2026-05-01"})], set()),
    ("before the period", [consent(period={"start": "2026-07-01"})], set()),
    (
        "a later deny supersedes",
        [consent(), consent(kind="deny", when="2026-02-01")],
        set(),
    ),
    (
        "an earlier deny is superseded",
        [consent(kind="deny", when="2025-01-01"), consent()],
        {"p1"},
    ),
    (
        "a later withdrawal supersedes",
        [consent(), consent(status="inactive", when="2026-03-01")],
        set(),
    ),
    (
        "a later blanket refusal by the patient (no care party named) supersedes",
        [consent(), consent(kind="deny", actor=None, performer="Patient/p1", when="2026-03-01")],
        set(),
    ),
    (
        "another practitioner's later deny does not",
        [consent(), consent(kind="deny", actor="Practitioner/8", when="2026-03-01")],
        {"p1"},
    ),
    (
        "entered-in-error counts for nothing",
        [consent(), consent(kind="deny", status="entered-in-error", when="2026-03-01")],
        {"p1"},
    ),
    ("two patients", [consent("p1"), consent("p2")], {"p1", "p2"}),
    ("an unreadable period permits nothing", [consent(period={"end": "soon"})], set()),
]


@pytest.mark.parametrize(("rule", "consents", "expected"), CASES, ids=[c[0] for c in CASES])
def test_consent_rules(rule: str, consents: list[dict[str, Any]], expected: set[str]) -> None:
    assert permitted_patients(consents, [DOC, ORG], NOW) == expected


def test_organizations_through_active_practitioner_roles() -> None:
    roles = [
        {"practitioner": {"reference": DOC}, "organization": {"reference": ORG}},
        {
            "active": False,
            "practitioner": {"reference": DOC},
            "organization": {"reference": "Organization/old"},
        },
        {"practitioner": {"reference": "Practitioner/8"}, "organization": {"reference": "O/x"}},
    ]
    assert organizations_of(roles, DOC) == {ORG}


def test_grants_answer_only_for_their_user() -> None:
    grants = ConsentGrants(DOC, frozenset({"p1"}))
    assert grants.permits(DOC, "p1") and not grants.permits(DOC, "p2")
    assert not grants.permits("Practitioner/8", "p1")
    assert set(grants.patients(DOC)) == {"p1"} and not grants.patients("Practitioner/8")
