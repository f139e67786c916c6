"""Write-time conformance: is a new version valid against its profiles and its Questionnaire?

``check_write(session, resource)`` runs inside the write transaction, just before a version
is stored (``interactions/write.py::write_version``, the one place every create, update,
patch, conditional form, Bundle entry and event-handler write passes). It decides what the
resource is checked against:

1. every profile in ``meta.profile`` the server knows: the R4 core profiles, the programme's
   own (``profiles``), and any StructureDefinition with a snapshot stored in the server
   (looked up by ``url`` in the same transaction). A claimed profile the server does not
   know is a **warning**, not a refusal -- HAPI's instance validator reports unresolvable
   profiles as warnings unless ``errorForUnknownProfiles`` is set (off by default), and the
   HL7 reference validator does the same;
2. the programme's profile for a *programme resource*, claimed or not:

   ============================  =======================================================
   resource                      is a programme resource when
   ============================  =======================================================
   Patient                       an identifier has the NHS-number or CPR system
   Observation                   code has LOINC 41950-7 (daily steps); or ``method`` is
                                 from our scoring-algorithm CodeSystem, or code from our
                                 assessment CodeSystem (PROM score)
   CarePlan                      ``instantiatesCanonical`` names our weekly PlanDefinition
   Goal                          a target measure is LOINC 41950-7 (step goal)
   QuestionnaireResponse         ``questionnaire`` is under our Questionnaire base URL
   Consent                       a category coding or a ``policy.uri`` under our base URL
                                 (LOINC 59284-0 + OPTIN alone is what HL7's own R4 Consent
                                 examples carry, so it cannot mark a Consent as ours)
   ============================  =======================================================

3. for a QuestionnaireResponse, its Questionnaire (``profiles.check_questionnaire_response``):
   a contained one for ``#id``, else the stored Questionnaire with that ``url`` (and
   ``version`` after ``|``; without a version the most recently written one), else -- for
   our own canonical URLs only -- the packaged programme Questionnaire. A Questionnaire that
   cannot be found is a warning for other URLs (nothing to check against) and an error for
   ours: a response to a programme Questionnaire that does not exist (or a version that
   does not) cannot be scored and is refused.

Errors (and fatal issues) refuse the write with **422 Unprocessable Entity** and an
OperationOutcome listing every issue with its FHIRPath location; nothing is written (the
caller's transaction rolls back). Warnings do not refuse it: unknown extensions and unknown
profiles are warnings, as are extensible bindings. The warnings of a write are kept per
write session for the HTTP layer to show (``take_warnings``).

Cost: a resource with no ``meta.profile`` that is not a programme resource (every Synthea
resource) costs one dict lookup and a type test; nothing else runs.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

import orjson
from sqlalchemy import Connection, func, select

import mappings
import profiles
from fhir_server.errors import FhirError, Issue
from fhir_server.search import parse_search
from fhir_server.storage.repository import WriteSession
from fhir_server.storage.schema import resource as resource_table
from fhir_server.storage.schema import resource_history
from fhir_server.storage.search_sql import match_pks
from fhir_server.storage.terminology import terminology_service
from terminology import ValueSetMembership

T = TypeVar("T")

BASE = "http://selfback.example.org/fhir/"
QUESTIONNAIRE_BASE = BASE + "Questionnaire/"
PLAN_DEFINITION = BASE + "PlanDefinition/weekly-lbp-self-management"
SCORING_ALGORITHM = BASE + "CodeSystem/scoring-algorithm"
ASSESSMENT = BASE + "CodeSystem/assessment"
LOINC = "http://loinc.org"
DAILY_STEPS_CODE = "41950-7"

# What the write path tolerates from other systems (VALIDATOR.md: Synthea carries US Core
# extensions); the reference validator's defaults for what it cannot resolve.
OPTIONS = profiles.ValidationOptions(unknown_extensions="warning", unknown_profiles="warning")

# Best-practice invariants are hints, not warnings, at write time: HAPI's instance validator
# reports them at its BestPracticeWarningLevel, "Hint" by default. (dom-6: narrative.)
BEST_PRACTICE = frozenset({"dom-6"})

# What a client-supplied StructureDefinition that the validator cannot digest may raise;
# such a profile is reported as unusable (a warning), never as a server error.
_UNUSABLE = (KeyError, TypeError, ValueError, AttributeError, IndexError, RecursionError)

_warnings: weakref.WeakKeyDictionary[WriteSession, list[Issue]] = weakref.WeakKeyDictionary()
_warnings_lock = threading.Lock()
_builtin_profiles: frozenset[str] | None = None
_registered: dict[str, tuple[str, int]] = {}  # url -> (id, version) of the stored SD in use
_registered_lock = threading.Lock()
_MAX_MATCHES = 50  # resources sharing one canonical URL considered (versions of it)

# Binding membership per database: (fingerprint, ValueSet canonical -> codes or None).
_Codes = tuple[dict[str, frozenset[str]], frozenset[str]]
_TERMINOLOGY_TYPES = ("ValueSet", "CodeSystem")
_codes_cache: dict[str, tuple[tuple[str, tuple[Any, ...]], dict[str, _Codes | None]]] = {}
_codes_lock = threading.Lock()


class Definitions:
    """Where the checks find what they are checked against: StructureDefinitions and
    Questionnaires stored in the server (by ``url``) and the terminology service over the
    stored ValueSets and CodeSystems, all read through one connection -- the write
    transaction's (so a Bundle that stores a profile or ValueSet and then a resource using
    it is checked against what it stored) or a read connection for ``$validate``.

    ``connect`` is called once, on first use: a resource that needs nothing stored costs no
    query."""

    def __init__(self, connect: Callable[[], Connection]) -> None:
        self._connect = connect
        self._conn: Connection | None = None
        self._membership: ValueSetMembership | None = None
        self._fingerprint: tuple[str, tuple[Any, ...]] | None = None

    @property
    def connection(self) -> Connection:
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def latest(
        self, rtype: str, params: list[tuple[str, str]]
    ) -> tuple[tuple[str, int], dict[str, Any]] | None:
        """The most recently written current resource matching a search: ((id, version),
        parsed body)."""
        try:
            query = parse_search(rtype, params, strict=True)
        except FhirError:
            return None  # a URL the search syntax cannot express cannot name a stored resource
        conn = self.connection
        pks = conn.execute(match_pks(query).limit(_MAX_MATCHES)).scalars().all()
        if not pks:
            return None
        t = resource_table
        rows = conn.execute(
            select(t.c.id, t.c.version, t.c.last_updated, t.c.body).where(
                t.c.pk.in_(pks), ~t.c.deleted
            )
        ).all()
        if not rows:
            return None
        chosen = max(rows, key=lambda r: r.last_updated)
        body = orjson.loads(chosen.body)
        return ((chosen.id, chosen.version), body) if isinstance(body, dict) else None

    def validate_code(self, canonical: str, system: str | None, code: str) -> bool | None:
        """Binding membership through the terminology service: stored ValueSets and
        CodeSystems first, then the packaged ones (docs/CONTENT.md, terminology service).

        The codes of each ValueSet are kept per process under a fingerprint of the stored
        terminology (how many versions of ValueSets and CodeSystems exist, the newest write
        time and history key, read through this connection, so this transaction's own
        writes count): any write of a ValueSet or CodeSystem, committed by any process or
        made earlier in this transaction, changes it, and the expansion is recomputed. One
        indexed aggregate per check instead of the service's searches (2.75 -> 0.75 ms for
        a score Observation, VALIDATOR.md)."""
        found = self._value_set_codes(canonical)
        if found is None:
            return None
        by_system, every = found
        return code in every if system is None else code in by_system.get(system, ())

    def _value_set_codes(self, canonical: str) -> _Codes | None:
        conn = self.connection
        if self._fingerprint is None:
            h = resource_history
            row = conn.execute(
                select(func.count(), func.max(h.c.last_updated), func.max(h.c.hpk)).where(
                    h.c.rtype.in_(_TERMINOLOGY_TYPES)
                )
            ).one()
            self._fingerprint = (str(conn.engine.url), tuple(row))
        with _codes_lock:
            shared = _codes_cache.get(self._fingerprint[0])
            if shared is not None and shared[0] == self._fingerprint and canonical in shared[1]:
                return shared[1][canonical]
        if self._membership is None:
            service, _ = terminology_service(conn)
            self._membership = ValueSetMembership(service)
        codes = self._membership.codes(canonical)
        with _codes_lock:
            shared = _codes_cache.get(self._fingerprint[0])
            if shared is None or shared[0] != self._fingerprint:
                shared = (self._fingerprint, {})
                _codes_cache[self._fingerprint[0]] = shared
            shared[1][canonical] = codes
        return codes


def needs_checking(resource: dict[str, Any]) -> bool:
    """Does a write of ``resource`` run any check here (a claimed profile, a programme
    resource, a QuestionnaireResponse)? Everything else costs this test only."""
    meta = resource.get("meta")
    return bool(
        (isinstance(meta, dict) and meta.get("profile"))
        or resource.get("resourceType") == "QuestionnaireResponse"
        or programme_profile(resource) is not None
    )


def check(
    resource: dict[str, Any], definitions: Definitions, *, profile: str | None = None
) -> list[Issue]:
    """Every issue (errors and warnings) a write of ``resource`` raises here: its claimed
    profiles, our profile for a programme resource, and a QuestionnaireResponse's
    Questionnaire. ``profile``: one more profile to check against (``$validate``'s
    parameter; unlike a claimed one it must be known, operation-resource-validate: "If a
    profile is nominated, and the server cannot validate against the nominated profile, it
    SHALL return an error"). Nothing is written."""
    rtype = resource.get("resourceType")
    meta = resource.get("meta")
    claimed = meta.get("profile") if isinstance(meta, dict) else None
    implied = programme_profile(resource)
    if not claimed and implied is None and rtype != "QuestionnaireResponse" and not profile:
        return []
    issues: list[Issue] = []
    wanted: list[str] = []
    for index, url in enumerate(claimed if isinstance(claimed, list) else []):
        if isinstance(url, str):
            _claimed_profile(
                definitions, str(rtype), url, f"{rtype}.meta.profile[{index}]", wanted, issues
            )
    if profile:
        unusable: list[Issue] = []
        _claimed_profile(definitions, str(rtype), profile, str(rtype), wanted, unusable)
        issues += [Issue(i.code, i.diagnostics, "error", i.expression) for i in unusable]
    plain = [u.split("|", 1)[0] for u in wanted]
    if implied is not None and implied not in plain:
        wanted.append(implied)
    if wanted:
        try:
            found = profiles.validate(
                resource, list(dict.fromkeys(wanted)), options=validation_options(definitions)
            )
        except _UNUSABLE as e:
            # Only a StructureDefinition a client stored can lead here; refuse nothing on
            # the strength of a profile that cannot be evaluated.
            found = [
                profiles.Issue(
                    "warning", "not-supported", f"Profile validation could not run: {e}", ()
                )
            ]
        issues += [_issue(i) for i in found if i.rule not in BEST_PRACTICE]
    if rtype == "QuestionnaireResponse":
        issues += questionnaire_issues(definitions, resource)
    return _unique(issues)


def validation_options(definitions: Definitions) -> profiles.ValidationOptions:
    """``OPTIONS`` with bindings answered through the server's terminology service."""
    return replace(OPTIONS, validate_code=definitions.validate_code)


def check_write(session: WriteSession, resource: dict[str, Any]) -> None:
    """Raise a 422 FhirError when ``resource`` breaks a profile or its Questionnaire;
    remember its warnings on ``session``."""
    if not needs_checking(resource):
        return
    issues = check(resource, Definitions(session.search_connection))
    if any(i.severity in ("error", "fatal") for i in issues):
        raise FhirError(422, issues)
    notes = [i for i in issues if i.severity == "warning"]
    if notes:
        with _warnings_lock:
            _warnings.setdefault(session, []).extend(_unique(notes))


def take_warnings(session: WriteSession) -> list[Issue]:
    """The warnings recorded on ``session`` since the last call (and forget them)."""
    with _warnings_lock:
        return _warnings.pop(session, [])


def with_warnings(
    work: Callable[[WriteSession], T],
) -> Callable[[WriteSession], tuple[T, list[Issue]]]:
    """``work`` returning, beside its result, the warnings its writes raised."""

    def run(session: WriteSession) -> tuple[T, list[Issue]]:
        take_warnings(session)  # a retried transaction starts with none
        result = work(session)
        return result, take_warnings(session)

    return run


def entry_outcome(warnings: list[Issue], prefix: str) -> dict[str, Any]:
    """Warnings as the OperationOutcome of a Bundle entry's response (bundle.html:
    ``entry.response.outcome`` carries "hints and warnings" of processing the entry)."""
    return FhirError(200, warnings).with_location(prefix).to_operation_outcome()


# HAPI's RequestValidatingInterceptor names its response header so (DEFAULT_RESPONSE_HEADER_NAME).
RESPONSE_HEADER = "X-FHIR-Request-Validation"
_MAX_HEADERS = 10


def header_values(warnings: list[Issue]) -> list[str]:
    """One ``X-FHIR-Request-Validation`` value per warning (ASCII, at most 10 of 300 chars)."""
    values = []
    for issue in warnings[:_MAX_HEADERS]:
        where = f" {issue.expression[0]}" if issue.expression else ""
        text = f"{issue.severity}{where}: {issue.diagnostics}"
        text = text.encode("ascii", "replace").decode("ascii").replace("\r", " ").replace("\n", " ")
        values.append(text[:300])
    return values


def programme_profile(resource: dict[str, Any]) -> str | None:
    """Our profile for a programme resource (see the module docstring), else None."""
    rtype = resource.get("resourceType")
    if rtype == "Observation":
        if _has_coding(resource.get("code"), LOINC, DAILY_STEPS_CODE):
            return profiles.DAILY_STEPS
        if _has_system(resource.get("method"), SCORING_ALGORITHM) or _has_system(
            resource.get("code"), ASSESSMENT
        ):
            return profiles.PROM_SCORE
        return None
    if rtype == "Patient":
        for identifier in _list(resource.get("identifier")):
            if isinstance(identifier, dict) and identifier.get("system") in (
                profiles.NHS_NUMBER_SYSTEM,
                profiles.CPR_SYSTEM,
            ):
                return profiles.PATIENT
        return None
    if rtype == "QuestionnaireResponse":
        canonical = resource.get("questionnaire")
        if isinstance(canonical, str) and canonical.startswith(QUESTIONNAIRE_BASE):
            return profiles.PROGRAMME_RESPONSE
        return None
    if rtype == "CarePlan":
        for canonical in _list(resource.get("instantiatesCanonical")):
            if isinstance(canonical, str) and canonical.split("|", 1)[0] == PLAN_DEFINITION:
                return profiles.WEEKLY_CAREPLAN
        return None
    if rtype == "Goal":
        for target in _list(resource.get("target")):
            if isinstance(target, dict) and _has_coding(
                target.get("measure"), LOINC, DAILY_STEPS_CODE
            ):
                return profiles.STEP_GOAL
        return None
    if rtype == "Consent":
        ours = any(
            isinstance(c, dict) and str(c.get("system", "")).startswith(BASE)
            for category in _list(resource.get("category"))
            if isinstance(category, dict)
            for c in _list(category.get("coding"))
        ) or any(
            isinstance(p, dict) and str(p.get("uri", "")).startswith(BASE)
            for p in _list(resource.get("policy"))
        )
        return profiles.DATA_SHARING_CONSENT if ours else None
    return None


def questionnaire_issues(definitions: Definitions, response: dict[str, Any]) -> list[Issue]:
    canonical = response.get("questionnaire")
    if not isinstance(canonical, str):
        return []
    questionnaire = resolve_questionnaire(definitions, response, canonical)
    where = "QuestionnaireResponse.questionnaire"
    if questionnaire is None:
        if canonical.startswith(QUESTIONNAIRE_BASE):
            return [
                Issue(
                    "not-found",
                    f"{canonical} is not a Questionnaire of the programme (unknown URL or version)",
                    "error",
                    (where,),
                )
            ]
        return [
            Issue(
                "not-found",
                f"Questionnaire {canonical} is not known here; the answers were not checked"
                " against it",
                "warning",
                (where,),
            )
        ]
    return [
        _issue(i)
        for i in profiles.check_questionnaire_response(
            response, questionnaire, validate_code=definitions.validate_code
        )
    ]


def resolve_questionnaire(
    definitions: Definitions, response: dict[str, Any], canonical: str
) -> dict[str, Any] | None:
    if canonical.startswith("#"):
        for contained in _list(response.get("contained")):
            if (
                isinstance(contained, dict)
                and contained.get("resourceType") == "Questionnaire"
                and contained.get("id") == canonical[1:]
            ):
                return contained
        return None
    url, _, version = canonical.partition("|")
    params = [("url", _escape(url))]
    if version:
        params.append(("version", _escape(version)))
    stored = definitions.latest("Questionnaire", params)
    if stored is not None:
        return stored[1]
    if url.startswith(QUESTIONNAIRE_BASE):
        return mappings.questionnaire(canonical)
    return None


# -- profiles -----------------------------------------------------------------------------


def _claimed_profile(
    definitions: Definitions,
    rtype: str,
    url: str,
    where: str,
    wanted: list[str],
    issues: list[Issue],
) -> None:
    """Add a claimed profile to ``wanted`` if it can be used, else note why not (at
    ``where``)."""
    plain = url.split("|", 1)[0]
    if plain not in _builtin() and not _load_stored_profile(definitions, plain, where, issues):
        return
    try:
        constrained = profiles.profile_type(plain)
    except _UNUSABLE as exc:  # a stored StructureDefinition whose snapshot cannot be read
        issues.append(
            Issue(
                "not-supported",
                f"Profile {url} cannot be used: {type(exc).__name__}: {exc}",
                "warning",
                (where,),
            )
        )
        return
    if constrained is None:
        issues.append(
            Issue(
                "not-found",
                f"Profile {url} is not known to this server; it was not checked",
                "warning",
                (where,),
            )
        )
        return
    if constrained != rtype:
        issues.append(
            Issue("invalid", f"Profile {url} is for {constrained}, not {rtype}", "error", (where,))
        )
        return
    wanted.append(plain)


def _builtin() -> frozenset[str]:
    """The profiles the validator ships (R4 core and ours), before any stored one is added."""
    global _builtin_profiles
    if _builtin_profiles is None:
        _builtin_profiles = frozenset(profiles.known_profiles())
    return _builtin_profiles


def _load_stored_profile(
    definitions: Definitions, url: str, where: str, issues: list[Issue]
) -> bool:
    """Make the stored StructureDefinition with ``url`` usable; False when there is none.

    Looked up on every use, so a StructureDefinition updated or deleted in the server takes
    effect on the next write (the validator's copy is replaced when the stored version
    changes)."""
    found = definitions.latest("StructureDefinition", [("url", _escape(url))])
    if found is None:
        issues.append(
            Issue(
                "not-found",
                f"Profile {url} is not known to this server; it was not checked",
                "warning",
                (where,),
            )
        )
        return False
    key, definition = found
    if "snapshot" not in definition:
        issues.append(
            Issue(
                "not-supported",
                f"The stored StructureDefinition {url} has no snapshot; it was not checked",
                "warning",
                (where,),
            )
        )
        return False
    with _registered_lock:
        if _registered.get(url) == key:
            return True
        try:
            profiles.add_structure_definition(definition)
        except _UNUSABLE as exc:
            issues.append(
                Issue(
                    "not-supported",
                    f"The stored StructureDefinition {url} cannot be used: {exc}",
                    "warning",
                    (where,),
                )
            )
            return False
        _registered[url] = key
    return True


# -- helpers ------------------------------------------------------------------------------


def _escape(value: str) -> str:
    """A search value taken literally (search.html#escaping)."""
    for char in ("\\", ",", "$", "|"):
        value = value.replace(char, "\\" + char)
    return value


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _codings(concept: Any) -> list[dict[str, Any]]:
    if not isinstance(concept, dict):
        return []
    return [c for c in _list(concept.get("coding")) if isinstance(c, dict)]


def _has_coding(concept: Any, system: str, code: str) -> bool:
    return any(c.get("system") == system and c.get("code") == code for c in _codings(concept))


def _has_system(concept: Any, system: str) -> bool:
    return any(c.get("system") == system for c in _codings(concept))


def _issue(found: profiles.Issue) -> Issue:
    return Issue(found.code, found.diagnostics, found.severity, tuple(found.expression))


def _unique(issues: list[Issue]) -> list[Issue]:
    seen: set[tuple[str, str, str, tuple[str, ...]]] = set()
    out = []
    for issue in issues:
        key = (issue.severity, issue.code, issue.diagnostics, issue.expression)
        if key not in seen:
            seen.add(key)
            out.append(issue)
    return out


__all__ = [
    "OPTIONS",
    "Definitions",
    "check",
    "check_write",
    "needs_checking",
    "programme_profile",
    "questionnaire_issues",
    "resolve_questionnaire",
    "take_warnings",
    "with_warnings",
    "entry_outcome",
    "header_values",
    "RESPONSE_HEADER",
]
