"""Subsets of a resource for ``_summary`` and ``_elements`` (FHIR R4 search.html#summary,
search.html#elements).

Both functions are pure: they return a new dict and never change the one given. Whenever
something was left out they add the SUBSETTED tag to ``meta.tag``, because a subsetted
resource must not be mistaken for the whole one (for instance and written back with PUT).
"""

from __future__ import annotations

from typing import Any

from fhir_server.definitions import (
    ElementInfo,
    child_elements,
    children_by_name,
    is_resource_type,
    root_element,
)
from fhir_server.errors import bad_request

# FHIR R4 search.html#summary: "servers SHOULD mark resources with the tag SUBSETTED".
SUBSETTED_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
SUBSETTED_CODE = "SUBSETTED"
SUBSETTED_TAG = {"system": SUBSETTED_SYSTEM, "code": SUBSETTED_CODE, "display": "subsetted"}

SUMMARY_MODES = frozenset({"true", "text", "data", "false"})

# Kept in every subset: without them the result is not an identifiable resource.
_ALWAYS = frozenset({"resourceType", "id", "meta"})


def summarize(resource: dict[str, Any], mode: str) -> dict[str, Any]:
    """The resource as ``_summary=<mode>`` returns it (FHIR R4 search.html#summary).

    * ``true``: elements marked isSummary in the base definition, at the resource level and
      inside backbone elements, plus mandatory elements (min >= 1) and ``modifierExtension``
      (extensibility.html#modifierExtension: modifiers must not be silently dropped).
      Datatype values are kept whole: their own isSummary flags mark only ``id`` and
      ``extension`` as non-summary, and dropping those would cut extensions in half.
    * ``text``: ``text``, ``id``, ``meta`` and the top-level mandatory elements.
    * ``data``: everything but ``text``.
    * ``false``: everything; the resource is returned unchanged.

    ``count`` is a property of a search result, not of a resource, so it is refused here.
    """
    if mode not in SUMMARY_MODES:
        raise bad_request(
            f"_summary={mode!r} is not one of true, text, data, false for a resource",
            "_summary",
        )
    if mode == "false":
        return resource
    info = _root(resource)
    if mode == "data":
        kept = {k: v for k, v in resource.items() if k != "text"}
    elif mode == "text":
        mandatory = _mandatory_names(info)
        kept = {
            k: v
            for k, v in resource.items()
            if k in _ALWAYS or _property_name(k) in mandatory or _property_name(k) == "text"
        }
    else:
        kept = _summary_elements(resource, info)
    return _mark_if_subsetted(resource, kept)


def select_elements(resource: dict[str, Any], elements: list[str]) -> dict[str, Any]:
    """The resource as ``_elements=<elements>`` returns it (FHIR R4 search.html#elements).

    R4 names base (top-level) elements only. ``id``, ``meta`` and mandatory elements are
    always kept ("Servers SHOULD always return mandatory elements"). A choice is named by
    its stem (``value`` or ``value[x]``), which selects whichever type is present. A name
    prefixed with a resource type (``Patient.name``) applies to that type only, so one
    ``_elements`` list can serve a search that returns several types.
    """
    info = _root(resource)
    resource_type = resource["resourceType"]
    wanted = set(_mandatory_names(info))
    for raw in elements:
        name = raw.strip()
        if not name:
            continue
        head, _, rest = name.partition(".")
        if rest and is_resource_type(head):
            if head != resource_type:
                continue
            name = rest
        if "." in name:
            raise bad_request(
                f"_elements takes top-level element names only, not {raw!r}", "_elements"
            )
        wanted.add(name.removesuffix("[x]"))
    kept = {
        k: v
        for k, v in resource.items()
        if k in _ALWAYS or _stem(_property_name(k), info) in wanted
    }
    return _mark_if_subsetted(resource, kept)


def _root(resource: dict[str, Any]) -> ElementInfo:
    resource_type = resource.get("resourceType")
    info = root_element(resource_type) if isinstance(resource_type, str) else None
    if info is None:
        raise bad_request(f"Unknown resource type {resource_type!r}", "resourceType")
    return info


def _property_name(key: str) -> str:
    # ``_birthDate`` carries the id/extensions of ``birthDate`` (json.html#primitive) and
    # goes wherever ``birthDate`` goes.
    return key[1:] if key.startswith("_") else key


def _stem(name: str, info: ElementInfo) -> str:
    """``valueQuantity`` -> ``value`` for a choice element; other names unchanged."""
    child = children_by_name(info).get(name)
    if child is not None and child.is_choice:
        return child.path.rsplit(".", 1)[1].removesuffix("[x]")
    return name


def _mandatory_names(info: ElementInfo) -> set[str]:
    return {c.name.removesuffix("[x]") for c in child_elements(info) if c.min >= 1}


def _is_backbone(child: ElementInfo) -> bool:
    # Backbone elements are defined inside the resource and filtered level by level;
    # anything else is a datatype value, kept whole.
    return child.content_reference is not None or (
        len(child.types) == 1 and child.types[0] in ("BackboneElement", "Element")
    )


def _summary_elements(obj: dict[str, Any], info: ElementInfo) -> dict[str, Any]:
    named = children_by_name(info)
    kept: dict[str, Any] = {}
    for key, value in obj.items():
        if key == "resourceType":
            kept[key] = value
            continue
        child = named.get(_property_name(key))
        if child is None:
            # Not in the definition: not ours to judge here; keep rather than lose data.
            kept[key] = value
            continue
        if not (child.is_summary or child.min >= 1 or child.name == "modifierExtension"):
            continue
        if _is_backbone(child) and not key.startswith("_"):
            if isinstance(value, list):
                kept[key] = [
                    _summary_elements(v, child) if isinstance(v, dict) else v for v in value
                ]
            elif isinstance(value, dict):
                kept[key] = _summary_elements(value, child)
            else:
                kept[key] = value
        else:
            kept[key] = value
    return kept


def _removed_anything(original: Any, subset: Any) -> bool:
    if isinstance(original, dict) and isinstance(subset, dict):
        return original.keys() != subset.keys() or any(
            _removed_anything(original[k], subset[k]) for k in original
        )
    if isinstance(original, list) and isinstance(subset, list):
        return any(_removed_anything(o, s) for o, s in zip(original, subset, strict=True))
    return False


def _mark_if_subsetted(original: dict[str, Any], kept: dict[str, Any]) -> dict[str, Any]:
    if not _removed_anything(original, kept):
        return kept
    meta = dict(kept.get("meta") or {})
    tags = list(meta.get("tag") or [])
    if not any(
        t.get("system") == SUBSETTED_SYSTEM and t.get("code") == SUBSETTED_CODE for t in tags
    ):
        tags.append(dict(SUBSETTED_TAG))
    meta["tag"] = tags
    if "meta" in kept:
        return {**kept, "meta": meta}
    # Put a new meta where FHIR puts it (after id) so the JSON reads in the usual order.
    anchor = "id" if "id" in kept else "resourceType"
    result: dict[str, Any] = {}
    for key, value in kept.items():
        result[key] = value
        if key == anchor:
            result["meta"] = meta
    return result


__all__ = ["SUBSETTED_TAG", "SUMMARY_MODES", "select_elements", "summarize"]
