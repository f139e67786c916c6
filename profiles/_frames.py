"""Frames: the children of an element, for one of its types, by JSON property name.

An element's children are its explicit children in the snapshot when it has any; otherwise
those of its content reference, of its type profile, or of its type's StructureDefinition
(FHIR R4 elementdefinition.html, profiling.html#snapshot). Choice elements are listed once per
allowed type under their JSON names (formats.html#choice: ``value[x]`` -> ``valueQuantity``).
Frames are built on first use and cached on the element.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from profiles._definitions import PRIMITIVE_TYPES, ElementDefinition, StructureDefinition, registry

_BACKBONE_TYPES = ("BackboneElement", "Element")


@dataclass(slots=True)
class Frame:
    """The children of an element for one of its types, by JSON property name."""

    children: tuple[ElementDefinition, ...]
    by_name: dict[str, tuple[ElementDefinition, str | None]]
    choice_stems: dict[str, ElementDefinition]
    type_root: ElementDefinition | None
    type_path: str


def _choice_name(stem: str, type_code: str) -> str:
    return stem + type_code[0].upper() + type_code[1:]


_EMPTY_FRAME = Frame((), {}, {}, None, "")


def frame_for(element: ElementDefinition, type_code: str | None) -> Frame:
    """The frame of ``element`` typed ``type_code`` (cached on the element)."""
    key = type_code or ""
    found = element.frames.get(key)
    if found is None:
        found = _build_frame(element, type_code)
        element.frames[key] = found
    return found


def _build_frame(element: ElementDefinition, type_code: str | None) -> Frame:
    if element.children:
        type_root = None
        if type_code and type_code not in _BACKBONE_TYPES and type_code not in PRIMITIVE_TYPES:
            base = registry().of_type(type_code)
            if base is not None and base.kind == "complex-type":
                type_root = base.root
        if type_code is None or type_code in _BACKBONE_TYPES:
            return _index(element.children, type_root, element.path)
        return _index(element.children, type_root, type_code)
    if element.content_reference is not None:
        target = element.structure.by_id.get(element.content_reference.split("#")[-1])
        if target is None:
            return _EMPTY_FRAME
        return frame_for(target, target.types[0].code if target.types else None)
    if not type_code:
        return _EMPTY_FRAME
    if type_code in PRIMITIVE_TYPES:
        # Only the ``_x`` twin of a primitive is walked as an object: id and extension.
        primitive = registry().of_type(type_code)
        return frame_for(primitive.root, type_code) if primitive is not None else _EMPTY_FRAME
    definition: StructureDefinition | None = None
    for type_ref in element.types:
        if type_ref.code != type_code:
            continue
        for url in type_ref.profiles:
            candidate = registry().get(url)
            if candidate is not None and candidate.type == type_code:
                definition = candidate
                break
    if definition is None:
        definition = registry().of_type(type_code)
    if definition is None:
        return _EMPTY_FRAME
    own = frame_for(definition.root, type_code)
    return Frame(own.children, own.by_name, own.choice_stems, definition.root, type_code)


def _index(
    children: Sequence[ElementDefinition], type_root: ElementDefinition | None, type_path: str
) -> Frame:
    by_name: dict[str, tuple[ElementDefinition, str | None]] = {}
    stems: dict[str, ElementDefinition] = {}
    for child in children:
        if child.is_choice:
            stem = child.name[:-3]
            stems[stem] = child
            for type_ref in child.types:
                by_name[_choice_name(stem, type_ref.code)] = (child, type_ref.code)
        elif child.content_reference is not None:
            by_name[child.name] = (child, "BackboneElement")
        else:
            by_name[child.name] = (child, child.types[0].code if child.types else None)
    return Frame(tuple(children), by_name, stems, type_root, type_path)
