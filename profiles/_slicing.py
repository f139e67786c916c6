"""Slicing: which slice a value belongs to (FHIR R4 profiling.html#discriminator).

A discriminator is a kind and a path. The path is followed twice: in the slice's definition
(to find the fixed or pattern value, binding, types or profiles the slice sets there,
looking into nested slices such as ``coding:SBPCode.code``) and in the value (to find what
the instance has there). ``value`` and ``pattern`` compare values, ``exists`` checks
presence against the slice's cardinality, ``type`` compares types, ``profile`` asks whether
the value conforms to the profile. Paths may use ``$this``, ``extension('url')`` and
``ofType(T)``; ``resolve()`` cannot be followed inside one resource, so such slices accept.
Extension slices discriminated by ``url`` match the URL of the slice's extension profile.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from profiles import _bindings
from profiles._definitions import ElementDefinition
from profiles._frames import frame_for
from profiles._values import equals_fixed, matches_pattern

Conforms = Callable[[Any, "str | None", str], bool]


def _segments(path: str) -> list[str]:
    """``extension('http://x.org/a.b').value`` -> ``["extension('http://x.org/a.b')", "value"]``."""
    parts: list[str] = []
    depth = 0
    current = ""
    for char in path:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "." and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p for p in parts if p]


def _argument(segment: str) -> str:
    return segment[segment.index("(") + 1 : segment.rindex(")")].strip().strip("'\"")


def instance_values(
    value: Any, type_code: str | None, path: str
) -> list[tuple[Any, str | None]] | None:
    """The values at a discriminator path in an instance; None for what we cannot follow."""
    current: list[tuple[Any, str | None]] = [(value, type_code)]
    for segment in _segments(path):
        if segment == "$this":
            continue
        if segment == "resolve()":
            return None
        if segment.startswith("ofType("):
            wanted = _argument(segment)
            current = [(v, t) for v, t in current if t == wanted or _resource_type(v) == wanted]
            continue
        following: list[tuple[Any, str | None]] = []
        if segment.startswith("extension("):
            url = _argument(segment)
            for v, _ in current:
                for ext in v.get("extension", []) if isinstance(v, dict) else []:
                    if isinstance(ext, dict) and ext.get("url") == url:
                        following.append((ext, "Extension"))
            current = following
            continue
        for v, _ in current:
            if not isinstance(v, dict):
                continue
            if segment in v:
                found = v[segment]
                for item in found if isinstance(found, list) else [found]:
                    following.append((item, None))
                continue
            for key, found in v.items():
                if key.startswith(segment) and key[len(segment) : len(segment) + 1].isupper():
                    following.append(
                        (found, key[len(segment) :][0].lower() + key[len(segment) + 1 :])
                    )
        current = following
    return current


def _resource_type(value: Any) -> str | None:
    found = value.get("resourceType") if isinstance(value, dict) else None
    return found if isinstance(found, str) else None


def definitions_at(
    start: ElementDefinition, type_code: str | None, path: str
) -> list[tuple[ElementDefinition, str | None]] | None:
    """The element definitions (slices included) a discriminator path reaches from a slice."""
    current: list[tuple[ElementDefinition, str | None]] = [(start, type_code)]
    for segment in _segments(path):
        if segment == "$this":
            continue
        if segment == "resolve()":
            return None
        if segment.startswith("ofType("):
            wanted = _argument(segment)
            current = [(d, wanted) for d, _ in current if wanted in d.type_codes]
            continue
        following: list[tuple[ElementDefinition, str | None]] = []
        for definition, current_type in current:
            frame = frame_for(definition, current_type)
            if segment.startswith("extension("):
                url = _argument(segment)
                holder = frame.by_name.get("extension")
                if holder is not None:
                    for ext_slice in holder[0].slices:
                        if extension_slice_url(ext_slice) == url:
                            following.append((ext_slice, "Extension"))
                continue
            named = frame.by_name.get(segment)
            child: ElementDefinition | None = named[0] if named else frame.choice_stems.get(segment)
            if child is None:
                continue
            child_type = named[1] if named else None
            following.append((child, child_type))
            following.extend((s, child_type) for s in child.slices)
        current = following
    return current


def extension_slice_url(element: ElementDefinition) -> str | None:
    """The URL an extension slice stands for: its fixed ``url`` child or its type profile."""
    for child in element.children:
        if child.name == "url" and child.fixed is not None:
            return str(child.fixed[1])
    for type_ref in element.types:
        if type_ref.profiles:
            return type_ref.profiles[0].split("|", 1)[0]
    return None


def in_slice(
    value: Any,
    type_code: str | None,
    element: ElementDefinition,
    sliced: ElementDefinition,
    conforms: Conforms,
) -> bool:
    """Does a value of the sliced element belong to the slice ``element``?

    ``conforms(value, type, url)`` answers profile discriminators (a trial validation).
    """
    assert sliced.slicing is not None
    return all(
        _holds(value, type_code, element, kind, path, conforms)
        for kind, path in sliced.slicing.discriminators
    )


def _holds(
    value: Any,
    type_code: str | None,
    element: ElementDefinition,
    kind: str,
    path: str,
    conforms: Conforms,
) -> bool:
    if kind in ("value", "pattern") and path == "url" and type_code == "Extension":
        expected = extension_slice_url(element)
        url = value.get("url") if isinstance(value, dict) else None
        return expected is None or (isinstance(url, str) and url.split("|", 1)[0] == expected)
    definitions = definitions_at(element, type_code, path)
    values = instance_values(value, type_code, path)
    if definitions is None or values is None:
        return True  # resolve() and the like: cannot tell slices apart, accept
    if kind in ("value", "pattern"):
        for definition, _ in definitions:
            if definition is not element and definition.slice_name and definition.min == 0:
                continue  # an optional nested slice does not decide membership
            for constraint, exact in ((definition.fixed, True), (definition.pattern, False)):
                if constraint is None:
                    continue
                compare = equals_fixed if exact and kind == "value" else matches_pattern
                if not any(compare(v, constraint[1]) for v, _ in values):
                    return False
            if definition.fixed is None and definition.pattern is None and definition.binding:
                strength, value_set = definition.binding
                if strength == "required" and not any(
                    isinstance(v, str) and _bindings.contains(value_set, None, v) for v, _ in values
                ):
                    return False
        return True
    if kind == "exists":
        own = definitions[0][0] if definitions else None
        if own is None:
            return True
        if own.max == 0:
            return not values
        if own.min >= 1:
            return bool(values)
        return True
    if kind == "type":
        allowed = {code for definition, _ in definitions for code in definition.type_codes}
        if not allowed:
            return True
        for found, found_type in values:
            actual = found_type or (type_code if path == "$this" else None)
            actual = _resource_type(found) or actual
            if actual is not None and actual in allowed:
                return True
        return False
    if kind == "profile":
        urls = [
            url for definition, _ in definitions for t in definition.types for url in t.profiles
        ]
        if not urls:
            return True
        return any(conforms(found, found_type, url) for found, found_type in values for url in urls)
    return True
