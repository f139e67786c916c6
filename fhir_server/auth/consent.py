"""Clinician consent from stored R4 Consent resources (issue 4 item 7, SEC-02). Pure code.

SMART has no consent model; ours is R4 ``Consent`` (scope patient-privacy). A clinician
(``user/`` scopes, role practitioner) sees a patient's data only while a Consent of that
patient permits them. A Consent *names* the clinician when ``provision.actor.reference``,
``performer`` or ``organization`` refers to their Practitioner, or to an Organization
they belong to through a PractitionerRole. It *permits* when

- ``status`` is ``active``;
- ``provision.type`` is ``permit`` (or absent: R4 consent.html, the base provision of a
  privacy consent is the rule itself);
- ``provision.period``, when given, holds now;
- no later Consent of the same patient that names them -- or names no care party at
  all (only the patient or a relative), a patient's blanket refusal -- denies (``provision.type = deny``, active) or is
  ``inactive``/``rejected``. "Later" is by ``dateTime``, then ``meta.lastUpdated``.

``draft``, ``proposed`` and ``entered-in-error`` Consents are not in force and count for
nothing. Nested ``provision.provision`` exceptions are not evaluated (docs/AUTH.md "Not
done"). Withdrawal -- the Consent made inactive, rejected or deleted, or a later deny --
takes effect on the next request: the caller looks the Consents up on every request.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from fhir_server.search.dates import InvalidDate, date_range

NOT_IN_FORCE = frozenset({"draft", "proposed", "entered-in-error"})
WITHDRAWN = frozenset({"inactive", "rejected"})


@dataclass(frozen=True, slots=True)
class ConsentGrants:
    """The answer for one user, looked up once per request: the :class:`Consent` protocol
    of fhir_server.auth.access."""

    user: str
    permitted: frozenset[str]

    def permits(self, user: str, patient_id: str) -> bool:
        return user == self.user and patient_id in self.permitted

    def patients(self, user: str) -> Collection[str]:
        return self.permitted if user == self.user else ()


def organizations_of(roles: Iterable[Mapping[str, Any]], user: str) -> frozenset[str]:
    """The Organizations ``user`` (``Practitioner/x``) belongs to through active
    PractitionerRoles."""
    found: set[str] = set()
    for role in roles:
        if role.get("active") is False:
            continue
        if _ref(role.get("practitioner")) != user:
            continue
        org = _ref(role.get("organization"))
        if org and org.startswith("Organization/"):
            found.add(org)
    return frozenset(found)


def permitted_patients(
    consents: Iterable[Mapping[str, Any]], actors: Collection[str], now_us: int
) -> frozenset[str]:
    """The ids of the patients whose Consents permit one of ``actors`` now."""
    by_patient: dict[str, list[Mapping[str, Any]]] = {}
    for consent in consents:
        patient = _ref(consent.get("patient"))
        if patient and patient.startswith("Patient/") and consent.get("status") not in NOT_IN_FORCE:
            by_patient.setdefault(patient[len("Patient/") :], []).append(consent)
    permitted: set[str] = set()
    for patient, items in by_patient.items():
        relevant = [c for c in items if _names(c, actors) or not _care_parties(c)]
        permits = [c for c in relevant if _names(c, actors) and _permits(c, now_us)]
        if not permits:
            continue
        latest_permit = max(_when(c) for c in permits)
        if not any(_refuses(c) and _when(c) > latest_permit for c in relevant):
            permitted.add(patient)
    return frozenset(permitted)


def _permits(consent: Mapping[str, Any], now_us: int) -> bool:
    if consent.get("status") != "active":
        return False
    provision = consent.get("provision")
    provision = provision if isinstance(provision, Mapping) else {}
    if provision.get("type", "permit") != "permit":
        return False
    period = provision.get("period")
    if isinstance(period, Mapping):
        start, end = period.get("start"), period.get("end")
        try:
            if isinstance(start, str) and date_range(start)[0] > now_us:
                return False
            if isinstance(end, str) and date_range(end)[1] < now_us:
                return False
        except InvalidDate:
            return False  # a period we cannot read permits nothing
    return True


def _refuses(consent: Mapping[str, Any]) -> bool:
    status = consent.get("status")
    if status in WITHDRAWN:
        return True
    provision = consent.get("provision")
    return status == "active" and isinstance(provision, Mapping) and provision.get("type") == "deny"


def _named(consent: Mapping[str, Any]) -> set[str]:
    refs: set[str] = set()
    provision = consent.get("provision")
    if isinstance(provision, Mapping):
        for actor in provision.get("actor") or []:
            if isinstance(actor, Mapping):
                ref = _ref(actor.get("reference"))
                if ref:
                    refs.add(ref)
    for key in ("performer", "organization"):
        for item in consent.get(key) or []:
            ref = _ref(item)
            if ref:
                refs.add(ref)
    return refs


def _care_parties(consent: Mapping[str, Any]) -> set[str]:
    """Who a Consent is about, besides the patient and their relatives (a Consent whose
    performer is only the patient, with no actor, is a blanket rule for everyone)."""
    return {r for r in _named(consent) if not r.startswith(("Patient/", "RelatedPerson/"))}


def _names(consent: Mapping[str, Any], actors: Collection[str]) -> bool:
    return bool(_named(consent) & set(actors))


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
