"""Code lookup over our CodeSystems and over codes of external systems listed in our ValueSets."""

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from terminology._content import _packaged, packaged_by_url

ORDINAL_VALUE = "http://hl7.org/fhir/StructureDefinition/ordinalValue"


@dataclass(frozen=True, slots=True)
class Concept:
    """What ``lookup`` knows about a code (the useful part of FHIR ``$lookup``)."""

    system: str
    code: str
    display: str | None
    version: str | None = None
    definition: str | None = None
    designations: dict[str, str] = field(default_factory=dict)
    properties: dict[str, Any] = field(default_factory=dict)
    ordinal: float | None = None
    parent: str | None = None
    # "codesystem" when the code comes from one of our CodeSystems, "valueset" when it is an
    # external code (LOINC, SNOMED CT, UCUM, ...) that one of our ValueSets enumerates.
    source: str = "codesystem"


def _ordinal(element: dict[str, Any]) -> float | None:
    for ext in element.get("extension", []):
        if ext.get("url") == ORDINAL_VALUE:
            return float(ext["valueDecimal"])
    return None


def _property_value(prop: dict[str, Any]) -> Any:
    for key, value in prop.items():
        if key.startswith("value"):
            return value
    return None


def walk_concepts(
    concepts: list[dict[str, Any]], parent: str | None = None
) -> Iterator[tuple[dict[str, Any], str | None]]:
    """Depth-first over a CodeSystem's nested concepts, with each concept's parent code."""
    for c in concepts:
        yield c, parent
        yield from walk_concepts(c.get("concept", []), c["code"])


@cache
def _codesystem_index(url: str) -> dict[str, Concept]:
    cs = packaged_by_url(url)
    if cs is None or cs.get("resourceType") != "CodeSystem":
        return {}
    index: dict[str, Concept] = {}
    for c, parent in walk_concepts(cs.get("concept", [])):
        index[c["code"]] = Concept(
            system=url,
            code=c["code"],
            display=c.get("display"),
            version=cs.get("version"),
            definition=c.get("definition"),
            designations={
                d["language"]: d["value"] for d in c.get("designation", []) if "language" in d
            },
            properties={p["code"]: _property_value(p) for p in c.get("property", [])},
            ordinal=_ordinal(c),
            parent=parent,
        )
    return index


@cache
def _external_index() -> dict[tuple[str, str], Concept]:
    index: dict[tuple[str, str], Concept] = {}
    for vs in _packaged():
        if vs["resourceType"] != "ValueSet":
            continue
        for include in vs.get("compose", {}).get("include", []):
            system = include.get("system")
            if system is None or packaged_by_url(system) is not None:
                continue
            for c in include.get("concept", []):
                index.setdefault(
                    (system, c["code"]),
                    Concept(
                        system=system,
                        code=c["code"],
                        display=c.get("display"),
                        ordinal=_ordinal(c),
                        source="valueset",
                    ),
                )
    return index


def lookup(system: str, code: str) -> Concept | None:
    """The concept for (system, code), or None when our content does not know it.

    Our own CodeSystems answer for every code they define. For external systems only the codes
    that one of our ValueSets enumerates are known; that is not a full LOINC/SNOMED CT lookup.
    """
    if packaged_by_url(system) is not None:
        return _codesystem_index(system).get(code)
    return _external_index().get((system, code))
