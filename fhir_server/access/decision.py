"""The one access decision: (token claims, interaction, type, resource or query) -> answer.

Pure code (ARCHITECTURE.md, "Access control"). The answer is one of

- :class:`Allow` -- go ahead;
- :class:`Deny` -- refuse with ``status``: 403 when no granted scope covers the interaction
  (SAL-43, RFC 6750 insufficient_scope) or policy forbids it; 404 when the token could see
  resources of this type but not this one, so nothing leaks about its existence;
- :class:`Filter` -- a search or history may run, but only over resources matching one of
  the listed alternatives (FHIR search parameters, all of which must hold). The caller adds
  them to the query, so a search can never return what a read would refuse.

Rules, each from the SMART App Launch 2.2 scopes page unless marked:

- ``r`` covers read, vread and history; ``s`` search; ``c`` create; ``u`` update and patch;
  ``d`` delete; write never implies read (SAL-40).
- query scopes (``patient/Observation.rs?category=survey``) only reach matching resources
  (SAL-42); on a single resource only token, reference, uri and string parameters can be
  matched here, any other kind fails closed.
- ``patient/`` scopes confine to the context patient's compartment (R4 CompartmentDefinition
  patient). Shared definitional types outside every compartment (Questionnaire, ValueSet,
  Practitioner ...) may be read and searched; other types outside the compartment may not.
  [D] Patient itself is confined to the patient's own record (``_id``), and Group is never
  reachable with patient scopes: both would otherwise reveal other patients.
- ``user/`` scopes reach a patient's data only while that patient's Consent permits the
  user that resource -- a search: every resource of the type (issue 4, SEC-02); the
  ``consent`` callback answers that. Admins are not confined.
- ``system/`` scopes are limited by their scope only.
- [D] update as create under a client-chosen id (http.html#upsert) only for a scope that
  sees every resource of the type (:func:`creates_at_chosen_id`); a confined token would
  otherwise tell hidden ids (404) from free ones (201) -- issue 4 item 7.
- AuditEvent is append-only; it is read only with a system scope or by an admin (issue 4).
- a signed-in patient cannot change identifiers or security labels (issue 4, OWASP API3).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import unquote

from fhir_server.access.claims import ADMIN, PATIENT, PRACTITIONER, Claims
from fhir_server.access.compartment import ACCESS_ONLY, PATIENT_COMPARTMENT
from fhir_server.access.scopes import ResourceScope
from fhir_server.search import extract_index_rows
from fhir_server.search.query import ONLY_PATIENTS
from fhir_server.search.text import normalise
from plan_engine import codes

# Search parameters that must all hold; () holds for every resource.
Condition = tuple[tuple[str, str], ...]

# The permission letters each interaction needs (scopes-and-launch-context.html).
PERMISSIONS: dict[str, str] = {
    "read": "r",
    "vread": "r",
    "history-instance": "r",
    "history-type": "r",
    "history-system": "r",
    "search-type": "s",
    "search-system": "s",
    "create": "c",
    "update": "u",
    "patch": "u",
    "delete": "d",
    # Bulk export reads and searches (Bulk Data 2.0 asks for system/*.read).
    "export": "rs",
}
INSTANCE_INTERACTIONS = frozenset(
    {"read", "vread", "history-instance", "create", "update", "patch", "delete"}
)
TYPE_INTERACTIONS = frozenset({"search-type", "history-type", "export"})
SYSTEM_INTERACTIONS = frozenset({"search-system", "history-system"})
WRITES = frozenset({"create", "update", "patch", "delete"})

# Shared, definitional types in no patient's compartment that patient/ scopes may read
# (a patient app reads its Questionnaires, plan definitions and care providers). [D]
SHARED_TYPES = frozenset(
    {
        "ActivityDefinition",
        "CapabilityStatement",
        "CodeSystem",
        "ConceptMap",
        "HealthcareService",
        "Library",
        "Location",
        "Medication",
        "NamingSystem",
        "OperationDefinition",
        "Organization",
        "PlanDefinition",
        "Practitioner",
        "PractitionerRole",
        "Questionnaire",
        "SearchParameter",
        "StructureDefinition",
        "Substance",
        "ValueSet",
    }
)
# In the R4 patient compartment, but reveal other patients (Group.member, Patient.link).
PATIENT_SCOPE_EXCLUDED = frozenset({"Group"})
# The patient-compartment parameters per type, as the subsets extraction is asked for.
_COMPARTMENT_PARAMS: dict[str, frozenset[str]] = {
    rtype: frozenset(params) for rtype, params in PATIENT_COMPARTMENT.items()
}
AUDIT_EVENT = "AuditEvent"
# Safety alerts (issue 11 item 2; ARCHITECTURE.md "Access control": "the responsible
# clinician always gets the minimum needed to act"): the server tags the Task and the
# Communication it makes for an alert, and their addressee may read them whatever the
# patient's data-sharing Consent says. They carry the minimum in themselves (who, how to
# reach them, which answer, when); nothing else of the record is opened by this rule.
SECURITY_TAG_SYSTEM = codes.SECURITY_TAG
SAFETY_ALERT = codes.SAFETY_ALERT_TAG
# type -> (search parameter, element) naming the alert's addressee
ALERT_ADDRESSEE: dict[str, tuple[str, str]] = {
    "Task": ("owner", "owner"),
    "Communication": ("recipient", "recipient"),
}
_ALERT_INTERACTIONS = frozenset({"read", "vread", "history-instance", "update", "patch"})


@dataclass(frozen=True, slots=True)
class Allow:
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Deny:
    status: int  # 403 or 404
    reason: str


@dataclass(frozen=True, slots=True)
class Filter:
    """Allow only resources matching one alternative of their type; a type without an
    entry is excluded, and an empty tuple of alternatives matches nothing."""

    by_type: Mapping[str, tuple[Condition, ...]] = field(default_factory=dict)

    def alternatives(self, resource_type: str) -> tuple[Condition, ...]:
        return self.by_type.get(resource_type, ())

    def admits_nothing(self) -> bool:
        return not any(self.by_type.values())


Decision = Allow | Deny | Filter


class Consent(Protocol):
    """The clinician-consent policy (SEC-02): does an active Consent from the patient
    permit this user (a ``Practitioner/..`` reference, or its Organization) this resource
    -- or, for a search, every resource of this type (fhir_server.access.consent)?"""

    def permits(
        self, user: str, patient_id: str, resource: Mapping[str, Any] | None = None
    ) -> bool: ...

    def patients(self, user: str, resource_type: str | None = None) -> Collection[str]: ...

    def addressees(self, user: str) -> Collection[str]: ...

    def reaches(self, user: str, patient_id: str) -> bool: ...


class NoConsent:
    """The policy when no Consent is known: no clinician sees any patient's data."""

    def permits(
        self, user: str, patient_id: str, resource: Mapping[str, Any] | None = None
    ) -> bool:
        return False

    def patients(self, user: str, resource_type: str | None = None) -> Collection[str]:
        return ()

    def addressees(self, user: str) -> Collection[str]:
        return ()

    def reaches(self, user: str, patient_id: str) -> bool:
        return False


def decide_launch(
    role: str | None, fhir_user: str | None, patient_id: str, consent: Consent | None = None
) -> Allow | Deny:
    """May a person of ``role`` signed in as ``fhir_user`` be given ``patient_id`` as the
    launch context of a token (a clinician's pick on the consent page, an EHR launch)?

    Asked by the authorize step (fhir_server.auth.authorize through access.lookups) with
    the same Consent facts every later request of the token is decided on: a patient
    only itself; an admin anyone; a practitioner only a patient whose Consent permits
    them something now (and whose active CareTeam names them when the installation asks
    for that link -- SEC-02, issue 10 item 2). The caller answers a Deny exactly as an
    unknown id, so the consent page reveals no ids."""
    if role == ADMIN:
        return Allow("admins are not confined to consenting patients")
    if role == PATIENT:
        if fhir_user == f"Patient/{patient_id}":
            return Allow("the patient themself")
        return Deny(404, "a patient is only their own launch context")
    if role == PRACTITIONER and fhir_user:
        if (consent or NoConsent()).reaches(fhir_user, patient_id):
            return Allow(f"Patient/{patient_id}'s Consent permits {fhir_user}")
        return Deny(404, f"no active Consent (and CareTeam link) lets {fhir_user} reach them")
    return Deny(404, "no person to decide for")


def decide(
    claims: Claims,
    interaction: str,
    resource_type: str | None,
    resource_or_query: Mapping[str, Any] | Sequence[tuple[str, str]] | None = None,
    *,
    previous: Mapping[str, Any] | None = None,
    consent: Consent | None = None,
    all_types: Collection[str] = (),
) -> Decision:
    """Decide one interaction.

    - instance interactions (read, vread, history-instance, create, update, patch, delete)
      take the resource (for update and patch: the new content; ``previous`` is the stored
      one) and answer Allow or Deny;
    - type interactions (search-type, history-type, export) take the client's query, which
      is not needed for the decision, and answer Allow, Deny or a Filter for that type;
    - system interactions (search-system, history-system) answer for every type in
      ``all_types`` (the types the server serves).
    """
    needed = PERMISSIONS.get(interaction)
    if needed is None:
        return Deny(403, f"interaction {interaction!r} is not covered by any scope")
    consent = consent or NoConsent()
    if interaction in SYSTEM_INTERACTIONS or resource_type is None:
        return _decide_system(claims, interaction, needed, consent, all_types)
    policy = _policy(claims, interaction, resource_type, resource_or_query, previous)
    if policy is not None:
        return policy
    scopes = [s for s in claims.scopes.resources if all(s.allows(resource_type, p) for p in needed)]
    if not scopes:
        return Deny(403, f"no granted scope allows {interaction} on {resource_type}")
    if interaction in INSTANCE_INTERACTIONS:
        resource = resource_or_query if isinstance(resource_or_query, Mapping) else None
        return _decide_instance(
            claims, interaction, resource_type, resource, scopes, consent, previous
        )
    return _decide_search(claims, resource_type, scopes, consent)


def precheck(claims: Claims, interaction: str, resource_type: str) -> Deny | None:
    """The 403 an interaction on ``resource_type`` gets whatever the resource: no granted
    scope covers it, a policy forbids the type, or every covering scope is a patient/
    scope that can never reach the type (e.g. Group). None when some resource of the type
    may be allowed; the caller then decides on the resource itself (or answers 404 when
    there is none), so a 403 never depends on whether a resource exists."""
    needed = PERMISSIONS.get(interaction)
    if needed is None:
        return Deny(403, f"interaction {interaction!r} is not covered by any scope")
    policy = _policy(claims, interaction, resource_type, None, None)
    if policy is not None:
        return policy
    scopes = [s for s in claims.scopes.resources if all(s.allows(resource_type, p) for p in needed)]
    if not scopes:
        return Deny(403, f"no granted scope allows {interaction} on {resource_type}")
    if not any(_search_bases(claims, resource_type, s, NoConsent()) is not None for s in scopes):
        return Deny(403, f"{resource_type} is out of reach of the granted patient scopes")
    return None


def creates_at_chosen_id(claims: Claims, resource_type: str) -> bool:
    """May an update create ``resource_type`` under an id the client chose (http.html#
    upsert, "update as create")?

    Only when some scope with ``c`` on the type sees every resource of it: then no stored
    resource can be hidden under that id. A token confined to compartments (patient/
    scopes, user/ scopes of a non-admin, on a type of the patient compartment or Patient)
    or by a query scope would otherwise learn that an id it was refused (404) exists
    while a free id answers 201 -- the existence leak issue 4 item 7 forbids. Such a
    client creates with POST, where the server assigns the id (http.html#create)."""
    if _policy(claims, "create", resource_type, None, None) is not None:
        return False
    return any(
        scope.allows(resource_type, "c") and _sees_every(claims, scope, resource_type)
        for scope in claims.scopes.resources
    )


def confined(claims: Claims, resource_type: str) -> bool:
    """Does some scope on ``resource_type`` see only part of it (a compartment, a
    query)? Then a 404 may stand for a hidden resource, and every answer about an id
    must look the same whether it exists or not."""
    return any(
        scope.resource_type in ("*", resource_type)
        and not _sees_every(claims, scope, resource_type)
        for scope in claims.scopes.resources
    )


def _sees_every(claims: Claims, scope: ResourceScope, resource_type: str) -> bool:
    if scope.query:
        return False
    if scope.context == "system":
        return True
    confinable = resource_type in PATIENT_COMPARTMENT or resource_type == "Patient"
    return scope.context == "user" and (claims.role == ADMIN or not confinable)


# -- rules that hold whatever the scopes say --------------------------------------------------


def _policy(
    claims: Claims,
    interaction: str,
    resource_type: str,
    resource: object,
    previous: Mapping[str, Any] | None,
) -> Deny | None:
    if resource_type == AUDIT_EVENT:
        if interaction in ("update", "patch", "delete"):
            return Deny(403, "AuditEvent is append-only")
        is_system = any(s.context == "system" for s in claims.scopes.resources)
        if interaction == "create" and not is_system:
            return Deny(403, "only backend (system) clients record AuditEvents")
        if not is_system and claims.role != ADMIN:
            return Deny(403, "AuditEvent is readable only by admins and system clients")
    if claims.role == PATIENT and interaction in WRITES and isinstance(resource, Mapping):
        if interaction == "create" and _security_labels(resource):
            return Deny(403, "patients cannot set security labels")
        if previous is not None and interaction in ("update", "patch"):
            if _security_labels(resource) != _security_labels(previous):
                return Deny(403, "patients cannot change security labels")
            if resource_type == "Patient" and resource.get("identifier") != previous.get(
                "identifier"
            ):
                return Deny(403, "patients cannot change their identifiers")
    return None


def _security_labels(resource: Mapping[str, Any]) -> list[Any]:
    meta = resource.get("meta")
    return list(meta.get("security") or []) if isinstance(meta, Mapping) else []


# -- one resource ----------------------------------------------------------------------------


def _decide_instance(
    claims: Claims,
    interaction: str,
    resource_type: str,
    resource: Mapping[str, Any] | None,
    scopes: list[ResourceScope],
    consent: Consent,
    previous: Mapping[str, Any] | None = None,
) -> Decision:
    if resource is None:
        return Deny(403, f"{interaction} on {resource_type} needs the resource to decide")
    refusals: list[Deny] = []
    for scope in scopes:
        if scope.query and not matches_query(resource, decoded_query(scope.query)):
            code = 403 if interaction == "create" else 404
            refusals.append(Deny(code, f"this {resource_type} is outside the query of {scope}"))
            continue
        if scope.context == "system":
            return Allow(f"granted by {scope}")
        if scope.context == "user":
            answer = _user_instance(claims, resource_type, resource, consent)
        else:
            answer = _patient_instance(claims, interaction, resource_type, resource, consent)
        if isinstance(answer, Allow):
            return Allow(f"granted by {scope}")
        if _addressed_alert(claims, interaction, resource, previous, consent, scope):
            return Allow(f"safety alert addressed to {claims.fhir_user}, granted by {scope}")
        refusals.append(answer)
    # A 403 (policy) outranks a 404 (invisible): it says the token may never do this.
    return min(refusals, key=lambda d: d.status == 404)


def _user_instance(
    claims: Claims, resource_type: str, resource: Mapping[str, Any], consent: Consent
) -> Allow | Deny:
    if claims.role == ADMIN:
        return Allow()
    patients = compartment_patients(resource)
    if not patients:
        return Allow()  # no patient's data: the scope alone decides
    user = claims.fhir_user
    if user and all(consent.permits(user, p, resource) for p in patients):
        return Allow()
    return Deny(404, f"no active Consent lets {user or 'this user'} see this {resource_type}")


def _patient_instance(
    claims: Claims,
    interaction: str,
    resource_type: str,
    resource: Mapping[str, Any],
    consent: Consent,
) -> Allow | Deny:
    patient = claims.patient
    if not patient:
        return Deny(403, "patient scopes need a patient in the launch context")
    if resource_type in PATIENT_SCOPE_EXCLUDED:
        return Deny(403, f"{resource_type} is not available with patient scopes")
    if resource_type == "Patient":
        if interaction == "create":
            return Deny(403, "patient scopes cannot create Patient records")
        if resource.get("id") != patient:
            return Deny(404, "only the patient's own Patient record is visible")
        return _clinician_consents(claims, patient, resource, consent)
    if resource_type in ACCESS_ONLY and interaction in WRITES and claims.role == PATIENT:
        # Task joined the patient's data for reading (access.compartment.ACCESS_ONLY);
        # a patient app still writes none (issue 10 item 4: the clinician's work list).
        return Deny(403, f"patient scopes cannot write {resource_type}")
    if resource_type in PATIENT_COMPARTMENT:
        patients = compartment_patients(resource)
        # Every compartment the resource is in must be this patient's: one that also
        # names another patient is that patient's data too (issue 10 item 3).
        if patient in patients and patients == {patient}:
            return _clinician_consents(claims, patient, resource, consent)
        code = 403 if interaction == "create" else 404
        if patient in patients:
            return Deny(code, f"this {resource_type} also belongs to another patient's record")
        return Deny(code, f"this {resource_type} is outside Patient/{patient}'s compartment")
    if resource_type in SHARED_TYPES and interaction in ("read", "vread", "history-instance"):
        return Allow()
    return Deny(403, f"{resource_type} is outside every patient compartment")


def _clinician_consents(
    claims: Claims, patient: str, resource: Mapping[str, Any], consent: Consent
) -> Allow | Deny:
    """A practitioner with patient/ scopes (a picked patient, an EHR launch) reaches the
    patient's data only while the patient's Consent permits them -- the same rule as
    user/ scopes (issue 10 item 2); the launch context alone grants nothing."""
    if claims.role != PRACTITIONER:
        return Allow()
    user = claims.fhir_user
    if user and consent.permits(user, patient, resource):
        return Allow()
    return Deny(404, f"no active Consent lets {user or 'this user'} see Patient/{patient}'s data")


def _addressed_alert(
    claims: Claims,
    interaction: str,
    resource: Mapping[str, Any],
    previous: Mapping[str, Any] | None,
    consent: Consent,
    scope: ResourceScope,
) -> bool:
    """The safety-alert exception to data-sharing Consent: a practitioner may read (and
    update, e.g. acknowledge, where the write-authority table lets them) a tagged alert
    Task or Communication addressed to them -- under patient/ scopes only one of the
    context patient's."""
    if claims.role != PRACTITIONER or interaction not in _ALERT_INTERACTIONS:
        return False
    user = claims.fhir_user
    if not user:
        return False
    addressees = frozenset(consent.addressees(user))
    if not is_alert_for(resource, addressees):
        return False
    if previous is not None and not is_alert_for(previous, addressees):
        return False
    if scope.context == "patient":
        return compartment_patients(resource) == {claims.patient}
    return True


def is_alert_for(resource: Mapping[str, Any], addressees: Collection[str]) -> bool:
    """Is ``resource`` a tagged safety alert whose addressee is one of ``addressees``?"""
    rtype = resource.get("resourceType")
    if not addressees or rtype not in ALERT_ADDRESSEE or not is_safety_alert(resource):
        return False
    named = resource.get(ALERT_ADDRESSEE[str(rtype)][1])
    refs = named if isinstance(named, list) else [named]
    return any(isinstance(r, Mapping) and r.get("reference") in addressees for r in refs)


def is_safety_alert(resource: Mapping[str, Any]) -> bool:
    """Does ``resource`` carry the safety-alert tag (the shared contract of the alerts)?"""
    meta = resource.get("meta")
    tags = meta.get("tag") if isinstance(meta, Mapping) else None
    return isinstance(tags, list) and any(
        isinstance(t, Mapping)
        and t.get("system") == SECURITY_TAG_SYSTEM
        and t.get("code") == SAFETY_ALERT
        for t in tags
    )


def compartment_patients(resource: Mapping[str, Any]) -> frozenset[str]:
    """The ids of the patients whose compartment holds ``resource``."""
    rtype = resource.get("resourceType")
    if rtype == "Patient":
        rid = resource.get("id")
        return frozenset({rid}) if isinstance(rid, str) else frozenset()
    params = _COMPARTMENT_PARAMS.get(rtype) if isinstance(rtype, str) else None
    if not params:
        return frozenset()
    # Only the compartment's own reference parameters are extracted (a few instead of
    # the type's 20-odd): the same extractors, so the same rows as a full extraction.
    rows = extract_index_rows(dict(resource), only=params)["sp_reference"]
    return frozenset(
        str(row["target_id"])
        for row in rows
        if row["param"] in params
        and row["target_type"] == "Patient"
        and row["target_id"]
        and row["url"] is None  # a local reference; absolute ones name other servers
    )


# -- searches and histories -----------------------------------------------------------------------


def _decide_search(
    claims: Claims, resource_type: str, scopes: list[ResourceScope], consent: Consent
) -> Decision:
    alternatives: list[Condition] = []
    reachable = False
    for scope in scopes:
        bases = _search_bases(claims, resource_type, scope, consent)
        if bases is None:
            continue
        reachable = True
        bases = bases + _alert_bases(claims, resource_type, scope, consent)
        query = decoded_query(scope.query)
        for base in bases:
            alternatives.append(tuple(sorted(set(base) | set(query))))
    if not reachable:
        return Deny(403, f"{resource_type} cannot be searched with the granted scopes")
    if () in alternatives:
        return Allow(f"{resource_type}: unconditional")
    return Filter({resource_type: tuple(dict.fromkeys(alternatives))})


def _search_bases(
    claims: Claims, resource_type: str, scope: ResourceScope, consent: Consent
) -> list[Condition] | None:
    """The conditions one scope puts on a search of ``resource_type``: alternatives (none
    may match, e.g. no consented patients), or None when the scope can never reach it."""
    if scope.context == "system":
        return [()]
    if scope.context == "user":
        if claims.role == ADMIN or (
            resource_type not in PATIENT_COMPARTMENT and resource_type != "Patient"
        ):
            return [()]
        # The Consents narrow per type (provision.class), inside the search's SQL.
        user = claims.fhir_user
        patients = sorted(consent.patients(user, resource_type)) if user else []
        return _compartment_conditions(resource_type, patients)
    patient = claims.patient
    if not patient or resource_type in PATIENT_SCOPE_EXCLUDED:
        return None
    if resource_type in PATIENT_COMPARTMENT or resource_type == "Patient":
        if claims.role == PRACTITIONER:
            # A picked or launched patient counts only while their Consent permits.
            user = claims.fhir_user
            if not user or patient not in consent.patients(user, resource_type):
                return []
        return _compartment_conditions(resource_type, [patient])
    if resource_type in SHARED_TYPES:
        return [()]
    return None


def _compartment_conditions(resource_type: str, patients: Sequence[str]) -> list[Condition]:
    """Search parameters that select the compartments of ``patients`` (one alternative
    per compartment parameter; a comma is FHIR search's OR between values), each with
    the condition that no compartment parameter names another patient: a resource in
    several compartments is found only when every one of them is readable, as a read
    decides (issue 10 item 3; ``:_only-patients`` is internal, see search.query)."""
    if not patients:
        return []
    if resource_type == "Patient":
        return [(("_id", ",".join(patients)),)]
    refs = ",".join(f"Patient/{p}" for p in patients)
    params = PATIENT_COMPARTMENT[resource_type]
    only = tuple((f"{param}:{ONLY_PATIENTS}", refs) for param in params)
    return [((param, refs), *only) for param in params]


def _alert_bases(
    claims: Claims, resource_type: str, scope: ResourceScope, consent: Consent
) -> list[Condition]:
    """The alternatives the safety-alert exception adds to a practitioner's search of
    Task or Communication: tagged alerts addressed to them (under patient/ scopes, of
    the context patient only)."""
    if claims.role != PRACTITIONER or resource_type not in ALERT_ADDRESSEE or not claims.fhir_user:
        return []
    addressees = sorted(consent.addressees(claims.fhir_user))
    if not addressees:
        return []
    alert: Condition = (
        ("_tag", f"{SECURITY_TAG_SYSTEM}|{SAFETY_ALERT}"),
        (ALERT_ADDRESSEE[resource_type][0], ",".join(addressees)),
    )
    if scope.context == "patient":
        if not claims.patient:
            return []
        return [
            (*alert, *base) for base in _compartment_conditions(resource_type, [claims.patient])
        ]
    return [alert]


def _decide_system(
    claims: Claims,
    interaction: str,
    needed: str,
    consent: Consent,
    all_types: Collection[str],
) -> Decision:
    by_type: dict[str, tuple[Condition, ...]] = {}
    unconditional = True
    for rtype in sorted(all_types):
        if _policy(claims, interaction, rtype, None, None) is not None:
            unconditional = False
            continue
        scopes = [s for s in claims.scopes.resources if all(s.allows(rtype, p) for p in needed)]
        if not scopes:
            unconditional = False
            continue
        answer = _decide_search(claims, rtype, scopes, consent)
        if isinstance(answer, Allow):
            by_type[rtype] = ((),)
            continue
        unconditional = False
        if isinstance(answer, Filter):
            by_type[rtype] = answer.alternatives(rtype)
    if not by_type:
        return Deny(403, f"no granted scope allows {interaction}")
    if unconditional:
        return Allow("every type unconditional")
    return Filter(by_type)


# -- matching a query scope against one resource ---------------------------------------------------


def decoded_query(query: Iterable[tuple[str, str]]) -> Condition:
    """A query scope's pairs with their values percent-decoded, once, for both uses (the
    Filter of a search and the match on one resource). A scope travels as written in the
    scope string, where a value may be percent-encoded (``category=http%3A%2F%2F...%7C
    survey`` and SMART's own ``category=http://terminology.hl7.org/CodeSystem/
    observation-category|survey`` must select the same resources); search parameters are
    matched decoded (RFC 3986 section 2.1)."""
    return tuple((name, unquote(value)) for name, value in query)


def matches_query(resource: Mapping[str, Any], query: Iterable[tuple[str, str]]) -> bool:
    """Does ``resource`` satisfy every ``param=value`` of a query scope? Only the parameter
    kinds that need no parsing are matched (token, reference, uri, string, ``_id``);
    anything else, and any modifier, fails closed."""
    rows: dict[str, list[dict[str, Any]]] | None = None
    for name, value in query:
        if ":" in name:
            return False
        values = [v for v in value.split(",") if v]
        if name == "_id":
            if resource.get("id") not in values:
                return False
            continue
        if rows is None:
            rows = extract_index_rows(dict(resource))
        if not any(_row_matches(rows, name, v) for v in values):
            return False
    return True


def _row_matches(rows: Mapping[str, list[dict[str, Any]]], name: str, value: str) -> bool:
    for row in rows["sp_token"]:
        if row["param"] == name and _token_matches(row, value):
            return True
    for row in rows["sp_reference"]:
        if row["param"] == name and _reference_matches(row, value):
            return True
    for row in rows["sp_uri"]:
        if row["param"] == name and row["value"] == value:
            return True
    wanted = normalise(value)
    return any(
        row["param"] == name and str(row["value_norm"]).startswith(wanted)
        for row in rows["sp_string"]
    )


def _token_matches(row: Mapping[str, Any], value: str) -> bool:
    if "|" not in value:
        return row["code"] == value
    system, _, code = value.partition("|")
    if not system:
        return row["system"] is None and row["code"] == code
    if not code:
        return row["system"] == system
    return row["system"] == system and row["code"] == code


def _reference_matches(row: Mapping[str, Any], value: str) -> bool:
    if "://" in value:
        return row["url"] == value
    if "/" in value:
        rtype, _, rid = value.partition("/")
        return row["target_type"] == rtype and row["target_id"] == rid and row["url"] is None
    return row["target_id"] == value and row["url"] is None
