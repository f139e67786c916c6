"""``lookup``: what the programme's content says about one code, answered by the
terminology service over the programme's own resources.

Our CodeSystems answer for every code they define. For external systems (LOINC, SNOMED CT,
UCUM, ...) only the codes that one of our ValueSets enumerates are known, with the display
and ordinal that ValueSet gives them; that is not a full LOINC or SNOMED CT lookup.
"""

from dataclasses import dataclass, field
from functools import cache
from typing import Any

from terminology._content import _packaged
from terminology.errors import TerminologyError
from terminology.service import ExpansionEntry, TerminologyService
from terminology.sources import programme_source


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


@cache
def _service() -> TerminologyService:
    # Only the programme's resources: a core CodeSystem (administrative-gender, ...) that
    # one of our ValueSets enumerates is answered from that ValueSet, as an external one.
    return TerminologyService(programme_source())


@cache
def _listed_codes() -> dict[tuple[str, str], ExpansionEntry]:
    """External codes by (system, code), from the expansions of our ValueSets in file
    order (the first ValueSet that lists a code gives its display and ordinal)."""
    service = _service()
    listed: dict[tuple[str, str], ExpansionEntry] = {}
    for vs in _packaged():
        if vs["resourceType"] != "ValueSet":
            continue
        for entry in service.expansion_of(vs["url"]):
            if service.source.find("CodeSystem", entry.system) is None:
                listed.setdefault((entry.system, entry.code), entry)
    return listed


def lookup(system: str, code: str) -> Concept | None:
    """The concept for (system, code), or None when our content does not know it."""
    service = _service()
    if service.source.find("CodeSystem", system) is None:
        entry = _listed_codes().get((system, code))
        if entry is None:
            return None
        return Concept(
            system, entry.code, entry.display, ordinal=entry.ordinal, source="valueset"
        )
    try:
        cs = service.code_system(system)
        entry = service.concept_entry(system, code)
    except TerminologyError:
        return None
    if entry is None:
        return None
    concept = cs.concepts[entry.code]
    parents = cs.parents.get(entry.code, [])
    return Concept(
        system=system,
        code=entry.code,
        display=entry.display,
        version=cs.version,
        definition=concept.get("definition"),
        designations={d.language: d.value for d in entry.designations if d.language},
        properties=dict(cs.properties(entry.code)),
        ordinal=entry.ordinal,
        parent=parents[0] if parents else None,
    )
