"""Clinician consent from stored R4 Consent resources (issue 4 item 7, SEC-02). Pure code.

SMART has no consent model; ours is R4 ``Consent`` (scope patient-privacy). A clinician
(``user/`` scopes, role practitioner) sees a resource of a patient only while a Consent of
that patient permits them that resource -- and, where the installation asks for it
(``Settings.care_team_required``, the default), while an active CareTeam of the patient
names them (:func:`care_team_patients`).

**One Consent** (R4 consent.html, Consent.provision: "exceptions to the base policy";
``provision.provision`` nests). The answer for a request -- this clinician, a resource of
type T, and where the resource is known its codes and date -- is the ``type`` of the
*innermost* provision that applies to it:

- the base provision applies to the clinician when it, ``performer`` or ``organization``
  names them (their Practitioner, or an Organization they belong to through a
  PractitionerRole), or names no care party at all (only the patient or a relative: a
  patient's blanket rule for everyone); its ``type`` defaults to ``permit`` (the base
  provision of a privacy consent is the rule itself);
- a nested provision applies when each criterion it gives holds: ``actor.reference``
  names the clinician (``actor.role`` says in which capacity and does not narrow: the
  clinician reading is the recipient whatever the role), ``period`` holds now, ``class``
  names T (``http://hl7.org/fhir/resource-types|T``), one of its ``code`` codings occurs
  in the resource, ``dataPeriod`` holds the resource's clinical date, ``data`` (meaning
  ``instance``) references the resource; ``purpose`` is ignored, as our requests carry
  none. A nested provision without ``type`` takes its parent's;
- the same criteria hold on the base provision (``class`` there restricts the whole
  Consent, e.g. to Observation);
- a ``permit`` counts only where the clinician is named on the way down (a blanket
  permit names nobody); a ``deny`` counts for whomever it applies to;
- when two nested provisions apply at the same depth and disagree, ``deny`` wins;
- a criterion that cannot be decided (an unreadable period, a resource without a date
  for ``dataPeriod``, ``securityLabel``, ``data`` of another meaning) fails closed: a
  ``deny`` applies, a ``permit`` does not.

**Several Consents of one patient.** ``draft``, ``proposed`` and ``entered-in-error`` count
for nothing. ``inactive`` and ``rejected`` ones refuse everything to whom they name (or
to everyone when they name no care party). The latest Consent that says anything about
the request decides; "later" is by ``dateTime``, then ``meta.lastUpdated``; between
Consents of the same moment a permit wins, as a refusal has to come after the permit.

**Searches** cannot see a resource's codes or date: a type is searchable for a patient
only when the answer is ``permit`` whatever the data (:meth:`ConsentGrants.patients`);
a type whose answer depends on codes or dates (``code``, ``dataPeriod``, ``data``) is left
out of searches and history for that patient, while a read of one resource decides on the
resource itself (docs/AUTH.md "Not done").

Withdrawal -- the Consent made inactive, rejected or deleted, or a later deny -- takes
effect on the next request: the caller looks the Consents up on every request (and
revokes the clinician's tokens, fhir_server.api.access).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from fhir_server.search import extract_index_rows
from fhir_server.search.dates import InvalidDate, date_range

NOT_IN_FORCE = frozenset({"draft", "proposed", "entered-in-error"})
WITHDRAWN = frozenset({"inactive", "rejected"})
# Consent statuses that end what a Consent permitted (docs/AUTH.md, token revocation).
WITHDRAWING = WITHDRAWN | {"entered-in-error"}
RESOURCE_TYPES = "http://hl7.org/fhir/resource-types"
PERMIT, DENY, NONE = "permit", "deny", "none"
_NOTHING = frozenset({NONE})
# The search parameters that carry a resource's clinical date, in order of preference:
# what dataPeriod ("the period of time that bounds the data controlled by this rule")
# is compared with.
DATA_DATE_PARAMS = (
    "date",
    "authored",
    "effective",
    "onset-date",
    "recorded-date",
    "start-date",
    "issued",
    "created",
    "period",
)


@dataclass(slots=True)
class _Request:
    """What is asked: these actors, now, a resource type and perhaps the resource."""

    actors: frozenset[str]
    now_us: int
    resource_type: str | None
    resource: Mapping[str, Any] | None = None
    _codes: frozenset[tuple[str | None, str]] | None = None
    _dates: list[tuple[int, int]] | None = None

    def codes(self) -> frozenset[tuple[str | None, str]]:
        if self._codes is None:
            self._codes = frozenset(_codings(self.resource or {}))
        return self._codes

    def dates(self) -> list[tuple[int, int]]:
        """The resource's clinical date ranges (one parameter's), empty when none."""
        if self._dates is None:
            self._dates = []
            if self.resource is not None:
                rows = extract_index_rows(dict(self.resource))["sp_date"]
                for param in DATA_DATE_PARAMS:
                    found = [(r["lo"], r["hi"]) for r in rows if r["param"] == param]
                    if found:
                        self._dates = found
                        break
        return self._dates


@dataclass(slots=True)
class ConsentGrants:
    """The answer for one user, looked up once per request: the :class:`Consent` protocol
    of fhir_server.access.decision.

    ``consents``: the in-force and withdrawn Consents per patient id; ``linked``: the
    patients an active CareTeam links the user to, or None when the installation does
    not ask for that link."""

    user: str
    actors: frozenset[str] = frozenset()
    consents: Mapping[str, tuple[Mapping[str, Any], ...]] = field(default_factory=dict)
    now_us: int = 0
    linked: frozenset[str] | None = None
    roles: frozenset[str] = frozenset()
    _by_type: dict[str | None, frozenset[str]] = field(default_factory=dict)

    def permits(
        self, user: str, patient_id: str, resource: Mapping[str, Any] | None = None
    ) -> bool:
        """Does a Consent of ``patient_id`` permit ``user`` this ``resource`` (None: the
        patient's data whatever it is)?"""
        if user != self.user or not self._linked(patient_id):
            return False
        items = self.consents.get(patient_id, ())
        if resource is None:
            return patient_id in self.patients(user)
        rtype = resource.get("resourceType")
        request = _Request(self.actors, self.now_us, rtype if isinstance(rtype, str) else None)
        request.resource = resource
        return _patient_outcomes(items, request) == {PERMIT}

    def patients(self, user: str, resource_type: str | None = None) -> Collection[str]:
        """The patients whose Consents permit ``user`` every resource of
        ``resource_type`` (None: whatever the type)."""
        if user != self.user:
            return ()
        if resource_type not in self._by_type:
            request = _Request(self.actors, self.now_us, resource_type)
            self._by_type[resource_type] = frozenset(
                patient
                for patient, items in self.consents.items()
                if self._linked(patient) and _patient_outcomes(items, request) == {PERMIT}
            )
        return self._by_type[resource_type]

    def reaches(self, user: str, patient_id: str) -> bool:
        """May ``patient_id``'s Consents permit ``user`` anything now (some type, some
        data)? What a clinician needs to be given the patient as launch context."""
        if user != self.user or not self._linked(patient_id):
            return False
        request = _Request(self.actors, self.now_us, None)
        return PERMIT in _patient_outcomes(self.consents.get(patient_id, ()), request)

    def addressees(self, user: str) -> frozenset[str]:
        """The references that stand for ``user`` as the addressee of a message or the
        owner of a task: their Practitioner, PractitionerRoles and Organizations."""
        return self.actors | self.roles if user == self.user else frozenset()

    def _linked(self, patient_id: str) -> bool:
        return self.linked is None or patient_id in self.linked


def grants(
    user: str,
    consents: Iterable[Mapping[str, Any]],
    actors: Collection[str],
    now_us: int,
    linked: Collection[str] | None = None,
    roles: Collection[str] = (),
) -> ConsentGrants:
    """The :class:`ConsentGrants` of ``user`` (acting also as ``actors``: their
    Organizations; ``roles``: their PractitionerRoles) from the stored Consents of their
    patients."""
    return ConsentGrants(
        user,
        frozenset(actors),
        consents_by_patient(consents),
        now_us,
        None if linked is None else frozenset(linked),
        frozenset(roles),
    )


def consents_by_patient(
    consents: Iterable[Mapping[str, Any]],
) -> dict[str, tuple[Mapping[str, Any], ...]]:
    by_patient: dict[str, list[Mapping[str, Any]]] = {}
    for consent in consents:
        patient = _ref(consent.get("patient"))
        if patient and patient.startswith("Patient/") and consent.get("status") not in NOT_IN_FORCE:
            by_patient.setdefault(patient[len("Patient/") :], []).append(consent)
    return {p: tuple(items) for p, items in by_patient.items()}


def permitted_patients(
    consents: Iterable[Mapping[str, Any]],
    actors: Collection[str],
    now_us: int,
    resource_type: str | None = None,
) -> frozenset[str]:
    """The ids of the patients whose Consents permit one of ``actors`` now every
    resource of ``resource_type`` (None: whatever the type)."""
    request = _Request(frozenset(actors), now_us, resource_type)
    return frozenset(
        patient
        for patient, items in consents_by_patient(consents).items()
        if _patient_outcomes(items, request) == {PERMIT}
    )


def reaches(consents: Iterable[Mapping[str, Any]], actors: Collection[str], now_us: int) -> bool:
    """May one patient's ``consents`` permit ``actors`` anything now (some type, some
    data)? False once a withdrawal took all of it: then their tokens are revoked."""
    request = _Request(frozenset(actors), now_us, None)
    return any(
        PERMIT in _patient_outcomes(items, request)
        for items in consents_by_patient(consents).values()
    )


def organizations_of(roles: Iterable[Mapping[str, Any]], user: str) -> frozenset[str]:
    """The Organizations ``user`` (``Practitioner/x``) belongs to through active
    PractitionerRoles."""
    found: set[str] = set()
    for role in _active_roles(roles, user):
        org = _ref(role.get("organization"))
        if org and org.startswith("Organization/"):
            found.add(org)
    return frozenset(found)


def roles_of(roles: Iterable[Mapping[str, Any]], user: str) -> frozenset[str]:
    """``PractitionerRole/<id>`` of ``user``'s active PractitionerRoles."""
    return frozenset(
        f"PractitionerRole/{role['id']}"
        for role in _active_roles(roles, user)
        if isinstance(role.get("id"), str)
    )


def care_team_patients(
    care_teams: Iterable[Mapping[str, Any]], members: Collection[str], now_us: int
) -> frozenset[str]:
    """The patients with an active CareTeam (``status`` active, ``period`` holding now)
    whose ``participant.member`` is one of ``members`` -- the Practitioner, their
    PractitionerRoles, their Organizations -- for the participant's own ``period``
    (SEC-02: "a clinician needs an active Consent plus a CareTeam link")."""
    wanted = set(members)
    found: set[str] = set()
    for team in care_teams:
        subject = _ref(team.get("subject"))
        if team.get("status") != "active" or not subject or not subject.startswith("Patient/"):
            continue
        if _period_holds(team.get("period"), now_us) is not True:
            continue
        for participant in team.get("participant") or []:
            if not isinstance(participant, Mapping):
                continue
            if _ref(participant.get("member")) in wanted and (
                _period_holds(participant.get("period"), now_us) is True
            ):
                found.add(subject[len("Patient/") :])
                break
    return frozenset(found)


def named_parties(consent: Mapping[str, Any]) -> frozenset[str]:
    """Every reference a Consent names as a party: ``performer``, ``organization`` and
    the actors of every provision, nested ones included."""
    refs = set(_root_parties(consent))
    provision = consent.get("provision")
    if isinstance(provision, Mapping):
        for nested in _provisions(provision):
            refs |= _actor_refs(nested)
    return frozenset(refs)


def withdraws(consent: Mapping[str, Any]) -> bool:
    """Does this Consent version end a permit: withdrawn, entered in error, or a deny at
    its base (R4 consent.html, Consent.status and Consent.provision.type)?"""
    status = consent.get("status")
    if status in WITHDRAWING:
        return True
    provision = consent.get("provision")
    return status == "active" and isinstance(provision, Mapping) and provision.get("type") == DENY


# -- the evaluation ---------------------------------------------------------------------------


def _patient_outcomes(consents: Iterable[Mapping[str, Any]], request: _Request) -> frozenset[str]:
    """What one patient's Consents may answer: {permit} or {deny}/{none} when decided;
    several when the answer depends on what the request does not know (a search)."""
    by_when: dict[tuple[int, int], list[Mapping[str, Any]]] = {}
    for consent in consents:
        by_when.setdefault(_when(consent), []).append(consent)
    possible: set[str] = set()
    for when in sorted(by_when, reverse=True):
        outcomes = _combine(
            [_consent_outcomes(c, request) for c in by_when[when]], NONE, winner=PERMIT
        )
        possible |= outcomes - _NOTHING
        if NONE not in outcomes:
            return frozenset(possible)  # the latest Consent that says something decides
    return frozenset(possible | _NOTHING)


def _consent_outcomes(consent: Mapping[str, Any], request: _Request) -> frozenset[str]:
    status = consent.get("status")
    if status in WITHDRAWN:
        parties = {r for r in named_parties(consent) if _is_care_party(r)}
        return frozenset({DENY}) if not parties or parties & request.actors else _NOTHING
    if status != "active":
        return _NOTHING
    provision = consent.get("provision")
    return _outcomes(
        provision if isinstance(provision, Mapping) else {},
        consent,
        request,
        root=True,
        parent_kind=PERMIT,
        named=False,
    )


def _outcomes(
    provision: Mapping[str, Any],
    consent: Mapping[str, Any],
    request: _Request,
    *,
    root: bool,
    parent_kind: str,
    named: bool,
) -> frozenset[str]:
    kind = provision.get("type") or parent_kind
    if kind not in (PERMIT, DENY):
        kind = DENY  # a type we cannot read permits nothing
    applies = _applies(provision, consent, request, root)
    if applies is None and request.resource is not None:
        applies = kind == DENY  # undecidable on a known resource: fail closed
    if applies is False:
        return _NOTHING
    here = named or bool(
        (_root_parties(consent) if root else _actor_refs(provision)) & request.actors
    )
    own = DENY if kind == DENY else PERMIT if here else NONE
    children = [
        _outcomes(child, consent, request, root=False, parent_kind=kind, named=here)
        for child in provision.get("provision") or []
        if isinstance(child, Mapping)
    ]
    inside = _combine(children, own, winner=DENY)
    return inside if applies else inside | _NOTHING


def _combine(sets: list[frozenset[str]], own: str, *, winner: str) -> frozenset[str]:
    """The possible answers of several rules that may apply together: ``winner`` when
    any answers it, else the other type when any answers it, else ``own`` (the
    enclosing rule). Each set holds what one rule may answer."""
    if not sets:
        return frozenset({own})
    loser = PERMIT if winner == DENY else DENY
    out: set[str] = set()
    if any(winner in s for s in sets):
        out.add(winner)
    for i, s in enumerate(sets):
        others = (t for j, t in enumerate(sets) if j != i)
        if loser in s and all(t - {winner} for t in others):
            out.add(loser)
            break
    if all(NONE in s for s in sets):
        out.add(own)
    return frozenset(out)


def _applies(
    provision: Mapping[str, Any], consent: Mapping[str, Any], request: _Request, root: bool
) -> bool | None:
    """True, False, or None when it cannot be told (data criteria without the resource,
    an unreadable value)."""
    if root:
        parties = {r for r in _root_parties(consent) if _is_care_party(r)}
        if parties and not parties & request.actors:
            return False
    else:
        refs = _actor_refs(provision)
        if refs and not refs & request.actors:
            return False
    answers = [
        _period_holds(provision.get("period"), request.now_us),
        _class_matches(provision.get("class"), request.resource_type),
        _code_matches(provision.get("code"), request),
        _data_period_holds(provision.get("dataPeriod"), request),
        _data_matches(provision.get("data"), request),
        None if provision.get("securityLabel") else True,
    ]
    if False in answers:
        return False
    return None if None in answers else True


def _period_holds(period: Any, now_us: int) -> bool | None:
    if not isinstance(period, Mapping):
        return True
    start, end = period.get("start"), period.get("end")
    try:
        if isinstance(start, str) and date_range(start)[0] > now_us:
            return False
        if isinstance(end, str) and date_range(end)[1] < now_us:
            return False
    except InvalidDate:
        return None
    return True


def _class_matches(classes: Any, resource_type: str | None) -> bool | None:
    if not classes:
        return True
    if resource_type is None:
        return None
    for coding in classes:
        if (
            isinstance(coding, Mapping)
            and coding.get("system") in (None, RESOURCE_TYPES)
            and coding.get("code") == resource_type
        ):
            return True
    return False


def _code_matches(concepts: Any, request: _Request) -> bool | None:
    # R4 Consent.provision.code: "If this code is found in an instance, then the rule
    # applies" -- any coding of the resource, wherever it is.
    if not concepts:
        return True
    if request.resource is None:
        return None
    wanted = {
        (coding.get("system"), coding.get("code"))
        for concept in concepts
        if isinstance(concept, Mapping)
        for coding in concept.get("coding") or []
        if isinstance(coding, Mapping) and isinstance(coding.get("code"), str)
    }
    found = request.codes()
    return any((s, c) in found or (s is None and any(c == f for _, f in found)) for s, c in wanted)


def _data_period_holds(period: Any, request: _Request) -> bool | None:
    if not isinstance(period, Mapping):
        return True
    if request.resource is None:
        return None
    try:
        start = date_range(period["start"])[0] if isinstance(period.get("start"), str) else None
        end = date_range(period["end"])[1] if isinstance(period.get("end"), str) else None
    except InvalidDate:
        return None
    dates = request.dates()
    if not dates:
        return None  # no clinical date: cannot tell
    inside = [(start is None or lo >= start) and (end is None or hi <= end) for lo, hi in dates]
    outside = [
        (start is not None and hi < start) or (end is not None and lo > end) for lo, hi in dates
    ]
    if all(inside):
        return True
    if all(outside):
        return False
    return None  # partly inside: fail closed either way


def _data_matches(data: Any, request: _Request) -> bool | None:
    if not data:
        return True
    if request.resource is None:
        return None
    here = f"{request.resource_type}/{request.resource.get('id')}"
    for item in data:
        if not isinstance(item, Mapping) or item.get("meaning") != "instance":
            return None  # related / dependents / authoredby: not followed here
        if _ref(item.get("reference")) == here:
            return True
    return False


def _provisions(provision: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    yield provision
    for child in provision.get("provision") or []:
        if isinstance(child, Mapping):
            yield from _provisions(child)


def _actor_refs(provision: Mapping[str, Any]) -> set[str]:
    refs: set[str] = set()
    for actor in provision.get("actor") or []:
        if isinstance(actor, Mapping):
            ref = _ref(actor.get("reference"))
            if ref:
                refs.add(ref)
    return refs


def _root_parties(consent: Mapping[str, Any]) -> set[str]:
    provision = consent.get("provision")
    refs = _actor_refs(provision) if isinstance(provision, Mapping) else set()
    for key in ("performer", "organization"):
        for item in consent.get(key) or []:
            ref = _ref(item)
            if ref:
                refs.add(ref)
    return refs


def _is_care_party(ref: str) -> bool:
    """Who a Consent is about, besides the patient and their relatives (a Consent whose
    performer is only the patient, with no actor, is a blanket rule for everyone)."""
    return not ref.startswith(("Patient/", "RelatedPerson/"))


def _active_roles(roles: Iterable[Mapping[str, Any]], user: str) -> Iterator[Mapping[str, Any]]:
    for role in roles:
        if role.get("active") is not False and _ref(role.get("practitioner")) == user:
            yield role


def _codings(value: Any) -> Iterator[tuple[str | None, str]]:
    if isinstance(value, Mapping):
        code = value.get("code")
        if isinstance(code, str):
            system = value.get("system")
            yield (system if isinstance(system, str) else None, code)
        for item in value.values():
            if isinstance(item, (Mapping, list)):
                yield from _codings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _codings(item)


def _when(consent: Mapping[str, Any]) -> tuple[int, int]:
    def instant(value: Any) -> int:
        try:
            return date_range(value)[0] if isinstance(value, str) else 0
        except InvalidDate:
            return 0

    meta = consent.get("meta")
    updated = meta.get("lastUpdated") if isinstance(meta, Mapping) else None
    return instant(consent.get("dateTime")), instant(updated)


def _ref(value: Any) -> str | None:
    if isinstance(value, Mapping):
        ref = value.get("reference")
        return ref if isinstance(ref, str) else None
    return None
