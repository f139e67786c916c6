"""Write authority by role: who may create, change or delete what, in one declared table.

Scopes say what a *token* may touch; this table says what a *person* may author (issue 10
item 4, ARCHITECTURE.md "Access control": "Who may write what is one declared table").
It is asked after the access decision allowed a write (fhir_server.api.access.Gate.write),
so every write path -- create, update, patch, delete, their conditional forms, batch and
transaction entries, and writes an operation makes for a token -- meets it. Pure code.

- **Patients** write what they report: questionnaire answers (exercise feedback included),
  step and activity Observations, education read reports and replies (Communications they
  send), and their own Consent; they update their own Patient record (identifiers and
  security labels stay as they are, fhir_server.access.decision). They never write a
  clinical or safety record (Flag, DetectedIssue, Goal, CarePlan, Task, Provenance,
  GuidanceResponse, AuditEvent, Communications from anyone else), and nothing they write
  may name another patient.
- **Practitioners** write for the patients the access decision lets them reach: reviews
  (a ``mitigation`` added to the engine's DetectedIssue; a safety Flag closed),
  overrides (a Goal they express; the programme CarePlan they author), messages they
  send, referral Tasks, and acknowledgements of a safety-alert Task addressed to them
  (status, business status, notes). What the plan engine wrote is otherwise read-only.
- **Admins and backend (system) clients** are held by their scopes only: they run the
  installation and the integrations (docs/AUTH.md).
- The server's own writes (the outbox worker, the plan engine, ``$plan-week``) run without
  a token and are not asked.

Nobody but the server writes a resource that claims to be the plan engine's (the engine's
Device identifier as author, sender, ...) or carries the safety-alert tag.

:data:`TABLE` is the table docs/AUTH.md prints ("Write authority"); a test holds the two
equal. Each refusal names its rule: ``write-authority: <rule>``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from fhir_server.access.claims import PATIENT, PRACTITIONER, Claims
from fhir_server.access.decision import is_safety_alert
from plan_engine import codes

ENGINE_DEVICE_IDENTIFIER = codes.ENGINE_DEVICE_IDENTIFIER
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"

Content = Mapping[str, Any]
# (new content or None for a delete, the stored version or None for a create, the writer)
Check = Callable[[Content | None, Content | None, Claims], str | None]


@dataclass(frozen=True, slots=True)
class Rule:
    """One row: ``role`` may ``interactions`` on ``resource_type`` when ``check`` says
    nothing against it (``check`` answers the reason for a refusal, or None)."""

    resource_type: str
    role: str
    interactions: frozenset[str]
    condition: str  # the check, in words (docs/AUTH.md)
    check: Check


# -- the checks ------------------------------------------------------------------------------


def _self(claims: Claims) -> str:
    return claims.fhir_user or (f"Patient/{claims.patient}" if claims.patient else "")


def _ref(value: Any) -> str | None:
    return value.get("reference") if isinstance(value, Mapping) else None


def _refs(value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value]
    return [r for r in (_ref(i) for i in items) if isinstance(r, str)]


def _own(element: str) -> Check:
    """The resource's ``element`` is the writing patient (before and after)."""

    def check(new: Content | None, old: Content | None, claims: Claims) -> str | None:
        me = _self(claims)
        for version in (new, old):
            if version is not None and _refs(version.get(element)) != [me]:
                return f"{element} must be the writing patient ({me})"
        return None

    return check


def _activity_observation(new: Content | None, old: Content | None, claims: Claims) -> str | None:
    """Steps and activity the patient (or their phone) measured: category ``activity``.
    Scores and clinical findings are the server's (derived from the answers)."""
    for version in (new, old):
        if version is None:
            continue
        codes = {
            c.get("code")
            for cat in version.get("category") or []
            if isinstance(cat, Mapping)
            for c in cat.get("coding") or []
            if isinstance(c, Mapping) and c.get("system") == OBSERVATION_CATEGORY
        }
        if "activity" not in codes:
            return "a patient records activity Observations (steps) only"
    return _own("subject")(new, old, claims)


def _sent_by_self(new: Content | None, old: Content | None, claims: Claims) -> str | None:
    """A message or read report the patient sends; never one sent by someone else."""
    me = _self(claims)
    for version in (new, old):
        if version is not None and _refs(version.get("sender")) != [me]:
            return f"a patient writes only Communications it sends (sender {me})"
    return None


def _own_record(new: Content | None, old: Content | None, claims: Claims) -> str | None:
    me = _self(claims)
    rid = (new or old or {}).get("id")
    return None if f"Patient/{rid}" == me else "a patient changes only its own Patient record"


def _expressed_by_practitioner(
    new: Content | None, old: Content | None, claims: Claims
) -> str | None:
    """A clinician's Goal (an override): expressed by a Practitioner or PractitionerRole."""
    for version in (new, old):
        if version is None:
            continue
        by = _ref(version.get("expressedBy")) or ""
        if not by.startswith(("Practitioner/", "PractitionerRole/")):
            return "a clinician writes Goals expressed by a Practitioner or PractitionerRole"
    return None


def _not_engine(new: Content | None, old: Content | None, claims: Claims) -> str | None:
    if old is not None and by_engine(old):
        return "what the plan engine wrote is read-only"
    return None


def _review_only(changeable: frozenset[str], what: str) -> Check:
    """An engine-made resource a clinician may review: only ``changeable`` elements change
    (and ``meta``, which the server sets); created or deleted never."""

    def check(new: Content | None, old: Content | None, claims: Claims) -> str | None:
        if old is None:
            return None  # a clinician's own (engine or alert content was refused already)
        if new is None:
            return f"{what} is made by the server; a clinician may only review it"
        if not by_engine(old) and not is_safety_alert(old):
            return None  # a clinician's own: the scopes and the decision rule
        ignore = changeable | {"meta", "text"}
        before = {k: v for k, v in old.items() if k not in ignore}
        after = {k: v for k, v in new.items() if k not in ignore}
        if before != after:
            return f"a clinician may change only {', '.join(sorted(changeable))} of {what}"
        return None

    return check


def _anything(new: Content | None, old: Content | None, claims: Claims) -> str | None:
    return None


def _all(*checks: Check) -> Check:
    def check(new: Content | None, old: Content | None, claims: Claims) -> str | None:
        for one in checks:
            reason = one(new, old, claims)
            if reason:
                return reason
        return None

    return check


CREATE, UPDATE, PATCH, DELETE = "create", "update", "patch", "delete"
_CU = frozenset({CREATE, UPDATE, PATCH})
_U = frozenset({UPDATE, PATCH})
_CUD = frozenset({CREATE, UPDATE, PATCH, DELETE})

TABLE: tuple[Rule, ...] = (
    # -- patients: what they report --------------------------------------------------------
    Rule("QuestionnaireResponse", PATIENT, _CU, "its own answers (subject: itself)",
         _own("subject")),
    Rule("Observation", PATIENT, _CUD, "its own steps and activity (category activity)",
         _activity_observation),
    Rule("Communication", PATIENT, _CU, "replies and education read reports it sends",
         _sent_by_self),
    Rule("Consent", PATIENT, _CUD, "its own Consent (patient: itself)", _own("patient")),
    Rule("Patient", PATIENT, _U, "its own record", _own_record),
    # -- practitioners: reviews, overrides, messages, referrals ------------------------------
    Rule("DetectedIssue", PRACTITIONER, _U, "a review: mitigation added to the engine's issue",
         _review_only(frozenset({"mitigation"}), "a DetectedIssue")),
    Rule("Flag", PRACTITIONER, _CU, "its own Flags; the engine's: status and period only",
         _review_only(frozenset({"status", "period"}), "the engine's Flag")),
    Rule("Task", PRACTITIONER, _CU,
         "referral Tasks; a safety-alert Task: status, businessStatus, note, output only",
         _review_only(
             frozenset({"status", "businessStatus", "note", "output", "statusReason",
                        "lastModified"}),
             "a safety-alert Task",
         )),
    Rule("Goal", PRACTITIONER, _CU, "overrides: Goals expressed by a clinician",
         _all(_not_engine, _expressed_by_practitioner)),
    Rule("CarePlan", PRACTITIONER, _CU, "the programme CarePlan; never the engine's plans",
         _not_engine),
    Rule("Communication", PRACTITIONER, _CU, "messages they send", _not_engine),
    Rule("CommunicationRequest", PRACTITIONER, _CU, "requests they make", _not_engine),
    # Written only by the server (the engine's reasons and lineage) and by backends.
    Rule("Provenance", PRACTITIONER, frozenset(), "never", _anything),
    Rule("GuidanceResponse", PRACTITIONER, frozenset(), "never", _anything),
    Rule("AuditEvent", PRACTITIONER, frozenset(), "never", _anything),
)  # fmt: skip
# A type without a row: refused to patients; to practitioners as their scopes and the
# access decision say, unless the stored version is the plan engine's.
OTHER_TYPES = {PATIENT: "never", PRACTITIONER: "as the scopes say; never the engine's"}

_BY_KEY: dict[tuple[str, str], Rule] = {(r.resource_type, r.role): r for r in TABLE}


# -- the question -------------------------------------------------------------------------------


def refusal(
    claims: Claims,
    interaction: str,
    resource_type: str,
    new: Content | None,
    old: Content | None,
) -> str | None:
    """Why ``claims`` may not ``interaction`` this resource (``new``: the content written,
    None for a delete; ``old``: the stored version, None for a create), or None."""
    role = claims.role
    if role not in (PATIENT, PRACTITIONER):
        return None  # admins and backend clients: their scopes decide
    for version in (new,):
        if version is not None and (by_engine(version) and not (old and by_engine(old))):
            return "write-authority: only the server writes as the plan engine"
        if version is not None and is_safety_alert(version) and not (old and is_safety_alert(old)):
            return "write-authority: only the server raises safety alerts"
    rule = _BY_KEY.get((resource_type, role))
    verb = {"patch": "update"}.get(interaction, interaction)
    if rule is None and role == PRACTITIONER:
        reason = _not_engine(new, old, claims)
        return f"write-authority: {reason}" if reason else None
    if rule is None or interaction not in rule.interactions:
        return f"write-authority: a {role} may not {verb} {resource_type}"
    if role == PATIENT and new is not None:
        other = _other_patient(new, _self(claims))
        if other:
            return f"write-authority: a patient may not reference another patient ({other})"
    reason = rule.check(new, old, claims)
    return f"write-authority: {reason}" if reason else None


def by_engine(resource: Content) -> bool:
    """Does the resource name the plan engine's Device as an author (author, sender,
    expressedBy, recorder, agent ...)?"""
    return any(
        isinstance(node.get("identifier"), Mapping)
        and node["identifier"].get("system") == ENGINE_DEVICE_IDENTIFIER
        for node in _objects(resource)
    )


def _other_patient(resource: Content, me: str) -> str | None:
    """The first reference anywhere in ``resource`` to a Patient other than ``me``."""
    for node in _objects(resource):
        ref = node.get("reference")
        if not isinstance(ref, str):
            continue
        head, _, _ = ref.partition("/_history")
        parts = head.rstrip("/").split("/")
        if len(parts) >= 2 and parts[-2] == "Patient" and f"Patient/{parts[-1]}" != me:
            return ref
    return None


def _objects(value: Any) -> Iterator[Mapping[str, Any]]:
    """Every JSON object inside ``value`` (itself included), contained resources too."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, Mapping):
            yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
