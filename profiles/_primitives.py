"""FHIR R4 primitive values: the JSON type, the regex and the rules the regex cannot say.

The regex and maximum length of each type come from its StructureDefinition (``string.value``
has ``[ \\r\\n\\t\\S]+`` and maxLength 1048576, ``id.value`` ``[A-Za-z0-9\\-\\.]{1,64}``, ...).
What a regex cannot express is checked here: JSON value types (json.html#primitive),
integer ranges, real calendar dates, base64 content, control characters and surrounding
whitespace in strings (datatypes.html#string).
"""

from __future__ import annotations

import base64
import binascii
import calendar
import math
import re
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Any

from profiles._definitions import registry

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
_INTEGER_TYPES = {"integer": INT32_MIN, "unsignedInt": 0, "positiveInt": 1}
_DATE_PART = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")
# datatypes.html#string: no characters below U+0020 other than tab, carriage return and line feed.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")


@dataclass(frozen=True, slots=True)
class Problem:
    severity: str
    code: str
    message: str
    rule: str


@dataclass(frozen=True, slots=True)
class PrimitiveRule:
    regex: re.Pattern[str] | None
    max_length: int | None


@cache
def primitive_rule(type_code: str) -> PrimitiveRule:
    definition = registry().of_type(type_code)
    element = definition.by_id.get(f"{type_code}.value") if definition else None
    if element is None:
        return PrimitiveRule(None, None)
    # base64 content is checked by decoding; the R4 regex backtracks badly on large values.
    pattern = element.regex if type_code != "base64Binary" else None
    return PrimitiveRule(re.compile(pattern) if pattern else None, element.max_length)


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, Decimal) and value.is_finite()


def _valid_calendar_date(text: str) -> bool:
    match = _DATE_PART.match(text)
    if match is None:
        return False
    year, month, day = match.groups()
    if day is None:
        return True
    return int(day) <= calendar.monthrange(int(year), int(month))[1]


def _valid_base64(text: str) -> bool:
    compact = "".join(text.split())
    if len(compact) % 4:
        return False
    try:
        base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def check_primitive(type_code: str, value: Any, *, is_resource_id: bool = False) -> list[Problem]:
    """Problems with one primitive JSON value of ``type_code`` (empty when it is fine)."""
    if type_code == "boolean":
        if type(value) is not bool:
            return [
                Problem(
                    "error", "structure", f"Expected a JSON boolean, found {value!r}", "json-type"
                )
            ]
        return []
    if type_code in _INTEGER_TYPES:
        if type(value) is not int:
            return [
                Problem(
                    "error", "structure", f"Expected a JSON integer, found {value!r}", "json-type"
                )
            ]
        if not _INTEGER_TYPES[type_code] <= value <= INT32_MAX:
            return [
                Problem(
                    "error",
                    "value",
                    f"The value {value} is outside the range of {type_code}",
                    "primitive-range",
                )
            ]
        return []
    if type_code == "decimal":
        if not _is_number(value):
            return [
                Problem(
                    "error", "structure", f"Expected a JSON number, found {value!r}", "json-type"
                )
            ]
        return []
    if not isinstance(value, str):
        return [
            Problem("error", "structure", f"Expected a JSON string, found {value!r}", "json-type")
        ]
    return _check_text(type_code, value, is_resource_id)


def _check_text(type_code: str, value: str, is_resource_id: bool) -> list[Problem]:
    problems: list[Problem] = []
    if value == "":
        # json.html#primitive / ele-1: a primitive has a value or it is left out.
        return [Problem("error", "invalid", "@value cannot be empty", "empty-value")]
    rule = primitive_rule(type_code)
    if rule.max_length is not None and len(value.encode("utf-8")) > rule.max_length:
        problems.append(
            Problem(
                "error",
                "invalid",
                f"value is longer than permitted maximum length of {rule.max_length} bytes",
                "string-size",
            )
        )
        return problems
    if rule.regex is not None and rule.regex.fullmatch(value) is None:
        if is_resource_id:
            reason = "Too long" if len(value) > 64 else "Invalid Characters"
            message = f"Invalid Resource id: {reason} ({value!r})"
        else:
            message = f"The value {_shorten(value)!r} is not a valid {type_code}"
        problems.append(Problem("error", "invalid", message, "primitive-format"))
        return problems
    if type_code in ("date", "dateTime", "instant") and not _valid_calendar_date(value):
        problems.append(
            Problem("error", "invalid", f"Not a valid date: {value!r}", "primitive-format")
        )
    elif type_code == "base64Binary" and not _valid_base64(value):
        problems.append(
            Problem(
                "error", "invalid", f"The value {_shorten(value)!r} is not valid base64", "base64"
            )
        )
    elif type_code in ("string", "markdown"):
        if _CONTROL.search(value):
            problems.append(
                Problem(
                    "error",
                    "invalid",
                    "The string contains control characters (below U+0020 other than tab, CR, LF)",
                    "string-characters",
                )
            )
        elif type_code == "string" and value != value.strip():
            problems.append(
                Problem(
                    "warning",
                    "invalid",
                    "value should not start or finish with whitespace",
                    "string-whitespace",
                )
            )
    elif type_code in ("uri", "url", "canonical") and not _well_formed_urn(value):
        problems.append(
            Problem(
                "error",
                "invalid",
                f"UUIDs must be valid and lowercase, OIDs dotted digits ({value})",
                "urn-format",
            )
        )
    elif type_code == "canonical" and not (value.startswith("#") or _SCHEME.match(value)):
        # references.html#canonical: canonical URLs are absolute (or a local #fragment).
        problems.append(
            Problem(
                "error",
                "invalid",
                "Canonical URLs must be absolute URLs if they are not fragment references "
                f"({value})",
                "canonical-absolute",
            )
        )
    return problems


_UUID = re.compile(r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_OID = re.compile(r"urn:oid:[0-2](\.(0|[1-9][0-9]*))+")


def _well_formed_urn(value: str) -> bool:
    """datatypes.html#uuid and #oid: a urn:uuid is a lowercase UUID, a urn:oid dotted digits."""
    if value.startswith("urn:uuid:"):
        return _UUID.fullmatch(value.split("|", 1)[0]) is not None
    if value.startswith("urn:oid:"):
        return _OID.fullmatch(value.split("|", 1)[0]) is not None
    return True


def is_absolute_uri(value: str) -> bool:
    return _SCHEME.match(value) is not None


def _shorten(value: str, limit: int = 80) -> str:
    return value if len(value) <= limit else value[:limit] + "..."
