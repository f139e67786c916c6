"""ConceptMap translation over our packaged ConceptMaps (FHIR R4 $translate, simplified)."""

from dataclasses import dataclass

from terminology._content import _packaged


@dataclass(frozen=True, slots=True)
class Translation:
    """One target of a mapping. ``code`` is None for ``unmatched`` (no national code exists)."""

    conceptmap: str
    target_system: str
    code: str | None
    display: str | None
    equivalence: str
    comment: str | None = None


def translate(system: str, code: str, target_system: str | None = None) -> list[Translation]:
    """Every mapping of (system, code) in our ConceptMaps, optionally only into target_system."""
    out: list[Translation] = []
    for cm in _packaged():
        if cm["resourceType"] != "ConceptMap":
            continue
        for group in cm.get("group", []):
            if group.get("source") != system:
                continue
            if target_system is not None and group.get("target") != target_system:
                continue
            for element in group.get("element", []):
                if element.get("code") != code:
                    continue
                for target in element.get("target", []):
                    out.append(
                        Translation(
                            conceptmap=cm["url"],
                            target_system=group.get("target", ""),
                            code=target.get("code"),
                            display=target.get("display"),
                            equivalence=target["equivalence"],
                            comment=target.get("comment"),
                        )
                    )
    return out
