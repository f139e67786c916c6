"""What a request body may hold, checked once it is parsed and before anything else runs.

Two kinds of rule, both pure:

- **Cost** (413 ``too-costly``): a body of a few megabytes can hold hundreds of thousands
  of values, each of which the model validation, the index extraction and the storage pay
  for (a 22.9 MB Patient took 57 s and 1.7 GB). Bounded: nesting depth, items in one
  array, values in the whole document (objects, arrays and primitives alike). The size in
  bytes is bounded earlier, while the body is read (fhir_server/api/limits.py).
- **Characters** (400 ``invalid``): FHIR R4 datatypes.html#string: "Strings SHALL NOT
  contain Unicode character points below 32, except for u0009 (horizontal tab), u0010
  (carriage return) and u0013 (line feed)" -- the R4 regex for string is
  ``[ \\r\\n\\t\\S]+``. JSON can carry them only escaped (``\\u0000``); PostgreSQL cannot
  store U+0000 in text or jsonb at all, so without this check the same body was a 201 on
  SQLite and a 500 on PostgreSQL. Object keys are checked too. XML 1.0 cannot carry
  these characters (lxml refuses ``&#0;``), so an XML body meets only the cost rules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from fhir_server.errors import FhirError, error

# datatypes.html#string: control characters other than tab, LF and CR.
FORBIDDEN_CHARACTERS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")
# The only way such a character gets into JSON text: an escape \u0000 .. \u001f.
_ESCAPED_CONTROL = re.compile(rb"\\u00[01][0-9a-fA-F]")


@dataclass(frozen=True, slots=True)
class StructureLimits:
    max_depth: int = 64
    max_array_items: int = 10_000
    max_elements: int = 200_000


def too_costly(diagnostics: str) -> FhirError:
    return error(413, "too-costly", diagnostics)


def forbidden_character(where: str, text: str) -> FhirError:
    found = FORBIDDEN_CHARACTERS.search(text)
    code = f"U+{ord(found.group()):04X}" if found else "a control character"
    return error(
        400,
        "invalid",
        f"{where} contains {code}; FHIR R4 strings may not hold control characters other "
        "than tab, carriage return and line feed (datatypes.html#string)",
    )


def check_json(value: Any, raw: bytes, limits: StructureLimits) -> None:
    """Raise 413 when ``value`` (parsed from ``raw``) passes a cost limit, 400 when one
    of its strings or keys holds a character R4 forbids."""
    strings = _ESCAPED_CONTROL.search(raw) is not None  # else no string can hold one
    elements = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        elements += 1
        if isinstance(item, dict):
            if depth > limits.max_depth:
                raise too_costly(f"The body nests deeper than {limits.max_depth} levels")
            if len(item) > limits.max_array_items:
                raise too_costly(
                    f"An object of the body has more than {limits.max_array_items} keys"
                )
            for key, child in item.items():
                if strings and FORBIDDEN_CHARACTERS.search(key):
                    raise forbidden_character("A property name", key)
                stack.append((child, depth + 1))
        elif isinstance(item, list):
            if depth > limits.max_depth:
                raise too_costly(f"The body nests deeper than {limits.max_depth} levels")
            if len(item) > limits.max_array_items:
                raise too_costly(
                    f"An array of the body has {len(item)} items; at most "
                    f"{limits.max_array_items} are accepted"
                )
            stack.extend((child, depth + 1) for child in item)
        elif strings and isinstance(item, str) and FORBIDDEN_CHARACTERS.search(item):
            raise forbidden_character("A string", item)
        if elements > limits.max_elements:
            raise too_costly(f"The body holds more than {limits.max_elements} values; split it up")


def check_xml(root: Any, limits: StructureLimits) -> None:
    """The cost limits on a parsed XML tree (lxml), before it is turned into JSON."""
    elements = 0
    stack: list[tuple[Any, int]] = [(root, 1)]
    while stack:
        elem, depth = stack.pop()
        elements += 1
        if elements > limits.max_elements:
            raise too_costly(
                f"The body holds more than {limits.max_elements} elements; split it up"
            )
        if depth > limits.max_depth:
            raise too_costly(f"The body nests deeper than {limits.max_depth} levels")
        children = len(elem)
        if children > limits.max_array_items:
            raise too_costly(
                f"An element of the body has {children} children; at most "
                f"{limits.max_array_items} are accepted"
            )
        stack.extend((child, depth + 1) for child in elem)


__all__ = [
    "FORBIDDEN_CHARACTERS",
    "StructureLimits",
    "check_json",
    "check_xml",
    "forbidden_character",
    "too_costly",
]
