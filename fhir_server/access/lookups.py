"""The stored facts behind access decisions, looked up through the search engine (no SQL
here, no HTTP): a clinician's Consents, PractitionerRoles, Organizations and CareTeams.

The HTTP enforcement (fhir_server.api.access, once per request) and the authorize step
(fhir_server.auth.authorize, when a clinician picks a patient or an EHR launches with one)
ask the same functions, and the pure decision (fhir_server.access.decision) answers on
what they found -- so a patient the token could never reach is refused at sign-in
exactly as every later request would refuse it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

from fhir_server.access.claims import PRACTITIONER
from fhir_server.access.consent import (
    ConsentGrants,
    care_team_patients,
    grants,
    named_parties,
    organizations_of,
    reaches,
    roles_of,
)
from fhir_server.access.decision import Allow, decide_launch
from fhir_server.config import Settings
from fhir_server.search import parse_search
from fhir_server.storage.repository import Repository
from fhir_server.storage.search_sql import execute_search, live_registry
from fhir_server.versioning import now_us

_LOOKUP_LIMIT = 1000  # Consents / PractitionerRoles read per lookup


def may_reach_patient(
    repository: Repository,
    settings: Settings,
    *,
    role: str | None,
    fhir_user: str | None,
    patient_id: str,
) -> bool:
    """May a person of ``role`` signed in as ``fhir_user`` be given ``patient_id`` as their
    launch context (a clinician's pick, an EHR launch)? The stored facts are looked up
    here; the answer is the access decision's (fhir_server.access.decision.decide_launch),
    on the same Consent facts every request of the token is then decided on."""
    consent = (
        lookup_consents(repository, settings, fhir_user)
        if role == PRACTITIONER and fhir_user
        else None
    )
    return isinstance(decide_launch(role, fhir_user, patient_id, consent), Allow)


def lookup_consents(
    repository: Repository, settings: Settings, user: str, moment: int | None = None
) -> ConsentGrants:
    """What the stored Consents permit ``user`` now (fhir_server.access.consent): the user's
    PractitionerRoles and Organizations, the CareTeams naming any of them, the Consents
    naming any of them, then every Consent of those patients (a later blanket refusal, or
    a Consent naming them only in a nested provision, counts too).

    With ``Settings.care_team_required`` (the default) only the patients of an active
    CareTeam the user belongs to are permitted (SEC-02: "an active Consent plus a
    CareTeam link")."""
    moment = now_us() if moment is None else moment
    if not user.startswith("Practitioner/"):
        return ConsentGrants(user)
    with repository.reading() as conn:
        find = _finder(settings, conn, moment)

        roles = find("PractitionerRole", [("practitioner", user)])
        orgs = organizations_of(roles, user)
        actors = sorted({user, *orgs})
        members = sorted({*actors, *roles_of(roles, user)})
        teams = find("CareTeam", [("participant", ",".join(members)), ("status", "active")])
        linked = care_team_patients(teams, members, moment)
        refs = ",".join(actors)
        naming: dict[str, dict[str, Any]] = {}
        for param, values in (("actor", refs), ("consentor", refs)):
            for consent in find("Consent", [(param, values)]):
                naming[consent["id"]] = consent
        if orgs:
            for consent in find("Consent", [("organization", ",".join(sorted(orgs)))]):
                naming[consent["id"]] = consent
        patients = {
            c["patient"]["reference"]
            for c in naming.values()
            if isinstance(c.get("patient"), dict)
            and str(c["patient"].get("reference", "")).startswith("Patient/")
        }
        patients |= {f"Patient/{p}" for p in linked}
        consents = list(naming.values())
        if patients:
            seen = set(naming)
            for consent in find("Consent", [("patient", ",".join(sorted(patients)))]):
                if consent["id"] not in seen:
                    consents.append(consent)
    required = settings.care_team_required
    roles_refs = sorted(set(members) - set(actors))
    return grants(user, consents, actors, moment, linked if required else None, roles_refs)


def _finder(
    settings: Settings, conn: Any, moment: int
) -> Callable[[str, list[tuple[str, str]]], list[dict[str, Any]]]:
    """A search of stored resources for the lookups behind access decisions (Consents,
    CareTeams, PractitionerRoles): strict, bounded, with the registry in force, as of
    ``moment``, on the caller's connection."""
    reg = live_registry(conn)

    def find(rtype: str, pairs: list[tuple[str, str]]) -> list[dict[str, Any]]:
        query = parse_search(
            rtype, [*pairs, ("_count", str(_LOOKUP_LIMIT))], strict=True, now_us=moment, reg=reg
        )
        result = execute_search(
            conn, query, base_url="", page_cursor=None, secret=settings.secret_key
        )
        return [orjson.loads(found.body) for found in result.matches]

    return find


def withdrawn_practitioners(
    repository: Repository,
    settings: Settings,
    patient: str,
    changed: Mapping[str, Mapping[str, Any] | None],
) -> list[tuple[str, str]]:
    """The practitioners whom ``patient``'s Consents permitted something before the
    Consents ``changed`` (id -> the version before, None for a new one) were written and
    permit nothing now: (practitioner, why). Candidates are the parties the Consents
    name, before and now -- Practitioners directly and through their Organizations'
    PractitionerRoles."""
    moment = now_us()
    with repository.reading() as conn:
        find = _finder(settings, conn, moment)

        now_in_force = find("Consent", [("patient", f"Patient/{patient}")])
        earlier: list[Mapping[str, Any]] = [c for c in now_in_force if c.get("id") not in changed]
        earlier += [c for c in changed.values() if c is not None]
        named: set[str] = set()
        for consent in [*now_in_force, *earlier]:
            named |= named_parties(consent)
        practitioners = {r for r in named if r.startswith("Practitioner/")}
        orgs = sorted(r for r in named if r.startswith("Organization/"))
        if orgs:
            for role in find("PractitionerRole", [("organization", ",".join(orgs))]):
                ref = role.get("practitioner")
                if isinstance(ref, dict) and str(ref.get("reference", "")).startswith(
                    "Practitioner/"
                ):
                    practitioners.add(ref["reference"])
        gone: list[tuple[str, str]] = []
        for practitioner in sorted(practitioners):
            roles = find("PractitionerRole", [("practitioner", practitioner)])
            actors = {practitioner, *organizations_of(roles, practitioner)}
            if reaches(earlier, actors, moment) and not reaches(now_in_force, actors, moment):
                gone.append((practitioner, f"Patient/{patient}'s Consent no longer permits them"))
    return gone
