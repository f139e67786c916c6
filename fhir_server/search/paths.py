"""Evaluating a search parameter's compiled value paths against a resource (a JSON dict).

The generator turned each FHIRPath expression it could into value paths: JSON keys to
follow and filters to apply (``where(resolve() is Patient)``, ``where(system='email')``,
``[0]``). Walking a dict is some 25 times cheaper than fhirpathpy even compiled
(fhir-server-anchors.md 6.5). The rest go through ``fhirpathpy.compile``, once per
expression.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from fhir_server.search.references import parse_reference
from fhir_server.search.registry import PathItem

Walker = Callable[[Any], list[Any]]


def _key_walker(key: str) -> Walker:
    def walk(node: Any) -> list[Any]:
        value = node.get(key)
        if value is None:
            return []
        return value if isinstance(value, list) else [value]

    return walk


def _keys_walker(first: str, second: str) -> Walker:
    def walk(node: Any) -> list[Any]:
        value = node.get(first)
        if value is None:
            return []
        out: list[Any] = []
        for item in value if isinstance(value, list) else (value,):
            if isinstance(item, dict):
                child = item.get(second)
                if child is None:
                    continue
                if isinstance(child, list):
                    out.extend(child)
                else:
                    out.append(child)
        return out

    return walk


def reference_type(ref: Any) -> str | None:
    """The resource type a Reference points at: from its literal reference or its type."""
    if not isinstance(ref, dict):
        return None
    literal = ref.get("reference")
    if isinstance(literal, str):
        target = parse_reference(literal)
        if target is not None and target.type is not None:
            return target.type
    declared = ref.get("type")
    return declared if isinstance(declared, str) else None


def _step(items: list[Any], item: PathItem) -> list[Any]:
    if isinstance(item, str):
        out: list[Any] = []
        for node in items:
            if not isinstance(node, dict):
                continue
            value = node.get(item)
            if value is None:
                continue
            if isinstance(value, list):
                out.extend(value)
            else:
                out.append(value)
        return out
    if "ref" in item:
        # FHIRPath `where(resolve() is T)`: we cannot resolve inside extraction, but the
        # reference itself names the type (references.html#literal), which is what
        # every server uses for this test.
        wanted = item["ref"]
        return [r for r in items if reference_type(r) == wanted]
    if "eq" in item:
        field, value = item["eq"]
        return [n for n in items if isinstance(n, dict) and n.get(field) == value]
    if "index" in item:
        n = item["index"]
        return items[n : n + 1]
    raise ValueError(f"unknown path item {item!r}")  # pragma: no cover - generator output


def compile_path(path: tuple[PathItem, ...]) -> Walker:
    """A function from a dict (resource or element) to the values at ``path``."""
    if len(path) == 1 and isinstance(path[0], str):
        return _key_walker(path[0])
    if len(path) == 2 and isinstance(path[0], str) and isinstance(path[1], str):
        return _keys_walker(path[0], path[1])

    def walk(node: Any) -> list[Any]:
        items = [node]
        for item in path:
            items = _step(items, item)
            if not items:
                break
        return items

    return walk


@cache
def compile_fhirpath(expression: str) -> Walker:
    """fhirpathpy for expressions outside the path grammar, compiled once (with the R4
    model, so choice elements such as ``Patient.deceased`` resolve)."""
    import fhirpathpy
    from fhirpathpy.models import models

    compiled = fhirpathpy.compile(expression, models["r4"])

    def walk(node: Any) -> list[Any]:
        return list(compiled(node, {}))

    return walk
