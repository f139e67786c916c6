"""The Consent rules (fhir_server/access/consent.py), table-driven: which stored Consents let
a practitioner see a patient now. Pure; the HTTP behaviour is in test_auth_enforcement."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_server.access.consent import (
    care_team_patients,
    grants,
    named_parties,
    organizations_of,
    permitted_patients,
    reaches,
    roles_of,
    withdraws,
)
from fhir_server.config import Settings
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
    policy = grants(DOC, [consent("p1")], [DOC], NOW)
    assert policy.permits(DOC, "p1") and not policy.permits(DOC, "p2")
    assert not policy.permits("Practitioner/8", "p1")
    assert set(policy.patients(DOC)) == {"p1"} and not policy.patients("Practitioner/8")


# -- nested provisions (R4 consent.html, Consent.provision: exceptions to the base policy) --

RESOURCE_TYPES = "http://hl7.org/fhir/resource-types"


def klass(*types: str) -> list[dict[str, str]]:
    return [{"system": RESOURCE_TYPES, "code": t} for t in types]


def nested(base: dict[str, Any], *provisions: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``provisions`` as exceptions of its base provision."""
    return base | {"provision": base["provision"] | {"provision": list(provisions)}}


def observation(date: str = "2026-03-01", code: str = "72514-3") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": date,
    }


def response(authored: str | None = "2026-03-01T10:00:00Z") -> dict[str, Any]:
    qr: dict[str, Any] = {
        "resourceType": "QuestionnaireResponse",
        "id": "q1",
        "status": "completed",
        "subject": {"reference": "Patient/p1"},
    }
    if authored:
        qr["authored"] = authored
    return qr


PATIENT = {"resourceType": "Patient", "id": "p1"}
OBS_ONLY = consent() | {
    "provision": {
        "type": "permit",
        "actor": [{"reference": {"reference": DOC}}],
        "class": klass("Observation"),
    }
}
DENY_QR = nested(consent(), {"type": "deny", "class": klass("QuestionnaireResponse")})
BLANKET_DENY = consent(kind="deny", actor=None, performer="Patient/p1")
PERMIT_INSIDE_DENY = nested(
    BLANKET_DENY,
    {"type": "permit", "actor": [{"reference": {"reference": DOC}}], "class": klass("Observation")},
)
FIRST_QUARTER = nested(
    consent(kind="deny", actor=None, performer="Patient/p1"),
    {
        "type": "permit",
        "actor": [{"reference": {"reference": DOC}}],
        "dataPeriod": {"start": "2026-01-01", "end": "2026-03-31"},
    },
)
DENY_CODE = nested(
    consent(),
    {"type": "deny", "code": [{"coding": [{"system": "http://loinc.org", "code": "44249-1"}]}]},
)
DENY_OTHER_DOCTOR = nested(
    consent(), {"type": "deny", "actor": [{"reference": {"reference": "Practitioner/8"}}]}
)
DENY_THEN_PERMIT_BACK = nested(
    consent(),
    {
        "type": "deny",
        "class": klass("Observation", "QuestionnaireResponse"),
        "provision": [{"type": "permit", "class": klass("Observation")}],
    },
)
NESTED_PERIOD_OVER = nested(consent(), {"type": "deny", "period": {"end": "2026-05-01"}})
NESTED_PERIOD_NOW = nested(consent(), {"type": "deny", "period": {"start": "2026-05-01"}})
TWO_EXCEPTIONS_DISAGREE = nested(
    consent(kind="deny", actor=None, performer="Patient/p1"),
    {"type": "permit", "actor": [{"reference": {"reference": DOC}}]},
    {"type": "deny", "class": klass("Observation")},
)

# (rule, consents, resource, permitted)
PROVISION_CASES: list[tuple[str, list[dict[str, Any]], dict[str, Any], bool]] = [
    ("class Observation: an Observation is permitted", [OBS_ONLY], observation(), True),
    ("class Observation: a QuestionnaireResponse is not", [OBS_ONLY], response(), False),
    ("class Observation: the Patient record is not", [OBS_ONLY], PATIENT, False),
    ("a deny exception inside a permit: the excepted class", [DENY_QR], response(), False),
    ("a deny exception inside a permit: the rest", [DENY_QR], observation(), True),
    (
        "a permit exception inside a deny: the excepted class",
        [PERMIT_INSIDE_DENY],
        observation(),
        True,
    ),
    ("a permit exception inside a deny: the rest", [PERMIT_INSIDE_DENY], response(), False),
    ("dataPeriod: data inside it", [FIRST_QUARTER], observation("2026-03-01"), True),
    ("dataPeriod: data after it", [FIRST_QUARTER], observation("2026-04-02"), False),
    ("dataPeriod: data without a date fails closed", [FIRST_QUARTER], response(None), False),
    (
        "dataPeriod: the authored date of a response",
        [FIRST_QUARTER],
        response("2026-02-01T08:00:00Z"),
        True,
    ),
    (
        "code: a deny of a code found in the resource",
        [DENY_CODE],
        observation(code="44249-1"),
        False,
    ),
    ("code: other codes stay permitted", [DENY_CODE], observation(), True),
    (
        "a nested actor that is someone else does not apply",
        [DENY_OTHER_DOCTOR],
        observation(),
        True,
    ),
    (
        "the innermost provision decides (permit in deny in permit)",
        [DENY_THEN_PERMIT_BACK],
        observation(),
        True,
    ),
    ("the middle deny still holds beside it", [DENY_THEN_PERMIT_BACK], response(), False),
    ("a nested deny whose period is over", [NESTED_PERIOD_OVER], observation(), True),
    ("a nested deny in its period", [NESTED_PERIOD_NOW], observation(), False),
    ("two exceptions that disagree: deny wins", [TWO_EXCEPTIONS_DISAGREE], observation(), False),
    (
        "two exceptions: the permit where the deny does not apply",
        [TWO_EXCEPTIONS_DISAGREE],
        response(),
        True,
    ),
    (
        "a later Observation-only permit does not take back an earlier full one",
        [consent(), OBS_ONLY | {"dateTime": "2026-02-01"}],
        response(),
        True,
    ),
    (
        "a later Consent with a deny exception narrows an earlier full permit",
        [consent(), DENY_QR | {"dateTime": "2026-02-01"}],
        response(),
        False,
    ),
    (
        "a later blanket refusal outranks nested permits before it",
        [PERMIT_INSIDE_DENY, BLANKET_DENY | {"dateTime": "2026-02-01"}],
        observation(),
        False,
    ),
]


@pytest.mark.parametrize(
    ("rule", "consents", "resource", "permitted"),
    PROVISION_CASES,
    ids=[c[0] for c in PROVISION_CASES],
)
def test_provisions_decide_one_resource(
    rule: str, consents: list[dict[str, Any]], resource: dict[str, Any], permitted: bool
) -> None:
    assert grants(DOC, consents, [DOC, ORG], NOW).permits(DOC, "p1", resource) is permitted


# (rule, consents, type, searchable): a search cannot see codes or dates, so a type is
# searched only where every resource of it is permitted.
SEARCH_CASES: list[tuple[str, list[dict[str, Any]], str, bool]] = [
    ("class Observation: Observation searchable", [OBS_ONLY], "Observation", True),
    ("class Observation: QuestionnaireResponse not", [OBS_ONLY], "QuestionnaireResponse", False),
    ("class Observation: Patient not", [OBS_ONLY], "Patient", False),
    ("deny exception: the excepted class is left out", [DENY_QR], "QuestionnaireResponse", False),
    ("deny exception: other classes", [DENY_QR], "Goal", True),
    ("permit exception inside a deny", [PERMIT_INSIDE_DENY], "Observation", True),
    ("permit exception inside a deny: the rest", [PERMIT_INSIDE_DENY], "Goal", False),
    ("a dataPeriod depends on the data: left out", [FIRST_QUARTER], "Observation", False),
    ("a code exception depends on the data: left out", [DENY_CODE], "Observation", False),
    ("a full permit", [consent()], "Observation", True),
]


@pytest.mark.parametrize(
    ("rule", "consents", "rtype", "searchable"),
    SEARCH_CASES,
    ids=[c[0] for c in SEARCH_CASES],
)
def test_provisions_decide_a_search_per_type(
    rule: str, consents: list[dict[str, Any]], rtype: str, searchable: bool
) -> None:
    assert ("p1" in grants(DOC, consents, [DOC], NOW).patients(DOC, rtype)) is searchable
    assert ("p1" in permitted_patients(consents, [DOC], NOW, rtype)) is searchable


def test_a_resource_permitted_through_a_data_rule_is_read_but_not_searched() -> None:
    """FIRST_QUARTER: a read decides on the resource; a search of the type fails closed."""
    policy = grants(DOC, [FIRST_QUARTER], [DOC], NOW)
    assert policy.permits(DOC, "p1", observation("2026-01-15"))
    assert "p1" not in policy.patients(DOC, "Observation")


# -- the CareTeam link (SEC-02: "an active Consent plus a CareTeam link") ---------------------


def team(member: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "CareTeam",
        "status": "active",
        "subject": {"reference": "Patient/p1"},
        "participant": [{"member": {"reference": member}}],
    } | extra


ROLE = "PractitionerRole/r1"
MEMBERS = [DOC, ROLE, ORG]
TEAM_CASES = [
    ("the practitioner as member", [team(DOC)], {"p1"}),
    ("a PractitionerRole of theirs", [team(ROLE)], {"p1"}),
    ("their organization", [team(ORG)], {"p1"}),
    ("another practitioner", [team("Practitioner/8")], set()),
    ("an inactive team", [team(DOC, status="inactive")], set()),
    ("a proposed team", [team(DOC, status="proposed")], set()),
    ("a team whose period is over", [team(DOC, period={"end": "2026-01-01"})], set()),
    ("a team whose period holds", [team(DOC, period={"start": "2026-01-01"})], {"p1"}),
    (
        "a participant whose own period is over",
        [
            team(DOC)
            | {"participant": [{"member": {"reference": DOC}, "period": {"end": "2026-02-01"}}]}
        ],
        set(),
    ),
    ("a team of a group, not a patient", [team(DOC, subject={"reference": "Group/g"})], set()),
]


@pytest.mark.parametrize(("rule", "teams", "expected"), TEAM_CASES, ids=[c[0] for c in TEAM_CASES])
def test_care_team_links(rule: str, teams: list[dict[str, Any]], expected: set[str]) -> None:
    assert care_team_patients(teams, MEMBERS, NOW) == expected


def test_roles_of_are_the_active_practitioner_roles() -> None:
    roles = [
        {"id": "r1", "practitioner": {"reference": DOC}},
        {"id": "r2", "active": False, "practitioner": {"reference": DOC}},
        {"id": "r3", "practitioner": {"reference": "Practitioner/8"}},
    ]
    assert roles_of(roles, DOC) == {ROLE}


def test_consent_needs_the_care_team_link_when_asked() -> None:
    linked = grants(DOC, [consent("p1"), consent("p2")], [DOC], NOW, linked={"p1"})
    assert set(linked.patients(DOC, "Observation")) == {"p1"}
    assert linked.permits(DOC, "p1", observation()) and not linked.permits(DOC, "p2")
    consent_alone = grants(DOC, [consent("p1"), consent("p2")], [DOC], NOW, linked=None)
    assert set(consent_alone.patients(DOC, "Observation")) == {"p1", "p2"}


def test_the_care_team_setting_is_on_unless_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings.from_env(data_dir=None, secret_key=b"k").care_team_required is True
    monkeypatch.setenv("SELFBACK_CARE_TEAM_REQUIRED", "off")
    assert Settings.from_env(secret_key=b"k").care_team_required is False


# -- withdrawal (what revokes tokens) -----------------------------------------------------------

WITHDRAWAL_CASES = [
    ("made inactive", consent(status="inactive"), True),
    ("rejected", consent(status="rejected"), True),
    ("entered in error", consent(status="entered-in-error"), True),
    ("a deny", consent(kind="deny"), True),
    ("an active permit", consent(), False),
    ("a permit with a deny exception", DENY_QR, False),
    ("a draft", consent(status="draft"), False),
]


@pytest.mark.parametrize(
    ("rule", "version", "withdrawing"), WITHDRAWAL_CASES, ids=[c[0] for c in WITHDRAWAL_CASES]
)
def test_which_versions_withdraw(rule: str, version: dict[str, Any], withdrawing: bool) -> None:
    assert withdraws(version) is withdrawing


REACH_CASES = [
    ("a full permit", [consent()], True),
    ("an Observation-only permit", [OBS_ONLY], True),
    ("a data-period permit", [FIRST_QUARTER], True),
    ("withdrawn", [consent(), consent(status="inactive", when="2026-03-01")], False),
    ("denied later", [consent(), consent(kind="deny", when="2026-03-01")], False),
    ("nothing", [], False),
    ("only another practitioner", [consent(actor="Practitioner/8")], False),
]


@pytest.mark.parametrize(
    ("rule", "consents", "reached"), REACH_CASES, ids=[c[0] for c in REACH_CASES]
)
def test_what_a_practitioner_still_reaches(
    rule: str, consents: list[dict[str, Any]], reached: bool
) -> None:
    assert reaches(consents, [DOC], NOW) is reached


def test_named_parties_include_nested_actors() -> None:
    assert named_parties(PERMIT_INSIDE_DENY) == {"Patient/p1", DOC}
    assert named_parties(consent(organization=ORG)) == {DOC, ORG}
