"""A small world for the enforcement tests: two patients (A and B) with data of the
representative types, shared definitions, and tokens for every scope kind.

Data is written over HTTP with the set-up client's ``system/*.cruds`` token. Tokens for
the matrix are minted straight into the token store (a grant as the authorize endpoint
records it -- role, fhirUser, launch patient, granted scope -- and one access token), so
every scope kind costs one row instead of a browser sign-in; the sign-in flows that issue
such grants are tested in test_auth_standalone/ehr_launch/backend. The tests that name a
checklist ID (INF-G5, G10, G11) use tokens from the real flows.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

import httpx

from fhir_server.auth.tokens import TokenStore
from fhir_server.config import normalise_database_url
from fhir_server.storage.database import open_database
from tests.auth.conftest import SmartEnv
from tests.auth.smart_app import bearer

CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
LOINC = "http://loinc.org"

# The representative types of the matrix and whose data each instance is.
REPRESENTATIVE = (
    "Patient",
    "Observation",
    "QuestionnaireResponse",
    "CarePlan",
    "Goal",
    "Consent",
    "Questionnaire",
    "Practitioner",
    "Group",
    "AuditEvent",
)
IN_COMPARTMENT = ("Observation", "QuestionnaireResponse", "CarePlan", "Goal", "Consent")
SHARED = ("Questionnaire", "Practitioner")


def body_for(rtype: str, patient: str, *, tag: str = "") -> dict[str, Any]:
    """A valid resource of ``rtype`` in ``patient``'s compartment (or shared)."""
    ref = {"reference": f"Patient/{patient}"}
    if rtype == "Observation":
        return {
            "resourceType": "Observation",
            "status": "final",
            # activity: what a patient may record itself (fhir_server.access.write_authority)
            "category": [{"coding": [{"system": CATEGORY, "code": tag or "activity"}]}],
            "code": {"coding": [{"system": LOINC, "code": "72514-3"}]},
            "subject": ref,
            "valueInteger": 3,
        }
    if rtype == "QuestionnaireResponse":
        return {"resourceType": "QuestionnaireResponse", "status": "completed", "subject": ref}
    if rtype == "CarePlan":
        return {"resourceType": "CarePlan", "status": "active", "intent": "plan", "subject": ref}
    if rtype == "Goal":
        return {
            "resourceType": "Goal",
            "lifecycleStatus": "active",
            "description": {"text": "walk more"},
            "subject": ref,
        }
    if rtype == "Consent":
        return {
            "resourceType": "Consent",
            "status": "proposed",  # never in force: does not disturb the consent tests
            "scope": {"coding": [{"code": "patient-privacy"}]},
            "category": [{"coding": [{"system": LOINC, "code": "59284-0"}]}],
            "patient": ref,
        }
    if rtype == "Patient":
        return {"resourceType": "Patient", "name": [{"family": tag or "Matrix"}]}
    if rtype == "Questionnaire":
        return {"resourceType": "Questionnaire", "status": "active", "name": "Matrix"}
    if rtype == "Practitioner":
        return {"resourceType": "Practitioner", "name": [{"family": "Matrix"}]}
    if rtype == "Group":
        return {
            "resourceType": "Group",
            "type": "person",
            "actual": True,
            "member": [{"entity": ref}],
        }
    if rtype == "AuditEvent":
        return {
            "resourceType": "AuditEvent",
            "type": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110110"},
            "recorded": "2026-01-01T00:00:00Z",
            "agent": [{"requestor": True, "who": {"display": "matrix"}}],
            "source": {"observer": {"display": "matrix"}},
            "entity": [{"what": ref}],
        }
    raise ValueError(rtype)


@dataclass(frozen=True)
class ScopeKind:
    """One caller: a role, a scope string and (for patient scopes) the launch patient."""

    name: str
    scope: str
    role: str | None  # patient | practitioner | admin | None (backend)
    context: str  # patient | user | system
    patient: bool = False  # launched with patient A
    user: str = ""  # "consented" or "stranger" practitioner for user/ scopes


SCOPE_KINDS = (
    ScopeKind("patient-v2-cruds", "patient/*.cruds", "patient", "patient", patient=True),
    ScopeKind("patient-v1-read", "patient/*.read", "patient", "patient", patient=True),
    ScopeKind("patient-v1-star", "patient/*.*", "patient", "patient", patient=True),
    ScopeKind("patient-v2-obs-rs", "patient/Observation.rs", "patient", "patient", patient=True),
    ScopeKind("patient-v2-cu", "patient/*.cu", "patient", "patient", patient=True),
    ScopeKind("user-v2-consented", "user/*.cruds", "practitioner", "user", user="consented"),
    ScopeKind("user-v1-read-stranger", "user/*.read", "practitioner", "user", user="stranger"),
    ScopeKind("user-v2-admin", "user/*.cruds", "admin", "user"),
    # A Consent but no CareTeam link (SEC-02 asks for both).
    ScopeKind("user-v2-no-team", "user/*.rs", "practitioner", "user", user="noteam"),
    # Clinicians with patient/ scopes and A as launch context -- an EHR launch or a pick
    # in a standalone launch: held to A's Consent like user/ scopes (issue 10 item 2).
    ScopeKind(
        "ehr-consented", "patient/*.rs", "practitioner", "patient", patient=True, user="consented"
    ),
    ScopeKind(
        "ehr-stranger", "patient/*.rs", "practitioner", "patient", patient=True, user="stranger"
    ),
    ScopeKind("ehr-no-team", "patient/*.rs", "practitioner", "patient", patient=True, user="noteam"),
    ScopeKind("system-v1-read", "system/*.read", None, "system"),
    ScopeKind("system-v2-cruds", "system/*.cruds", None, "system"),
    ScopeKind("system-v2-obs-rs", "system/Observation.rs", None, "system"),
    ScopeKind("system-v1-write", "system/*.write", None, "system"),
)
KINDS = {k.name: k for k in SCOPE_KINDS}


@dataclass
class World:
    smart: SmartEnv
    a: str = ""
    b: str = ""
    consented: str = ""  # Practitioner with an active Consent from A
    stranger: str = ""  # Practitioner with no Consent
    noteam: str = ""  # Practitioner with a Consent from A but no CareTeam link
    # (type, owner) -> id; owner "a", "b", "shared", "group", "audit"
    ids: dict[tuple[str, str], str] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    store: TokenStore | None = None

    @property
    def fhir(self) -> str:
        return self.smart.fhir

    def admin(self) -> dict[str, str]:
        return self.smart.admin_headers()

    def create(self, resource: dict[str, Any]) -> str:
        return self.smart.create(resource)

    def put(self, resource: dict[str, Any]) -> httpx.Response:
        return httpx.put(
            f"{self.fhir}/{resource['resourceType']}/{resource['id']}",
            json=resource,
            headers=self.admin(),
        )

    def mint(
        self,
        scope: str,
        *,
        role: str | None,
        patient: str | None = None,
        fhir_user: str | None = None,
        expires_in: int = 3600,
        app: str = "patient",
    ) -> str:
        assert self.store is not None
        client_id = self.smart.apps[app].client_id
        context = {"patient": patient} if patient else {}
        grant = self.store.create_grant(
            client_id=client_id,
            scope=scope,
            subject=f"acct-{secrets.token_hex(4)}" if role else None,
            role=role,
            fhir_user=fhir_user,
            context=context,
        )
        token = secrets.token_urlsafe(32)
        self.store.save(
            grant_id=grant,
            client_id=client_id,
            access_token=token,
            scope=scope,
            expires_in=expires_in,
        )
        return token

    def token(self, kind: str) -> str:
        if kind not in self.tokens:
            k = KINDS[kind]
            user = {
                "consented": self.consented,
                "stranger": self.stranger,
                "noteam": self.noteam,
            }.get(k.user, "")
            self.tokens[kind] = self.mint(
                k.scope,
                role=k.role,
                patient=self.a if k.patient else None,
                fhir_user=f"Practitioner/{user}" if user else None,
            )
        return self.tokens[kind]

    def as_(self, kind: str) -> dict[str, str]:
        return bearer(self.token(kind))


def build_world(smart: SmartEnv) -> World:
    world = World(smart)
    world.store = TokenStore(open_database(normalise_database_url(smart.database_url)))
    world.a = smart.new_patient("Andersen-matrix")
    world.b = smart.new_patient("Berg-matrix")
    world.ids[("Patient", "a")] = world.a
    world.ids[("Patient", "b")] = world.b
    for rtype in IN_COMPARTMENT:
        world.ids[(rtype, "a")] = world.create(body_for(rtype, world.a))
        world.ids[(rtype, "b")] = world.create(body_for(rtype, world.b))
    for rtype in SHARED:
        world.ids[(rtype, "shared")] = world.create(body_for(rtype, world.a))
    world.ids[("Group", "group")] = world.create(body_for("Group", world.a))
    world.ids[("AuditEvent", "audit")] = world.create(body_for("AuditEvent", world.a))
    world.consented = world.create(
        {"resourceType": "Practitioner", "name": [{"family": "Consented"}]}
    )
    world.stranger = world.create(
        {"resourceType": "Practitioner", "name": [{"family": "Stranger"}]}
    )
    world.noteam = world.create({"resourceType": "Practitioner", "name": [{"family": "NoTeam"}]})
    world.create(consent(world.a, f"Practitioner/{world.consented}"))
    world.create(care_team(world.a, f"Practitioner/{world.consented}"))
    world.create(consent(world.a, f"Practitioner/{world.noteam}"))
    # An Observation in both compartments: subject A, performer Patient/B. Every reader
    # needs both patients to permit it (issue 10 item 3), so only admins and backends see
    # it -- by read, search, compartment search, history and _include alike.
    world.ids[("Observation", "ab")] = world.create(
        body_for("Observation", world.a) | {"performer": [{"reference": f"Patient/{world.b}"}]}
    )
    return world


def care_team(
    patient: str,
    member: str,
    *,
    status: str = "active",
    period: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A CareTeam of ``patient`` with ``member`` (Practitioner, PractitionerRole or
    Organization) as participant: the link a clinician needs besides the Consent."""
    team: dict[str, Any] = {
        "resourceType": "CareTeam",
        "status": status,
        "subject": {"reference": f"Patient/{patient}"},
        "participant": [{"member": {"reference": member}}],
    }
    if period:
        team["period"] = period
    return team


def consent(
    patient: str,
    actor: str,
    *,
    status: str = "active",
    kind: str = "permit",
    when: str = "2026-01-01T00:00:00Z",
    period: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A patient-privacy Consent of ``patient`` naming ``actor``."""
    provision: dict[str, Any] = {
        "type": kind,
        "actor": [
            {
                "role": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                            "code": "PRCP",
                        }
                    ]
                },
                "reference": {"reference": actor},
            }
        ],
    }
    if period:
        provision["period"] = period
    return {
        "resourceType": "Consent",
        "status": status,
        "scope": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                    "code": "patient-privacy",
                }
            ]
        },
        "category": [{"coding": [{"system": LOINC, "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{patient}"},
        "dateTime": when,
        "provision": provision,
    }


# -- the rules the matrix expects (a restatement of docs/AUTH.md, "The access decision") --


def permission(kind: ScopeKind, rtype: str, letter: str) -> bool:
    """Does the scope string grant ``letter`` on ``rtype``?"""
    context, _, rest = kind.scope.partition("/")
    scope_type, _, perms = rest.partition(".")
    letters = {"read": "rs", "write": "cud", "*": "cruds"}.get(perms, perms)
    return letter in letters and scope_type in ("*", rtype)


def expected_read(kind: ScopeKind, rtype: str, owner: str) -> int:
    """The status of a read of the ``owner`` resource of ``rtype``."""
    if not permission(kind, rtype, "r"):
        return 403
    if rtype == "AuditEvent":
        return 200 if kind.context == "system" or kind.role == "admin" else 403
    if kind.context == "system" or kind.role == "admin":
        return 200
    if rtype in SHARED:
        return 200
    if kind.context == "patient":
        if rtype == "Group":
            return 403
        if kind.role == "practitioner" and kind.user != "consented":
            return 404  # a launch context without Consent and CareTeam opens nothing
        return 200 if owner == "a" else 404  # "ab" names B too: refused
    # user/ scopes: A's data only with A's Consent (the Group's only member is A)
    if kind.user == "consented" and owner in ("a", "group"):
        return 200
    return 404


def expected_search(kind: ScopeKind, rtype: str) -> int:
    if not permission(kind, rtype, "s"):
        return 403
    if rtype == "AuditEvent" and not (kind.context == "system" or kind.role == "admin"):
        return 403
    if kind.context == "patient" and rtype == "Group":
        return 403
    return 200
