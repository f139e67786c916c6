"""Is a code in a ValueSet, or in a CodeSystem? R4 core tables first, then terminology.

R4 core ValueSets that can be enumerated (administrative-gender, observation-status, ...)
come from ``data/r4-valuesets.json.gz``; the programme's own ValueSets from ``terminology``.
A ValueSet neither knows (SNOMED CT, LOINC or UCUM wholesale, MIME types, ...) answers
``None``: the binding is then reported as not checked rather than guessed.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from terminology import TerminologyError, expand


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
def value_set_codes(canonical: str) -> ValueSetCodes | None:
    url = canonical.split("|", 1)[0]
    table = _core()["valueSets"].get(url)
    if table is not None:
        by_system = {system: frozenset(codes) for system, codes in table.items()}
        for system, extra in _SYSTEM_TYPES.get(url, {}).items():
            by_system[system] = frozenset(extra)
    else:
        try:
            concepts = expand(url)
        except TerminologyError:
            return None
        grouped: dict[str, set[str]] = {}
        for concept in concepts:
            grouped.setdefault(concept.system, set()).add(concept.code)
        by_system = {system: frozenset(codes) for system, codes in grouped.items()}
    return ValueSetCodes(by_system, frozenset(c for codes in by_system.values() for c in codes))


def contains(canonical: str, system: str | None, code: str) -> bool | None:
    """True/False when the ValueSet is known; None when it cannot be enumerated here."""
    codes = value_set_codes(canonical)
    return None if codes is None else codes.contains(system, code)


@cache
def _code_systems() -> dict[str, frozenset[str]]:
    return {url: frozenset(codes) for url, codes in _core()["codeSystems"].items()}


def code_system_knows(system: str, code: str) -> bool | None:
    """True/False for a CodeSystem held complete (the FHIR R4 ones); None for any other."""
    codes = _code_systems().get(system)
    return None if codes is None else code in codes
