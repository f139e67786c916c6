"""A restricted FHIRPath evaluator that answers *where* nodes are, for FHIRPath Patch.

FHIRPath Patch (R4 fhirpatch.html) must change the nodes a path selects, so evaluation
returns :class:`Location` values (the containing object, the JSON key and, for repeating
elements, the array index) instead of values.

Supported (the subset patch paths use in practice):

- ``Patient``, ``Patient.name``, ``Patient.name[0].given``: navigation and indexers;
- choice elements without a type suffix, ``Observation.value`` finding ``valueQuantity``
  (fhirpath.html#polymorphism), and ``.ofType(Quantity)`` on them;
- ``.first()``, ``.last()``, ``.extension('url')``;
- ``.where(criteria)`` where criteria combine ``path = literal`` / ``path != literal`` /
  a boolean ``path`` with ``and`` / ``or`` / parentheses; literals are 'strings', numbers,
  ``true`` and ``false``.

Anything else (``resolve()``, other functions, operators outside ``where``) is refused:
the patch cannot be applied as written, so the caller answers 400.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from fhir_server.errors import bad_request
from fhir_server.formats.fhir_json import exact_number
from fhir_server.validation import ElementInfo, Model, element_table, find_model_class

__all__ = ["Location", "evaluate_locations", "element_info"]


@dataclass(frozen=True, slots=True)
class Location:
    """One node: ``parent[key]`` or, for a repeating element, ``parent[key][index]``."""

    parent: dict[str, Any]
    key: str
    index: int | None
    element: str  # the element name the path used (a choice element's name without its type)
    owner: Model | None  # the FHIR type of ``parent`` (None when unknown)
    model: Model | None  # the FHIR type of the node when complex (None: primitive or unknown)

    @property
    def value(self) -> Any:
        value = self.parent[self.key]
        return value if self.index is None else value[self.index]


def element_info(owner: Model | None, key: str) -> ElementInfo | None:
    return None if owner is None else element_table(owner).get(key)


# --- tokens ---------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^'\\]|\\.)*')|(?P<number>-?\d+(?:\.\d+)?)"
    r"|(?P<ident>[A-Za-z_][A-Za-z0-9_]*|`[^`]+`)|(?P<op>!=|[.()\[\]=,]))"
)


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise bad_request(f"Cannot parse the FHIRPath {text!r} at {position}", code="invalid")
        kind = match.lastgroup or ""
        token = match.group(kind)
        if kind == "string":
            token = re.sub(r"\\(.)", r"\1", token[1:-1])
        elif kind == "ident" and token.startswith("`"):
            token = token[1:-1]
        tokens.append((kind, token))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.position = 0

    def peek(self, offset: int = 0) -> tuple[str, str]:
        index = self.position + offset
        return self.tokens[index] if index < len(self.tokens) else ("end", "")

    def take(self, kind: str, value: str | None = None) -> str:
        token = self.peek()
        if token[0] != kind or (value is not None and token[1] != value):
            expected = value or kind
            raise bad_request(
                f"FHIRPath {self.text!r}: expected {expected}, found {token[1]!r}", code="invalid"
            )
        self.position += 1
        return token[1]

    def at(self, kind: str, value: str | None = None) -> bool:
        token = self.peek()
        return token[0] == kind and (value is None or token[1] == value)

    def whole_path(self) -> list[tuple[str, Any]]:
        steps = self.steps()
        if not self.at("end"):
            raise bad_request(
                f"FHIRPath {self.text!r}: unexpected {self.peek()[1]!r}", code="invalid"
            )
        return steps

    def steps(self) -> list[tuple[str, Any]]:
        """A path: ``ident ( '.' ident [ '(' args ')' ] | '[' n ']' )*``."""
        steps: list[tuple[str, Any]] = [("child", self.take("ident"))]
        while self.at("op", ".") or self.at("op", "["):
            if self.at("op", "["):
                self.take("op", "[")
                steps.append(("index", int(self.take("number"))))
                self.take("op", "]")
                continue
            self.take("op", ".")
            name = self.take("ident")
            if not self.at("op", "("):
                steps.append(("child", name))
                continue
            self.take("op", "(")
            steps.append(self.function(name))
            self.take("op", ")")
        return steps

    def function(self, name: str) -> tuple[str, Any]:
        if name in ("first", "last"):
            return (name, None)
        if name == "extension":
            return ("extension", self.take("string"))
        if name == "ofType":
            return ("ofType", self.take("ident"))
        if name == "where":
            return ("where", self.criteria())
        raise bad_request(
            f"FHIRPath {self.text!r}: {name}() is not supported in patch paths",
            code="not-supported",
        )

    # criteria := and ('or' and)* ; and := term ('and' term)* ; term := '(' criteria ')' | cmp
    def criteria(self) -> Callable[[Any], bool]:
        left = self.conjunction()
        while self.at("ident", "or"):
            self.take("ident")
            right = self.conjunction()
            left = _either(left, right)
        return left

    def conjunction(self) -> Callable[[Any], bool]:
        left = self.term()
        while self.at("ident", "and"):
            self.take("ident")
            right = self.term()
            left = _both(left, right)
        return left

    def term(self) -> Callable[[Any], bool]:
        if self.at("op", "("):
            self.take("op", "(")
            inner = self.criteria()
            self.take("op", ")")
            return inner
        path = self.steps()
        if self.at("op", "=") or self.at("op", "!="):
            negate = self.take("op") == "!="
            literal = self.literal()
            return _comparison(path, literal, negate)
        return _comparison(path, True, False)

    def literal(self) -> Any:
        kind, token = self.peek()
        self.position += 1
        if kind == "string":
            return token
        if kind == "number":
            return float(token) if "." in token else int(token)
        if kind == "ident" and token in ("true", "false"):
            return token == "true"
        raise bad_request(f"FHIRPath {self.text!r}: {token!r} is not a literal", code="invalid")


def _either(a: Callable[[Any], bool], b: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda item: a(item) or b(item)


def _both(a: Callable[[Any], bool], b: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda item: a(item) and b(item)


def _comparison(path: list[tuple[str, Any]], literal: Any, negate: bool) -> Callable[[Any], bool]:
    def test(item: Any) -> bool:
        values = _values(item, path)
        # fhirpath.html#equality: a singleton compares; an empty collection is not equal.
        equal = len(values) == 1 and _same(values[0], literal)
        return (not equal and len(values) == 1) if negate else equal

    return test


def _same(value: Any, literal: Any) -> bool:
    if isinstance(literal, bool) or isinstance(value, bool):
        return isinstance(value, bool) and value is literal
    if isinstance(value, int | float | Decimal) and isinstance(literal, int | float | Decimal):
        return exact_number(value) == exact_number(literal)  # Decimal("0.1") != float 0.1
    return value == literal


def _values(item: Any, path: list[tuple[str, Any]]) -> list[Any]:
    """Values (not locations) of a relative path inside ``where``; untyped navigation."""
    current = [item]
    for kind, argument in path:
        if kind == "child":
            current = [v for node in current for v in _children_values(node, argument)]
        elif kind == "index":
            current = current[argument : argument + 1]
        elif kind == "first":
            current = current[:1]
        elif kind == "last":
            current = current[-1:]
        elif kind == "extension":
            current = [
                e
                for node in current
                for e in _children_values(node, "extension")
                if isinstance(e, dict) and e.get("url") == argument
            ]
        else:
            raise bad_request(f"{kind}() is not supported inside where()", code="not-supported")
    return current


def _children_values(node: Any, name: str) -> list[Any]:
    if not isinstance(node, dict):
        return []
    keys = [name] if name in node else _choice_keys(node, name)
    values: list[Any] = []
    for key in keys:
        value = node[key]
        values.extend(value if isinstance(value, list) else [value])
    return values


def _choice_keys(node: dict[str, Any], name: str) -> list[str]:
    # fhirpath.html#polymorphism: ``value`` selects valueQuantity, valueString, ...
    return [k for k in node if k.startswith(name) and len(k) > len(name) and k[len(name)].isupper()]


# --- location evaluation --------------------------------------------------------------------


def evaluate_locations(resource: dict[str, Any], path: str) -> list[Location]:
    """Where ``path`` points in ``resource``; the resource itself is ``holder['resource']``."""
    steps = _Parser(path).whole_path()
    resource_type = str(resource.get("resourceType"))
    if steps[0][1] != resource_type:
        raise bad_request(
            f"The patch path {path!r} must start with {resource_type}", code="invalid"
        )
    holder = {"resource": resource}
    current = [
        Location(holder, "resource", None, "resource", None, find_model_class(resource_type))
    ]
    for kind, argument in steps[1:]:
        current = _step(current, kind, argument)
    return current


def _step(current: list[Location], kind: str, argument: Any) -> list[Location]:
    if kind == "child":
        return [child for location in current for child in _children(location, argument)]
    if kind == "index":
        return current[argument : argument + 1]
    if kind == "first":
        return current[:1]
    if kind == "last":
        return current[-1:]
    if kind == "extension":
        return [
            child
            for location in current
            for child in _children(location, "extension")
            if isinstance(child.value, dict) and child.value.get("url") == argument
        ]
    if kind == "ofType":
        suffix = argument[:1].upper() + argument[1:]
        return [loc for loc in current if loc.key == loc.element + suffix]
    return [location for location in current if argument(location.value)]  # where


def _children(location: Location, name: str) -> list[Location]:
    node = location.value
    if not isinstance(node, dict):
        return []
    owner = location.model
    keys = [name] if name in node else _choice_keys(node, name)
    found: list[Location] = []
    for key in keys:
        value = node[key]
        items = value if isinstance(value, list) else [value]
        for index, item in enumerate(items):
            found.append(
                Location(
                    node,
                    key,
                    index if isinstance(value, list) else None,
                    name,
                    owner,
                    _model_of(owner, key, item),
                )
            )
    return found


def _model_of(owner: Model | None, key: str, item: Any) -> Model | None:
    info = element_info(owner, key)
    if info is None:
        return None
    if info.is_resource:
        return find_model_class(str(item.get("resourceType"))) if isinstance(item, dict) else None
    return info.model
