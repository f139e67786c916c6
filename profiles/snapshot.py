"""Snapshot generation: a constraining StructureDefinition's differential laid over its base.

FHIR R4 profiling.html#snapshot: the snapshot is the base snapshot with every differential
element merged into the element it constrains. This implementation covers what profiles of
the kind we author need, and refuses the rest with :class:`SnapshotError` rather than
producing a snapshot that silently means something else:

- elements addressed by ``id`` (or by ``path`` + ``sliceName``);
- descending into a datatype (``Patient.identifier.system``): the type's elements are unfolded
  under the element, from the type profile when the element names one;
- slices (``Patient.identifier:nhsNumber``) of an element that has ``slicing``: a slice starts
  as a copy of the sliced element, children included;
- backbone elements and ``contentReference`` elements unfold their own children;
- merging follows the spec's rules: cardinality may only narrow, types only restrict the
  base's type list, constraints and conditions accumulate, everything else replaces.

Not covered: choice elements renamed by type (``Observation.valueQuantity``; write
``Observation.value[x]`` with one type instead), reslicing, and derived profiles whose base is
itself a profile with unfolded slices beyond one level (not needed by our profiles).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

Resolver = Callable[[str], dict[str, Any] | None]

_ACCUMULATE = ("constraint", "condition")
_NEVER_COPIED = ("id", "path")
_CHOICE_PREFIXES = ("fixed", "pattern", "defaultValue", "minValue", "maxValue")


class SnapshotError(ValueError):
    """The differential cannot be laid over its base."""


def _max_value(value: str) -> float:
    return float("inf") if value == "*" else float(value)


def _parent_id(element_id: str) -> str:
    return element_id.rsplit(".", 1)[0]


def _last_segment(element_id: str) -> str:
    return element_id.rsplit(".", 1)[1]


def _path_of_id(element_id: str) -> str:
    return ".".join(part.split(":", 1)[0] for part in element_id.split("."))


def _diff_id(diff: dict[str, Any]) -> str:
    if diff.get("id"):
        return str(diff["id"])
    # FHIR R4 elementdefinition.html#id: path segments, a slice as ``name:sliceName``.
    path = str(diff["path"])
    return f"{path}:{diff['sliceName']}" if diff.get("sliceName") else path


class _Snapshot:
    def __init__(self, elements: list[dict[str, Any]], resolve: Resolver) -> None:
        self.elements = elements
        self.resolve = resolve

    def index_of(self, element_id: str) -> int | None:
        for index, element in enumerate(self.elements):
            if element["id"] == element_id:
                return index
        return None

    def end_of_subtree(self, index: int) -> int:
        """Index just past the element at ``index`` and everything under it (slices too)."""
        root = self.elements[index]["id"]
        end = index + 1
        while end < len(self.elements):
            other = self.elements[end]["id"]
            if not (other.startswith(root + ".") or other.startswith(root + ":")):
                break
            end += 1
        return end

    def has_children(self, element_id: str) -> bool:
        return any(e["id"].startswith(element_id + ".") for e in self.elements)

    def ensure(self, element_id: str) -> int:
        found = self.index_of(element_id)
        if found is not None:
            return found
        if "." not in element_id:
            raise SnapshotError(f"{element_id}: the root cannot be sliced or created")
        last = _last_segment(element_id)
        name, _, slice_name = last.partition(":")
        parent_id = _parent_id(element_id)
        if slice_name:
            return self._add_slice(parent_id, name, slice_name)
        parent = self.ensure(parent_id)
        if not self.has_children(parent_id):
            self._unfold(parent)
        found = self.index_of(element_id)
        if found is None:
            raise SnapshotError(f"{element_id}: no such element in the base")
        return found

    def _add_slice(self, parent_id: str, name: str, slice_name: str) -> int:
        sliced_id = f"{parent_id}.{name}"
        sliced_index = self.ensure(sliced_id)
        sliced = self.elements[sliced_index]
        if "slicing" not in sliced:
            raise SnapshotError(f"{sliced_id}:{slice_name}: {sliced_id} is not sliced")
        end = self.end_of_subtree(sliced_index)
        new_id = f"{sliced_id}:{slice_name}"
        # The slice starts as the sliced element without its slicing; its own children are a
        # copy of the sliced element's unfolded children, if any (profiling.html#slicing).
        copies: list[dict[str, Any]] = []
        head = copy.deepcopy(sliced)
        head.pop("slicing", None)
        head["id"] = new_id
        head["sliceName"] = slice_name
        copies.append(head)
        for element in self.elements[sliced_index + 1 : end]:
            child_id = element["id"]
            if child_id.startswith(sliced_id + ".") and ":" not in child_id[len(sliced_id) :]:
                child = copy.deepcopy(element)
                child["id"] = new_id + child_id[len(sliced_id) :]
                copies.append(child)
        self.elements[end:end] = copies
        return end

    def _unfold(self, index: int) -> None:
        """Insert the children of the element at ``index`` (which has none yet)."""
        element = self.elements[index]
        element_id = element["id"]
        if "contentReference" in element:
            source = element["contentReference"].lstrip("#")
            self._copy_children_of(index, source, _path_of_id(source))
            return
        unsliced = _path_of_id(element_id)
        if unsliced != element_id and self.has_children(unsliced):
            self._copy_children_of(index, unsliced, unsliced)
            return
        types = element.get("type", [])
        if len(types) != 1:
            raise SnapshotError(
                f"{element_id}: restrict the element to one type before constraining its children"
            )
        type_ref = types[0]
        url = (type_ref.get("profile") or [None])[0] or (
            "http://hl7.org/fhir/StructureDefinition/" + type_ref["code"]
        )
        definition = self.resolve(url)
        if definition is None or "snapshot" not in definition:
            raise SnapshotError(f"{element_id}: type definition {url} is not available")
        type_elements = definition["snapshot"]["element"]
        root_path = type_elements[0]["path"]
        inserted = []
        for child in type_elements[1:]:
            unfolded = copy.deepcopy(child)
            unfolded["id"] = element_id + child["id"][len(type_elements[0]["id"]) :]
            unfolded["path"] = element["path"] + child["path"][len(root_path) :]
            inserted.append(unfolded)
        self.elements[index + 1 : index + 1] = inserted

    def _copy_children_of(self, index: int, source_id: str, source_path: str) -> None:
        element = self.elements[index]
        source = self.index_of(source_id)
        if source is None:
            raise SnapshotError(f"{element['id']}: {source_id} not found")
        end = self.end_of_subtree(source)
        inserted = []
        for child in self.elements[source + 1 : end]:
            if not child["id"].startswith(source_id + "."):
                continue
            unfolded = copy.deepcopy(child)
            unfolded["id"] = element["id"] + child["id"][len(source_id) :]
            unfolded["path"] = element["path"] + child["path"][len(source_path) :]
            inserted.append(unfolded)
        self.elements[index + 1 : index + 1] = inserted


def _check_narrowing(target: dict[str, Any], diff: dict[str, Any], where: str) -> None:
    if "min" in diff and diff["min"] < target.get("min", 0):
        raise SnapshotError(f"{where}: min {diff['min']} is below the base's {target.get('min')}")
    if "max" in diff and _max_value(diff["max"]) > _max_value(target.get("max", "*")):
        raise SnapshotError(f"{where}: max {diff['max']} exceeds the base's {target.get('max')}")
    if "type" in diff and "type" in target:
        allowed = {t["code"] for t in target["type"]}
        for t in diff["type"]:
            if t["code"] not in allowed:
                raise SnapshotError(f"{where}: type {t['code']} is not allowed by the base")
    if (
        target.get("binding", {}).get("strength") == "required"
        and diff.get("binding", {}).get("strength", "required") != "required"
    ):
        raise SnapshotError(f"{where}: a required binding cannot be weakened")


def _merge(target: dict[str, Any], diff: dict[str, Any], where: str) -> None:
    _check_narrowing(target, diff, where)
    for prefix in _CHOICE_PREFIXES:
        if any(k.startswith(prefix) and k[len(prefix) : len(prefix) + 1].isupper() for k in diff):
            for key in [k for k in target if k.startswith(prefix)]:
                del target[key]
    for key, value in diff.items():
        if key in _NEVER_COPIED:
            continue
        if key in _ACCUMULATE:
            existing = target.setdefault(key, [])
            for item in value:
                marker = item["key"] if isinstance(item, dict) else item
                if all((e["key"] if isinstance(e, dict) else e) != marker for e in existing):
                    existing.append(copy.deepcopy(item))
        else:
            target[key] = copy.deepcopy(value)


def generate_snapshot(profile: dict[str, Any], resolve: Resolver) -> dict[str, Any]:
    """``profile`` with ``snapshot`` generated from its differential and its base.

    ``resolve(url)`` returns a StructureDefinition that has a snapshot (the base and the
    datatypes), or None.
    """
    base_url = profile.get("baseDefinition")
    if not base_url:
        raise SnapshotError("the profile has no baseDefinition")
    base = resolve(base_url)
    if base is None or "snapshot" not in base:
        raise SnapshotError(f"base {base_url} is not available with a snapshot")
    if base["type"] != profile["type"]:
        raise SnapshotError(f"type {profile['type']} differs from the base's {base['type']}")
    snapshot = _Snapshot(copy.deepcopy(base["snapshot"]["element"]), resolve)
    for diff in profile.get("differential", {}).get("element", []):
        element_id = _diff_id(diff)
        if _path_of_id(element_id) != diff["path"]:
            raise SnapshotError(f"{element_id}: id and path {diff['path']} disagree")
        index = snapshot.ensure(element_id)
        _merge(snapshot.elements[index], diff, element_id)
    result = copy.deepcopy(profile)
    result["snapshot"] = {"element": snapshot.elements}
    return result
