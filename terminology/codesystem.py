"""One CodeSystem as an index: its concepts by code and its hierarchy.

FHIR R4 codesystem.html: a hierarchy comes from nested ``concept`` elements and from the
``parent`` / ``child`` properties (codesystem-concept-properties). What the hierarchy
*means* is ``hierarchyMeaning``; subsumption (``is-a`` filters, ``$subsumes``, the
``:above``/``:below`` search modifiers) is defined only for an ``is-a`` hierarchy. R4 core
code systems such as observation-status or condition-clinical nest their concepts without
stating a meaning; we read that nesting as ``is-a``, as the core spec's own expansions
do. ``grouped-by``, ``part-of`` and ``classified-with`` hierarchies (all the programme's
own grouped code systems) give no subsumption, so asking for it is an error.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

Resource = dict[str, Any]

SUBSUMPTION_MEANINGS = frozenset({None, "is-a"})
# Properties that mark a concept as a grouper (FHIR R4 codesystem-concept-properties).
NOT_SELECTABLE = ("notSelectable", "abstract")
INACTIVE_STATUSES = frozenset({"retired", "inactive", "deprecated"})


def property_value(prop: dict[str, Any]) -> Any:
    for key, value in prop.items():
        if key.startswith("value"):
            return value
    return None


def value_text(value: Any) -> str:
    """A property value as filter values are written (booleans lower-case, codings code)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return str(value.get("code", ""))
    return str(value)


@dataclass(slots=True)
class CodeSystemIndex:
    url: str
    version: str | None
    name: str | None
    content: str
    hierarchy_meaning: str | None
    case_sensitive: bool
    concepts: dict[str, dict[str, Any]] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    parents: dict[str, list[str]] = field(default_factory=dict)
    children: dict[str, list[str]] = field(default_factory=dict)
    _folded: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, cs: Resource) -> CodeSystemIndex:
        index = cls(
            url=str(cs.get("url", "")),
            version=cs.get("version"),
            name=cs.get("name"),
            content=str(cs.get("content", "complete")),
            hierarchy_meaning=cs.get("hierarchyMeaning"),
            case_sensitive=cs.get("caseSensitive") is not False,
        )
        for concept, parent in walk_concepts(cs.get("concept", [])):
            code = concept.get("code")
            if not isinstance(code, str):
                continue
            if code not in index.concepts:
                index.concepts[code] = concept
                index.order.append(code)
                index._folded.setdefault(code.lower(), code)
            if parent is not None:
                index._relate(parent, code)
        for code, concept in list(index.concepts.items()):
            for prop in concept.get("property", []):
                value = property_value(prop)
                if not isinstance(value, str):
                    continue
                if prop.get("code") == "parent":
                    index._relate(value, code)
                elif prop.get("code") == "child":
                    index._relate(code, value)
        return index

    def _relate(self, parent: str, child: str) -> None:
        if parent == child:
            return
        known = self.parents.setdefault(child, [])
        if parent not in known:
            known.append(parent)
            self.children.setdefault(parent, []).append(child)

    # -- concepts ----------------------------------------------------------------------

    def code_of(self, code: str) -> str | None:
        """The code as this system spells it (case-insensitive systems fold case)."""
        if code in self.concepts:
            return code
        if not self.case_sensitive:
            return self._folded.get(code.lower())
        return None

    def concept(self, code: str) -> dict[str, Any] | None:
        found = self.code_of(code)
        return None if found is None else self.concepts[found]

    def properties(self, code: str) -> list[tuple[str, Any]]:
        concept = self.concept(code) or {}
        out = [(p.get("code", ""), property_value(p)) for p in concept.get("property", [])]
        return [(c, v) for c, v in out if c not in ("parent", "child")]

    @property
    def holds_concepts(self) -> bool:
        """Whether the resource lists the system's concepts (codesystem-content-mode: a
        ``not-present`` or ``supplement`` CodeSystem does not)."""
        return self.content not in ("not-present", "supplement")

    def selectable(self, code: str) -> bool:
        return not any(c in NOT_SELECTABLE and v is True for c, v in self.properties(code))

    def inactive(self, code: str) -> bool:
        for c, v in self.properties(code):
            if c == "inactive" and v is True:
                return True
            if c == "status" and isinstance(v, str) and v in INACTIVE_STATUSES:
                return True
        return False

    # -- hierarchy ---------------------------------------------------------------------

    @property
    def has_hierarchy(self) -> bool:
        return bool(self.children)

    @property
    def subsumption(self) -> bool:
        """Whether the hierarchy (if any) means is-a."""
        return self.hierarchy_meaning in SUBSUMPTION_MEANINGS

    def descendants(self, code: str) -> set[str]:
        return _closure(code, self.children)

    def ancestors(self, code: str) -> set[str]:
        return _closure(code, self.parents)


def walk_concepts(
    concepts: list[dict[str, Any]], parent: str | None = None
) -> Iterator[tuple[dict[str, Any], str | None]]:
    """Depth-first over a CodeSystem's nested concepts, with each concept's parent code."""
    for concept in concepts:
        if not isinstance(concept, dict):
            continue
        yield concept, parent
        yield from walk_concepts(concept.get("concept") or [], concept.get("code"))


def _closure(code: str, edges: dict[str, list[str]]) -> set[str]:
    found: set[str] = set()
    stack = [code]
    while stack:
        for nxt in edges.get(stack.pop(), ()):
            if nxt not in found:
                found.add(nxt)
                stack.append(nxt)
    found.discard(code)
    return found
