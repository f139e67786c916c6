"""SMART scopes: parsing, coverage, and the granted-scope intersection.

Pure code. SMART App Launch 2.2 scopes-and-launch-context.html:

- resource scopes ``(patient|user|system)/(Type|*).<permissions>[?param=value&...]`` where
  v2 permissions are letters of ``cruds`` in that order and v1 suffixes are ``read``
  (= ``rs``), ``write`` (= ``cud``) and ``*`` (= ``cruds``) (SAL-40, SAL-41);
- a query suffix narrows the scope to resources matching every ``param=value`` (SAL-42);
- launch and identity scopes: ``launch``, ``launch/patient``, ``launch/encounter``,
  ``openid``, ``fhirUser``, ``profile``, ``offline_access``, ``online_access`` (SAL-44);
- custom scopes are URIs or start with ``__`` and are passed through untouched.

The granted scope is ``requested ∩ client registration ∩ user role`` (:func:`intersect`);
each resource scope meets each allowed one, so ``patient/*.cruds`` requested against an
allowed ``patient/Observation.rs`` yields ``patient/Observation.rs``. A scope asked for in
v1 is answered in v1 whenever its permissions have a v1 spelling.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

CONTEXTS = ("patient", "user", "system")
PERMISSION_ORDER = "cruds"
V1_SUFFIXES = {"read": "rs", "write": "cud", "*": "cruds"}
V1_SPELLING = {frozenset(v): k for k, v in V1_SUFFIXES.items()}

LAUNCH = "launch"
LAUNCH_PATIENT = "launch/patient"
LAUNCH_ENCOUNTER = "launch/encounter"
OPENID = "openid"
FHIR_USER = "fhirUser"
PROFILE = "profile"
OFFLINE_ACCESS = "offline_access"
ONLINE_ACCESS = "online_access"
SPECIAL_SCOPES = frozenset(
    {
        LAUNCH,
        LAUNCH_PATIENT,
        LAUNCH_ENCOUNTER,
        OPENID,
        FHIR_USER,
        PROFILE,
        OFFLINE_ACCESS,
        ONLINE_ACCESS,
    }
)

_RESOURCE_SCOPE = re.compile(
    r"^(?P<context>patient|user|system)/(?P<type>\*|[A-Z][A-Za-z]{0,63})\."
    r"(?P<perms>[a-z*]+)(?:\?(?P<query>.+))?$"
)
_V2_PERMISSIONS = re.compile(r"^c?r?u?d?s?$")
_QUERY_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-.:]*$")

Query = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True, order=True)
class ResourceScope:
    """One resource scope: who it speaks for, which type, which permissions, which rows."""

    context: str  # patient | user | system
    resource_type: str  # a FHIR resource type, or "*"
    permissions: frozenset[str]  # letters of "cruds"
    query: Query = ()  # every (param, value) must match (SAL-42)
    v1: bool = False  # asked in v1 spelling: answer in v1 when possible (SAL-41)

    def allows(self, resource_type: str | None, permission: str) -> bool:
        """Does this scope grant ``permission`` (one letter) on ``resource_type``, at least
        for the rows its query selects? ``None`` means "any type" and needs ``*``."""
        if permission not in self.permissions:
            return False
        return self.resource_type == "*" or self.resource_type == resource_type

    def covers(self, other: ResourceScope) -> bool:
        """Is everything ``other`` grants also granted by this scope?"""
        return (
            self.context == other.context
            and self.resource_type in ("*", other.resource_type)
            and self.permissions >= other.permissions
            and set(self.query) <= set(other.query)
        )

    def __str__(self) -> str:
        suffix = V1_SPELLING.get(self.permissions) if self.v1 else None
        if suffix is None:
            suffix = "".join(p for p in PERMISSION_ORDER if p in self.permissions)
        text = f"{self.context}/{self.resource_type}.{suffix}"
        if self.query:
            text += "?" + "&".join(f"{k}={v}" for k, v in self.query)
        return text


@dataclass(frozen=True, slots=True)
class Scopes:
    """A parsed scope string: resource scopes plus launch, identity and custom scopes."""

    resources: tuple[ResourceScope, ...] = ()
    others: frozenset[str] = frozenset()  # launch/identity scopes and custom scopes

    def __contains__(self, scope: str) -> bool:
        return scope in self.others

    def __str__(self) -> str:
        return render(self)

    def __bool__(self) -> bool:
        return bool(self.resources or self.others)

    @property
    def contexts(self) -> frozenset[str]:
        return frozenset(s.context for s in self.resources)

    def of_context(self, context: str) -> tuple[ResourceScope, ...]:
        return tuple(s for s in self.resources if s.context == context)

    @property
    def wants_refresh(self) -> bool:
        """offline_access or online_access: the grant may carry a refresh token (SAL-44)."""
        return OFFLINE_ACCESS in self.others or ONLINE_ACCESS in self.others

    def without_resources(self, drop: Iterable[ResourceScope]) -> Scopes:
        gone = set(drop)
        return Scopes(tuple(s for s in self.resources if s not in gone), self.others)

    def without(self, *names: str) -> Scopes:
        return Scopes(self.resources, self.others - set(names))


def is_custom(scope: str) -> bool:
    """Custom scopes are URIs or start with ``__`` (SAL-44)."""
    return scope.startswith("__") or "://" in scope or scope.startswith("urn:")


def parse_resource_scope(text: str) -> ResourceScope | None:
    """One resource scope, or ``None`` if ``text`` is not a well-formed one."""
    match = _RESOURCE_SCOPE.match(text)
    if match is None:
        return None
    perms = match["perms"]
    if perms in V1_SUFFIXES:
        permissions, v1 = frozenset(V1_SUFFIXES[perms]), True
    elif _V2_PERMISSIONS.match(perms):
        permissions, v1 = frozenset(perms), False
    else:
        return None  # e.g. ".sr" (wrong order) or ".x": malformed, never granted
    query = _parse_query(match["query"]) if match["query"] else ()
    if query is None:
        return None
    return ResourceScope(match["context"], match["type"], permissions, query, v1)


def _parse_query(text: str) -> Query | None:
    pairs: list[tuple[str, str]] = []
    for part in text.split("&"):
        name, sep, value = part.partition("=")
        if not sep or not value or not _QUERY_NAME.match(name):
            return None
        pairs.append((name, value))
    return tuple(sorted(set(pairs)))


def parse(scope: str | Iterable[str] | None) -> Scopes:
    """Parse a space-separated scope string (or the scopes one by one). Malformed resource
    scopes and unknown words are dropped: they can never be granted."""
    words = scope.split() if isinstance(scope, str) else list(scope or ())
    resources: list[ResourceScope] = []
    others: set[str] = set()
    for word in words:
        # A query scope's value may hold a URI (SMART's own example is
        # "patient/Observation.rs?category=http://...|laboratory"): it is a resource
        # scope, not a custom URI scope.
        resource_like = word.startswith(tuple(f"{c}/" for c in CONTEXTS))
        if word in SPECIAL_SCOPES or (is_custom(word) and not resource_like):
            others.add(word)
            continue
        parsed = parse_resource_scope(word)
        if parsed is not None:
            resources.append(parsed)
    return Scopes(_simplify(resources), frozenset(others))


def render(scopes: Scopes) -> str:
    """The scope string, in a stable order: launch/identity scopes first."""
    words = sorted(scopes.others, key=_special_order) + [str(s) for s in scopes.resources]
    return " ".join(words)


_ORDER = [
    LAUNCH,
    LAUNCH_PATIENT,
    LAUNCH_ENCOUNTER,
    OPENID,
    FHIR_USER,
    PROFILE,
    OFFLINE_ACCESS,
    ONLINE_ACCESS,
]


def _special_order(word: str) -> tuple[int, str]:
    return (_ORDER.index(word) if word in _ORDER else len(_ORDER), word)


def meet(requested: ResourceScope, allowed: ResourceScope) -> ResourceScope | None:
    """The largest scope inside both, or ``None`` if they share nothing."""
    if requested.context != allowed.context:
        return None
    if allowed.resource_type in ("*", requested.resource_type):
        rtype = requested.resource_type
    elif requested.resource_type == "*":
        rtype = allowed.resource_type
    else:
        return None
    permissions = requested.permissions & allowed.permissions
    if not permissions:
        return None
    # Both queries must hold: their conjunction is the union of the conditions.
    query = tuple(sorted(set(requested.query) | set(allowed.query)))
    return ResourceScope(requested.context, rtype, permissions, query, requested.v1)


def intersect(requested: Scopes, *allowed: Scopes) -> Scopes:
    """``requested ∩ allowed[0] ∩ allowed[1] ...``: what may be granted."""
    result = requested
    for limit in allowed:
        met = [
            m for r in result.resources for a in limit.resources if (m := meet(r, a)) is not None
        ]
        result = Scopes(_simplify(met), result.others & limit.others)
    return result


def is_subset(requested: Scopes, granted: Scopes) -> bool:
    """Is every requested scope covered by a granted one (refresh narrowing, SAL-61)?"""
    if not requested.others <= granted.others:
        return False
    return all(any(g.covers(r) for g in granted.resources) for r in requested.resources)


def _simplify(scopes: Iterable[ResourceScope]) -> tuple[ResourceScope, ...]:
    """Drop duplicates and scopes another one in the set already covers."""
    unique = sorted(set(scopes), key=lambda s: (s.context, s.resource_type, str(s)))
    kept: list[ResourceScope] = []
    for i, scope in enumerate(unique):
        covered = any(
            other.covers(scope) and (not scope.covers(other) or j < i)
            for j, other in enumerate(unique)
            if j != i
        )
        if not covered:
            kept.append(scope)
    return tuple(kept)
