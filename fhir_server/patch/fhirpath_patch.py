"""FHIRPath Patch (R4 fhirpatch.html) applied to a FHIR resource, for the patch interaction.

The patch is a ``Parameters`` resource; each ``operation`` parameter has parts ``type``
(add | insert | delete | replace | move), ``path``, ``name``, ``value``, ``index``, ``source``
and ``destination``. The value is a ``value[x]`` (a primitive or a FHIR datatype) or, for an
anonymous (backbone) type, nested ``part``s named after its elements.

Statuses (R4 http.html#patch): a Parameters document that is not a FHIRPath Patch, or a path
this server cannot parse, is 400; a patch that cannot be applied to this resource (the path
matches nothing or several nodes where one is needed, an index out of range, a value of the
wrong type, adding a single element that is already there) is 422, with the path as the
issue's expression. Changing resourceType or id is 400, as for JSON Patch. The caller
re-validates the result; the input resource is never mutated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fhir_server.definitions import is_primitive_type
from fhir_server.errors import bad_request, unprocessable
from fhir_server.patch.fhirpath_location import Location, element_info, evaluate_locations
from fhir_server.patch.json_patch import check_identity, json_copy
from fhir_server.validation import Model, element_table

__all__ = ["apply_fhirpath_patch"]

_OPERATION_TYPES = ("add", "insert", "delete", "replace", "move")
# fhirpatch.html, table "Operations": the parts each type needs
_NEEDS = {
    "add": ("path", "name", "value"),
    "insert": ("path", "index", "value"),
    "delete": ("path",),
    "replace": ("path", "value"),
    "move": ("path", "source", "destination"),
}


@dataclass(frozen=True, slots=True)
class _Value:
    """A value to write: JSON plus its FHIR type (None for an anonymous type from parts)."""

    json: Any = None
    fhir_type: str | None = None
    parts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def is_primitive(self) -> bool:
        return self.fhir_type is not None and is_primitive_type(self.fhir_type)


@dataclass(frozen=True, slots=True)
class _Operation:
    type: str
    path: str
    name: str | None = None
    value: _Value | None = None
    index: int | None = None
    source: int | None = None
    destination: int | None = None


# --- reading the Parameters ------------------------------------------------------------------


def _value_of(part: dict[str, Any], where: str) -> _Value:
    """A part's ``value[x]``, ``resource`` or nested ``part`` list."""
    keys = [k for k in part if k.startswith("value") or k in ("resource", "part")]
    if len(keys) != 1:
        raise bad_request(f"{where}: a value needs exactly one value[x] or part", where)
    key = keys[0]
    if key == "part":
        if not isinstance(part["part"], list) or not part["part"]:
            raise bad_request(f"{where}: part must be a non-empty array", where)
        return _Value(parts=part["part"])
    if key == "resource":
        return _Value(part["resource"], "Resource")
    suffix = key[len("value") :]
    primitive = suffix[:1].lower() + suffix[1:]
    return _Value(part[key], primitive if is_primitive_type(primitive) else suffix)


def _integer(part: dict[str, Any], where: str) -> int:
    value = part.get("valueInteger")
    if type(value) is not int or value < 0:
        raise bad_request(f"{where}: expected valueInteger >= 0", where)
    return value


def _string(part: dict[str, Any], where: str, *keys: str) -> str:
    for key in keys:
        if isinstance(part.get(key), str):
            return str(part[key])
    raise bad_request(f"{where}: expected {' or '.join(keys)}", where)


def _operation(parameter: Any, where: str) -> _Operation:
    if not isinstance(parameter, dict) or parameter.get("name") != "operation":
        raise bad_request(f"{where}: every parameter of a FHIRPath Patch is an 'operation'", where)
    parts: dict[str, tuple[dict[str, Any], str]] = {}
    for number, part in enumerate(parameter.get("part") or []):
        part_where = f"{where}.part[{number}]"
        name = part.get("name") if isinstance(part, dict) else None
        if name not in ("type", "path", "name", "value", "index", "source", "destination"):
            raise bad_request(f"{part_where}: unknown operation part {name!r}", part_where)
        if name in parts:
            raise bad_request(f"{part_where}: '{name}' is given twice", part_where)
        parts[name] = (part, part_where)
    if "type" not in parts:
        raise bad_request(f"{where}: the operation has no type", where)
    op_type = _string(*parts["type"], "valueCode", "valueString")
    if op_type not in _OPERATION_TYPES:
        raise bad_request(f"{where}: unknown operation type {op_type!r}", where)
    for needed in _NEEDS[op_type]:
        if needed not in parts:
            raise bad_request(f"{where}: a '{op_type}' operation needs '{needed}'", where)
    return _Operation(
        type=op_type,
        path=_string(*parts["path"], "valueString"),
        name=_string(*parts["name"], "valueString") if "name" in parts else None,
        value=_value_of(*parts["value"]) if "value" in parts else None,
        index=_integer(*parts["index"]) if "index" in parts else None,
        source=_integer(*parts["source"]) if "source" in parts else None,
        destination=_integer(*parts["destination"]) if "destination" in parts else None,
    )


def _operations(parameters: object) -> list[_Operation]:
    if not isinstance(parameters, dict) or parameters.get("resourceType") != "Parameters":
        raise bad_request("A FHIRPath Patch is a Parameters resource")
    found = parameters.get("parameter")
    if not isinstance(found, list) or not found:
        raise bad_request("A FHIRPath Patch needs at least one operation", "Parameters.parameter")
    return [_operation(p, f"Parameters.parameter[{i}]") for i, p in enumerate(found)]


# --- building values -------------------------------------------------------------------------


def _json_value(value: _Value, target: Model | None, where: str) -> Any:
    """The JSON to write; anonymous parts become an object shaped by the target type."""
    if not value.parts:
        return json_copy(value.json)
    built: dict[str, Any] = {}
    table = element_table(target) if target is not None else {}
    for number, part in enumerate(value.parts):
        part_where = f"{where}.part[{number}]"
        name = part.get("name") if isinstance(part, dict) else None
        if not isinstance(name, str):
            raise bad_request(f"{part_where}: a part needs a name", part_where)
        child = _value_of(part, part_where)
        key = _key_for(table, name, child, target is not None, part_where)
        info = table.get(key)
        item = _json_value(child, info.model if info else None, part_where)
        if info is not None and info.repeats:
            built.setdefault(key, []).append(item)
        elif key in built:
            previous = built[key]
            built[key] = [*previous, item] if isinstance(previous, list) else [previous, item]
        else:
            built[key] = item
    return built


def _key_for(table: dict[str, Any], name: str, value: _Value, typed: bool, where: str) -> str:
    """The JSON key for element ``name``: a choice element takes the value's type as suffix."""
    if name in table or not typed:
        return name
    if value.fhir_type:
        choice = name + value.fhir_type[:1].upper() + value.fhir_type[1:]
        if choice in table:
            return choice
    raise unprocessable(f"{where}: '{name}' is not an element here", where)


def _check_type(location_owner: Model | None, key: str, value: _Value, path: str) -> None:
    """fhirpatch.html: "The type of the value must be correct for the place" (complex types)."""
    info = element_info(location_owner, key)
    if info is None or value.parts:
        return
    if info.is_resource:
        ok = value.fhir_type == "Resource"
    elif info.model is not None:
        ok = value.fhir_type == info.model.__name__
    else:
        ok = value.is_primitive  # primitive formats are left to re-validation
    if not ok:
        raise unprocessable(f"A {value.fhir_type} value does not fit {key}", path)


# --- twins: the ``_name`` extension array that lines up with a primitive array ------------


def _twin_insert(parent: dict[str, Any], key: str, index: int) -> None:
    twin = parent.get("_" + key)
    if isinstance(twin, list):
        twin.insert(index, None)


def _twin_remove(parent: dict[str, Any], key: str, index: int | None) -> None:
    twin_key = "_" + key
    if twin_key not in parent:
        return
    twin = parent[twin_key]
    if index is not None and isinstance(twin, list):
        if index < len(twin):
            twin.pop(index)
        if any(item is not None for item in twin):
            return
    del parent[twin_key]


def _twin_move(parent: dict[str, Any], key: str, source: int, destination: int) -> None:
    twin = parent.get("_" + key)
    if isinstance(twin, list) and source < len(twin):
        twin.insert(destination, twin.pop(source))


# --- operations ------------------------------------------------------------------------------


def _single(locations: list[Location], op: _Operation) -> Location:
    # fhirpatch.html: "The FHIRPath statement must return a single element"
    if len(locations) != 1:
        found = "nothing" if not locations else f"{len(locations)} elements"
        raise unprocessable(f"{op.type}: the path matches {found}, not one element", op.path)
    if locations[0].key == "resource" and op.type in ("delete", "replace"):
        raise unprocessable(f"{op.type}: cannot {op.type} the resource itself", op.path)
    return locations[0]


def _collection(locations: list[Location], op: _Operation) -> tuple[dict[str, Any], str]:
    """insert and move act on one list: every match must be an item of the same array."""
    if not locations:
        raise unprocessable(f"{op.type}: the path matches nothing", op.path)
    first = locations[0]
    if first.index is None or any(
        loc.parent is not first.parent or loc.key != first.key for loc in locations
    ):
        raise unprocessable(f"{op.type}: the path must name a single list", op.path)
    return first.parent, first.key


def _add(document: dict[str, Any], op: _Operation) -> None:
    target = _single(evaluate_locations(document, op.path), op)
    node = target.value
    assert op.name is not None and op.value is not None  # guaranteed by _NEEDS
    if not isinstance(node, dict):
        raise unprocessable("add: the path names a primitive value", op.path)
    table = element_table(target.model) if target.model is not None else {}
    key = _key_for(table, op.name, op.value, target.model is not None, op.path)
    _check_type(target.model, key, op.value, op.path)
    info = table.get(key)
    value = _json_value(op.value, info.model if info else None, op.path)
    repeats = info.repeats if info is not None else isinstance(node.get(key), list)
    if repeats:
        # fhirpatch.html: "The content will be appended to the element identified in the path"
        node.setdefault(key, []).append(value)
        return
    choice_taken = key != op.name and any(
        k.startswith(op.name) and k[len(op.name) :][:1].isupper() for k in node
    )
    if key in node or choice_taken:
        # fhirpatch.html: add is for non-repeating elements "as long as they do not already exist"
        raise unprocessable(f"add: {op.name} already exists and does not repeat", op.path)
    node[key] = value


def _insert(document: dict[str, Any], op: _Operation) -> None:
    locations = evaluate_locations(document, op.path)
    parent, key = _collection(locations, op)
    items = parent[key]
    assert op.index is not None and op.value is not None
    if op.index > len(items):
        # fhirpatch.html: the index "must be equal or less than the number of elements in the list"
        raise unprocessable(f"insert: index {op.index} is beyond the list's end", op.path)
    _check_type(locations[0].owner, key, op.value, op.path)
    info = element_info(locations[0].owner, key)
    items.insert(op.index, _json_value(op.value, info.model if info else None, op.path))
    _twin_insert(parent, key, op.index)


def _delete(document: dict[str, Any], op: _Operation) -> None:
    locations = evaluate_locations(document, op.path)
    if not locations:
        return  # fhirpatch.html: delete the element "if found"
    target = _single(locations, op)
    if target.index is None:
        del target.parent[target.key]
    else:
        items = target.parent[target.key]
        items.pop(target.index)
        if not items:  # json.html: no empty arrays
            del target.parent[target.key]
    _twin_remove(target.parent, target.key, target.index)


def _replace(document: dict[str, Any], op: _Operation) -> None:
    target = _single(evaluate_locations(document, op.path), op)
    assert op.value is not None
    key = target.key
    if key != target.element and op.value.fhir_type:
        # A choice element (Observation.value) takes the new value's type as its suffix.
        key = target.element + op.value.fhir_type[:1].upper() + op.value.fhir_type[1:]
    if key != target.key and target.owner is not None and element_info(target.owner, key) is None:
        raise unprocessable(f"replace: a {op.value.fhir_type} value does not fit here", op.path)
    _check_type(target.owner, key, op.value, op.path)
    info = element_info(target.owner, key)
    value = _json_value(op.value, info.model if info else target.model, op.path)
    _twin_remove(target.parent, target.key, target.index)
    if target.index is not None:
        target.parent[target.key][target.index] = value
    elif key != target.key:
        del target.parent[target.key]
        target.parent[key] = value
    else:
        target.parent[key] = value


def _move(document: dict[str, Any], op: _Operation) -> None:
    parent, key = _collection(evaluate_locations(document, op.path), op)
    items = parent[key]
    assert op.source is not None and op.destination is not None
    if op.source >= len(items) or op.destination >= len(items):
        raise unprocessable("move: source or destination is outside the list", op.path)
    items.insert(op.destination, items.pop(op.source))
    _twin_move(parent, key, op.source, op.destination)


_APPLY = {"add": _add, "insert": _insert, "delete": _delete, "replace": _replace, "move": _move}


def apply_fhirpath_patch(resource: dict[str, Any], parameters: dict[str, Any]) -> dict[str, Any]:
    """Apply a FHIRPath Patch (a Parameters resource) to ``resource``; return the patched copy.

    400 for a malformed patch or a change of resourceType/id; 422 when it cannot be applied.
    """
    operations = _operations(parameters)
    document = json_copy(resource)
    for op in operations:
        _APPLY[op.type](document, op)
    check_identity(resource, document)
    return document
