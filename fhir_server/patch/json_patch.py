"""JSON Patch (RFC 6902) applied to a FHIR resource, for the patch interaction (http.html#patch).

Statuses follow FHIR R4 http.html#patch: a patch document that is not a valid RFC 6902 document
is a 400; a valid document that cannot be applied to this resource (a ``test`` that fails, a
path that does not exist, an array index out of range) is a 422 "Unprocessable Entity".
A patch may not change ``resourceType`` or ``id``: the result must still be the resource named
in the URL (http.html#update: the body's id must match the URL), so that is a 400 too.

The input resource is never mutated: operations run on a copy, and values taken from the patch
are copied in, so the result shares no objects with either argument.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from fhir_server.errors import bad_request, unprocessable
from fhir_server.formats.fhir_json import exact_number

__all__ = ["apply_json_patch", "json_copy"]

_REQUIRED = {
    "add": ("path", "value"),
    "remove": ("path",),
    "replace": ("path", "value"),
    "move": ("from", "path"),
    "copy": ("from", "path"),
    "test": ("path", "value"),
}


def json_copy(value: Any) -> Any:
    """Deep copy of plain JSON (much cheaper than copy.deepcopy)."""
    if isinstance(value, dict):
        return {k: json_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_copy(v) for v in value]
    return value


def _json_equal(a: Any, b: Any) -> bool:
    """RFC 6902 §4.6 equality: like ``==`` but true/false are not the numbers 1/0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, int | float | Decimal) and isinstance(b, int | float | Decimal):
        # A stored decimal may be a Decimal (its precision kept) and the patch's a float:
        # compare the decimal values written, since Decimal("0.1") != 0.1 as a binary float.
        return exact_number(a) == exact_number(b)
    return type(a) is type(b) and a == b


def _pointer(text: object, where: str) -> list[str]:
    """RFC 6901 JSON Pointer -> reference tokens."""
    if not isinstance(text, str) or (text and not text.startswith("/")):
        raise bad_request(f"{where}: {text!r} is not a JSON Pointer (RFC 6901)")
    tokens = text.split("/")[1:]
    for token in tokens:
        # RFC 6901 §3: "~" only as "~0" or "~1"
        if "~" in token.replace("~0", "").replace("~1", ""):
            raise bad_request(f"{where}: bad escape in JSON Pointer {text!r}")
    return [t.replace("~1", "/").replace("~0", "~") for t in tokens]


def _operations(patch: object) -> list[dict[str, Any]]:
    """Check the document is an RFC 6902 patch (400 otherwise)."""
    if not isinstance(patch, list):
        raise bad_request("A JSON Patch document is a JSON array of operations (RFC 6902 §3)")
    for number, operation in enumerate(patch):
        where = f"operation {number}"
        if not isinstance(operation, dict):
            raise bad_request(f"{where}: an operation is a JSON object")
        op = operation.get("op")
        if op not in _REQUIRED:
            raise bad_request(f"{where}: unknown op {op!r} (RFC 6902 §4)")
        for member in _REQUIRED[op]:
            if member not in operation:
                raise bad_request(f"{where}: '{op}' needs '{member}'")
        _pointer(operation["path"], where)
        if "from" in _REQUIRED[op]:
            source = _pointer(operation["from"], where)
            target = _pointer(operation["path"], where)
            if op == "move" and len(source) < len(target) and target[: len(source)] == source:
                # RFC 6902 §4.4: a location cannot be moved into one of its children
                raise bad_request(f"{where}: cannot move {operation['from']} into itself")
    return patch


def _array_index(array: list[Any], token: str, where: str, *, for_add: bool) -> int:
    if token == "-" and for_add:
        return len(array)
    # RFC 6901 §4: decimal digits, no leading zeros
    if not token.isdigit() or (len(token) > 1 and token[0] == "0"):
        raise unprocessable(f"{where}: {token!r} is not an array index")
    index = int(token)
    if index > len(array) or (index == len(array) and not for_add):
        raise unprocessable(f"{where}: index {index} is out of range")
    return index


def _parent(document: Any, tokens: list[str], where: str) -> Any:
    """The container holding the last token (422 when the path does not exist)."""
    node = document
    for token in tokens[:-1]:
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list):
            node = node[_array_index(node, token, where, for_add=False)]
        else:
            raise unprocessable(f"{where}: path does not exist")
    return node


def _get(document: Any, tokens: list[str], where: str) -> Any:
    if not tokens:
        return document
    parent = _parent(document, tokens, where)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise unprocessable(f"{where}: path does not exist")
        return parent[last]
    if isinstance(parent, list):
        return parent[_array_index(parent, last, where, for_add=False)]
    raise unprocessable(f"{where}: path does not exist")


def _add(document: Any, tokens: list[str], value: Any, where: str) -> Any:
    if not tokens:
        return value
    parent = _parent(document, tokens, where)
    if isinstance(parent, dict):
        parent[tokens[-1]] = value
    elif isinstance(parent, list):
        parent.insert(_array_index(parent, tokens[-1], where, for_add=True), value)
    else:
        raise unprocessable(f"{where}: cannot add to a primitive value")
    return document


def _remove(document: Any, tokens: list[str], where: str) -> Any:
    if not tokens:
        raise unprocessable(f"{where}: cannot remove the whole resource")
    parent = _parent(document, tokens, where)
    if isinstance(parent, dict) and tokens[-1] in parent:
        return parent.pop(tokens[-1])
    if isinstance(parent, list):
        return parent.pop(_array_index(parent, tokens[-1], where, for_add=False))
    raise unprocessable(f"{where}: path does not exist")


def _apply(document: Any, operation: dict[str, Any], where: str) -> Any:
    op = operation["op"]
    path = _pointer(operation["path"], where)
    if op == "test":
        if not _json_equal(_get(document, path, where), operation["value"]):
            raise unprocessable(f"{where}: test failed at {operation['path']}")
        return document
    if op == "add":
        return _add(document, path, json_copy(operation["value"]), where)
    if op == "remove":
        _remove(document, path, where)
        return document
    if op == "replace":
        _get(document, path, where)  # RFC 6902 §4.3: the target must exist
        if not path:
            return json_copy(operation["value"])
        _remove(document, path, where)
        return _add(document, path, json_copy(operation["value"]), where)
    source = _pointer(operation["from"], where)
    if op == "move":
        return _add(document, path, _remove(document, source, where), where)
    return _add(document, path, json_copy(_get(document, source, where)), where)  # copy


def apply_json_patch(resource: dict[str, Any], patch: object) -> dict[str, Any]:
    """Apply an RFC 6902 JSON Patch to ``resource`` and return the patched copy.

    400 for an invalid patch document or a change of resourceType/id; 422 when a valid patch
    cannot be applied (failed ``test``, missing path, index out of range).
    """
    operations = _operations(patch)
    document: Any = json_copy(resource)
    for number, operation in enumerate(operations):
        where = f"operation {number} ({operation['op']} {operation['path']})"
        document = _apply(document, operation, where)
    if not isinstance(document, dict):
        raise unprocessable("The patched resource is not a JSON object")
    check_identity(resource, document)
    return document


def check_identity(before: dict[str, Any], after: dict[str, Any]) -> None:
    """A patch may not change what the resource is (http.html#patch: the id in the URL
    names the resource; changing type or id would be a different resource): 400."""
    for member in ("resourceType", "id"):
        if after.get(member) != before.get(member):
            raise bad_request(f"A patch may not change the resource's {member}", member)
