"""ValueSet expansion and $validate-code over our own content (no filters, no external servers)."""

from dataclasses import dataclass
from functools import cache

from terminology._content import packaged_by_url, split_canonical
from terminology._lookup import Concept, _codesystem_index, _ordinal, lookup
from terminology.errors import TerminologyError

Key = tuple[str, str]


@dataclass(frozen=True, slots=True)
class ValidationResult:
    """Answer of ``validate_code`` (the ``result``/``message``/``display`` of FHIR $validate-code)."""

    result: bool
    message: str
    display: str | None = None


def _include_codes(include: dict, seen: frozenset[str]) -> dict[Key, Concept]:
    codes: dict[Key, Concept] | None = None
    system = include.get("system")
    if "filter" in include:
        raise TerminologyError(
            f"filters in {system} are not supported by this library", "not-supported"
        )
    if system is not None:
        codes = {}
        if "concept" in include:
            for c in include["concept"]:
                known = lookup(system, c["code"])
                display = c.get("display") or (known.display if known else None)
                codes[(system, c["code"])] = Concept(
                    system=system, code=c["code"], display=display, ordinal=_ordinal(c)
                )
        else:
            # FHIR R4 valueset.html#compose: a bare system includes every code of it. We can only
            # enumerate our own CodeSystems; grouping concepts marked notSelectable are left out.
            if packaged_by_url(system) is None:
                raise TerminologyError(f"cannot expand all of {system}", "not-supported")
            for concept in _codesystem_index(system).values():
                if concept.properties.get("notSelectable") is True:
                    continue
                codes[(system, concept.code)] = concept
    for imported in include.get("valueSet", []):
        other = _expand_cached(imported, seen)
        codes = other if codes is None else {k: v for k, v in codes.items() if k in other}
    return codes or {}


def _expand(canonical: str, seen: frozenset[str]) -> dict[Key, Concept]:
    url, version = split_canonical(canonical)
    if url in seen:
        raise TerminologyError(f"value set {url} imports itself", "invalid")
    vs = packaged_by_url(url)
    if vs is None or vs.get("resourceType") != "ValueSet":
        raise TerminologyError(f"unknown value set {canonical}")
    if version is not None and vs.get("version") != version:
        raise TerminologyError(f"value set {url} has no version {version}")
    compose = vs.get("compose", {})
    inner = seen | {url}
    codes: dict[Key, Concept] = {}
    for include in compose.get("include", []):
        codes.update(_include_codes(include, inner))
    for exclude in compose.get("exclude", []):
        for key in _include_codes(exclude, inner):
            codes.pop(key, None)
    return codes


@cache
def _expand_cached(canonical: str, seen: frozenset[str] = frozenset()) -> dict[Key, Concept]:
    return _expand(canonical, seen)


def expand(valueset_url: str) -> list[Concept]:
    """The codes of a ValueSet of ours, in compose order. Raises TerminologyError."""
    return list(_expand_cached(valueset_url).values())


def validate_code(valueset_url: str, system: str, code: str) -> ValidationResult:
    """Is (system, code) in the ValueSet? Raises TerminologyError for an unknown ValueSet."""
    found = _expand_cached(valueset_url).get((system, code))
    if found is None:
        return ValidationResult(False, f"{system}#{code} is not in {valueset_url}")
    return ValidationResult(True, "ok", found.display)
