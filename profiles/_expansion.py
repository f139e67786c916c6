"""Enumerating ValueSets from CodeSystems we hold in full (used by the generator).

Only what can be enumerated exactly is enumerated: includes of concepts, of whole complete
CodeSystems, ``is-a`` / ``descendent-of`` / ``is-not-a`` filters over hierarchies we have, and
imports of other enumerable ValueSets (FHIR R4 valueset.html#compose). Anything else (SNOMED CT
filters, LOINC, regex filters, CodeSystems absent or ``not-present``) makes the ValueSet
*not enumerable*, and the validator reports such bindings as not checked instead of guessing.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

Codes = dict[str, set[str]]  # system -> codes


class NotEnumerable(Exception):
    """The ValueSet cannot be expanded exactly from the CodeSystems at hand."""


def _walk(
    concepts: list[dict[str, Any]], parent: str | None = None
) -> Iterator[tuple[str, str | None]]:
    for concept in concepts:
        yield concept["code"], parent
        yield from _walk(concept.get("concept", []), concept["code"])


class Expander:
    def __init__(
        self, code_systems: Mapping[str, dict[str, Any]], value_sets: Mapping[str, dict[str, Any]]
    ) -> None:
        self.code_systems = code_systems
        self.value_sets = value_sets
        self._cache: dict[str, Codes] = {}

    def _system_codes(self, system: str) -> tuple[set[str], dict[str, set[str]]]:
        """(all codes, children by code) of a complete CodeSystem."""
        cs = self.code_systems.get(system)
        if cs is None or cs.get("content") != "complete":
            raise NotEnumerable(f"CodeSystem {system} is not held in full")
        codes: set[str] = set()
        children: dict[str, set[str]] = {}
        for code, parent in _walk(cs.get("concept", [])):
            codes.add(code)
            if parent is not None:
                children.setdefault(parent, set()).add(code)
        return codes, children

    @staticmethod
    def _descendants(code: str, children: dict[str, set[str]]) -> set[str]:
        found: set[str] = set()
        stack = [code]
        while stack:
            for child in children.get(stack.pop(), ()):
                if child not in found:
                    found.add(child)
                    stack.append(child)
        return found

    def _include(self, include: dict[str, Any], seen: frozenset[str]) -> Codes:
        result: Codes | None = None
        system = include.get("system")
        if system is not None:
            if "concept" in include:
                selected = {c["code"] for c in include["concept"]}
            else:
                all_codes, children = self._system_codes(system)
                selected = set(all_codes)
                for flt in include.get("filter", []):
                    prop, op, value = flt.get("property"), flt.get("op"), flt.get("value")
                    if prop != "concept" or value not in all_codes:
                        raise NotEnumerable(f"filter {prop} {op} on {system}")
                    below = self._descendants(value, children)
                    if op == "is-a":
                        selected &= below | {value}
                    elif op == "descendent-of":
                        selected &= below
                    elif op == "is-not-a":
                        selected -= below | {value}
                    else:
                        raise NotEnumerable(f"filter op {op} on {system}")
            result = {system: selected}
        for imported in include.get("valueSet", []):
            other = self.expand(imported, seen)
            if result is None:
                result = {s: set(c) for s, c in other.items()}
            else:
                result = {s: c & other.get(s, set()) for s, c in result.items()}
        return result or {}

    def expand(self, url: str, seen: frozenset[str] = frozenset()) -> Codes:
        url = url.split("|", 1)[0]
        if url in self._cache:
            return self._cache[url]
        if url in seen:
            raise NotEnumerable(f"{url} imports itself")
        vs = self.value_sets.get(url)
        if vs is None:
            raise NotEnumerable(f"ValueSet {url} is not held")
        compose = vs.get("compose")
        if compose is None:
            raise NotEnumerable(f"ValueSet {url} has no compose")
        codes: Codes = {}
        for include in compose.get("include", []):
            for system, found in self._include(include, seen | {url}).items():
                codes.setdefault(system, set()).update(found)
        for exclude in compose.get("exclude", []):
            for system, found in self._include(exclude, seen | {url}).items():
                codes.get(system, set()).difference_update(found)
        self._cache[url] = codes
        return codes
