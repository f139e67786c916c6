"""FHIR R4 structure metadata: which elements a type has, in what order, with what types.

The facts come from the official FHIR 4.0.1 StructureDefinitions, compiled by
``python -m fhir_server.definitions.generate`` into ``r4_structure.json.gz`` (shipped in the
package, so the server never needs the reference data). The file is read once, on first use.

Public API::

    R4_RESOURCE_TYPES        frozenset of the R4 resource types the server serves (R4 types
                             that fhir.resources' R4B models also know)
    ALL_R4_RESOURCE_TYPES    frozenset of every concrete R4 resource type
    PROVENANCE               where the data file came from (source files, FHIR version)
    element_info(type, path) ElementInfo | None, e.g. ("Observation", "Observation.valueQuantity")
    child_elements(info)     the children of an element, in definition order
    children_by_name(info)   the same, keyed by JSON property name (choices expanded)
    root_element(type)       the ElementInfo of a type's root, to start a walk
    is_primitive_type(name)  True for boolean, string, decimal, ... (FHIR R4 datatypes.html)
    is_resource_type(name)   True for every concrete R4 resource type
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

DATA_FILE = Path(__file__).resolve().parent / "r4_structure.json.gz"

# FHIR R4 formats.html#choice: a choice element's JSON/XML name is the stem followed by the
# type name with its first letter upper-cased.
CHOICE_SUFFIX = "[x]"


@dataclass(frozen=True, slots=True)
class ElementInfo:
    """One element of a StructureDefinition snapshot, as far as the wire formats need it.

    ``definition`` is the StructureDefinition the element belongs to (``Observation``,
    ``Quantity``...); ``path`` its path there (``Observation.value[x]``); ``name`` the JSON
    property name (``valueQuantity`` once a choice is resolved, otherwise the last segment).
    """

    definition: str
    path: str
    name: str
    types: tuple[str, ...]
    is_array: bool
    min: int
    is_summary: bool
    is_modifier: bool
    content_reference: str | None = None
    representation: tuple[str, ...] = ()

    @property
    def is_choice(self) -> bool:
        return self.path.endswith(CHOICE_SUFFIX)

    @property
    def is_xml_attribute(self) -> bool:
        """Element.id, Extension.url and primitive values travel as XML attributes."""
        return "xmlAttr" in self.representation


def choice_name(stem: str, type_code: str) -> str:
    return stem + type_code[0].upper() + type_code[1:]


@cache
def _data() -> dict[str, Any]:
    with gzip.open(DATA_FILE, "rb") as fh:
        data: dict[str, Any] = json.load(fh)
    return data


def _info(definition: str, fact: dict[str, Any]) -> ElementInfo:
    path: str = fact["path"]
    return ElementInfo(
        definition=definition,
        path=path,
        name=path.rsplit(".", 1)[-1],
        types=tuple(fact.get("types", ())),
        is_array=fact["max"] != "1" and fact["max"] != "0",
        min=int(fact.get("min", 0)),
        is_summary=bool(fact.get("summary")),
        is_modifier=bool(fact.get("modifier")),
        content_reference=fact.get("contentReference"),
        representation=tuple(fact.get("representation", ())),
    )


@cache
def _definition(name: str) -> tuple[dict[str, ElementInfo], dict[str, tuple[ElementInfo, ...]]]:
    """(elements by path, children by parent path) of one definition, built on first use."""
    raw = _data()["definitions"].get(name)
    if raw is None:
        return {}, {}
    by_path: dict[str, ElementInfo] = {}
    children: dict[str, list[ElementInfo]] = {}
    for fact in raw["elements"]:
        info = _info(name, fact)
        by_path[info.path] = info
        parent = info.path.rpartition(".")[0]
        if parent:
            children.setdefault(parent, []).append(info)
    return by_path, {parent: tuple(items) for parent, items in children.items()}


def is_primitive_type(name: str) -> bool:
    raw = _data()["definitions"].get(name)
    return raw is not None and raw["kind"] == "primitive-type"


@cache
def _all_resource_types() -> frozenset[str]:
    return frozenset(_data()["resourceTypes"])


def is_resource_type(name: str) -> bool:
    """True for every concrete R4 resource type (also those the server does not serve)."""
    return name in _all_resource_types()


def is_known_type(name: str) -> bool:
    return name in _data()["definitions"]


def root_element(type_name: str) -> ElementInfo | None:
    return _definition(type_name)[0].get(type_name)


@cache
def child_elements(info: ElementInfo) -> tuple[ElementInfo, ...]:
    """Children of ``info`` in definition order (the order FHIR XML requires, xml.html).

    Backbone elements have their children in the same definition; ``contentReference``
    elements (e.g. ``Questionnaire.item.item``) reuse another path's children; elements of
    a datatype get the datatype's own elements. Elements typed ``Resource`` and unresolved
    choices have no fixed children and give ``()``.
    """
    children = _definition(info.definition)[1]
    if info.content_reference is not None:
        return children.get(info.content_reference, ())
    own = children.get(info.path)
    if own is not None:
        return own
    if len(info.types) != 1:
        return ()
    datatype = info.types[0]
    return _definition(datatype)[1].get(datatype, ())


@cache
def children_by_name(info: ElementInfo) -> dict[str, ElementInfo]:
    """Children of ``info`` by JSON property name; choices are listed once per type."""
    named: dict[str, ElementInfo] = {}
    for child in child_elements(info):
        if child.is_choice:
            stem = child.name[: -len(CHOICE_SUFFIX)]
            for type_code in child.types:
                name = choice_name(stem, type_code)
                named[name] = replace(child, name=name, types=(type_code,))
        else:
            named[child.name] = child
    return named


def element_info(type_name: str, path: str) -> ElementInfo | None:
    """The element at ``path`` of ``type_name``, descending through backbone elements,
    content references and datatypes; ``None`` when there is no such element.

    ``path`` may start with the type name (``Patient.contact.name``) or not
    (``contact.name``). A choice given by its typed name (``Observation.valueQuantity``)
    resolves to ``Observation.value[x]`` narrowed to that one type.
    """
    current = root_element(type_name)
    if current is None:
        return None
    segments = path.split(".")
    if segments and segments[0] == type_name:
        segments = segments[1:]
    for segment in segments:
        if not segment:
            return None
        named = children_by_name(current)
        found = named.get(segment)
        if found is None:
            # ``value[x]`` itself: the unresolved choice with all its types.
            found = next((c for c in child_elements(current) if c.name == segment), None)
        if found is None:
            return None
        current = found
    return current


def __getattr__(name: str) -> Any:
    # Module attributes computed on first access, so importing the package stays free.
    if name == "R4_RESOURCE_TYPES":
        return frozenset(_data()["servedResourceTypes"])
    if name == "ALL_R4_RESOURCE_TYPES":
        return _all_resource_types()
    if name == "PROVENANCE":
        return dict(_data()["provenance"])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ALL_R4_RESOURCE_TYPES",
    "PROVENANCE",
    "R4_RESOURCE_TYPES",
    "ElementInfo",
    "child_elements",
    "children_by_name",
    "element_info",
    "is_known_type",
    "is_primitive_type",
    "is_resource_type",
    "root_element",
]
