"""Is a code in a ValueSet, or in a CodeSystem? R4 core tables first, then terminology.

R4 core ValueSets that can be enumerated (administrative-gender, observation-status, ...)
come from ``data/r4-valuesets.json.gz`` (R4 fixes them: a stored copy under the same URL
cannot change what R4 requires). Any other ValueSet is asked of the *terminology
callable* in force (``ValidationOptions.validate_code``: the server passes one over its
terminology service, so stored ValueSets count), else of the packaged terminology service
(the programme's content and the R4 core ValueSets the tables lack). A ValueSet none of
them can enumerate (SNOMED CT, LOINC or UCUM wholesale, MIME types, ...) answers ``None``:
the binding is then reported as not checked rather than guessed (terminologies.html#strength
leaves unknowable memberships to the validator; the reference validator warns likewise).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from terminology import TerminologyService, ValueSetMembership

# (ValueSet canonical, system or None for a bare code, code) -> True / False, or None when
# the ValueSet cannot be enumerated by whoever answers.
ValidateCode = Callable[[str, str | None, str], bool | None]

_CALLABLE: ContextVar[ValidateCode | None] = ContextVar("profiles_validate_code", default=None)


@contextmanager
def using(validate_code: ValidateCode | None) -> Iterator[None]:
    """Bindings checked during the block consult ``validate_code`` (None: the packaged
    terminology) for ValueSets the R4 core tables do not hold."""
    token = _CALLABLE.set(validate_code)
    try:
        yield
    finally:
        _CALLABLE.reset(token)


@cache
def _packaged() -> ValueSetMembership:
    return ValueSetMembership(TerminologyService())


@dataclass(frozen=True, slots=True)
class ValueSetCodes:
    by_system: dict[str, frozenset[str]]
    codes: frozenset[str]

    def contains(self, system: str | None, code: str) -> bool:
        if system is None:
            return code in self.codes
        return code in self.by_system.get(system, frozenset())


@cache
def _core() -> dict[str, Any]:
    raw = resources.files("profiles").joinpath("data", "r4-valuesets.json.gz").read_bytes()
    data: dict[str, Any] = json.loads(gzip.decompress(raw))
    return data


# FHIR R4 elementdefinition.html#type: the snapshots type Element.id, Extension.url and
# primitive values with FHIRPath system types, which defined-types does not list.
_SYSTEM_TYPES = {
    "http://hl7.org/fhir/ValueSet/defined-types": {
        "": [
            f"http://hl7.org/fhirpath/System.{name}"
            for name in ("Boolean", "Date", "DateTime", "Decimal", "Integer", "String", "Time")
        ]
    }
}


@cache
def core_codes(canonical: str) -> ValueSetCodes | None:
    """An R4 core ValueSet from the generated table, else None."""
    url = canonical.split("|", 1)[0]
    table = _core()["valueSets"].get(url)
    if table is None:
        return None
    by_system = {system: frozenset(codes) for system, codes in table.items()}
    for system, extra in _SYSTEM_TYPES.get(url, {}).items():
        by_system[system] = frozenset(extra)
    return ValueSetCodes(by_system, frozenset(c for codes in by_system.values() for c in codes))


@cache
def _not_enumerable() -> frozenset[str]:
    return frozenset(_core()["notEnumerable"])


def contains(canonical: str, system: str | None, code: str) -> bool | None:
    """True/False when the ValueSet is known; None when it cannot be enumerated here."""
    codes = core_codes(canonical)
    if codes is not None:
        return codes.contains(system, code)
    if canonical.split("|", 1)[0] in _not_enumerable():
        return None  # R4 core, needs SNOMED CT / UCUM / MIME types...: nobody here can say
    answer = _CALLABLE.get() or _packaged()
    return answer(canonical, system, code)


def can_enumerate(canonical: str) -> bool:
    """Can the ValueSet's membership be decided here (for "a code is required" rules)?"""
    if core_codes(canonical) is not None:
        return True
    if canonical.split("|", 1)[0] in _not_enumerable():
        return False
    answer = _CALLABLE.get() or _packaged()
    # A code no ValueSet holds: False from whoever can enumerate it, None otherwise.
    return answer(canonical, None, "\x00") is not None


@cache
def _code_systems() -> dict[str, frozenset[str]]:
    return {url: frozenset(codes) for url, codes in _core()["codeSystems"].items()}


def code_system_knows(system: str, code: str) -> bool | None:
    """True/False for a CodeSystem held complete (the FHIR R4 ones); None for any other."""
    codes = _code_systems().get(system)
    return None if codes is None else code in codes
