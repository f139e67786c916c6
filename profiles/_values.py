"""Comparing JSON values the way fixed[x] and pattern[x] mean (profiling.html#fixed)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any


def number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def _same_primitive(value: Any, expected: Any) -> bool:
    left, right = number(value), number(expected)
    if left is not None and right is not None:
        return left == right
    return type(value) is type(expected) and value == expected


def equals_fixed(value: Any, fixed: Any) -> bool:
    """profiling.html#fixed: exactly the fixed value, nothing more and nothing less."""
    if isinstance(fixed, dict):
        if not isinstance(value, dict) or set(value) != set(fixed):
            return False
        return all(equals_fixed(value[k], v) for k, v in fixed.items())
    if isinstance(fixed, list):
        if not isinstance(value, list) or len(value) != len(fixed):
            return False
        return all(equals_fixed(v, f) for v, f in zip(value, fixed, strict=True))
    return _same_primitive(value, fixed)


def matches_pattern(value: Any, pattern: Any) -> bool:
    """profiling.html#pattern: everything in the pattern is in the value (lists: each pattern
    item matches some value item); the value may have more."""
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(
            k in value and matches_pattern(value[k], v) for k, v in pattern.items()
        )
    if isinstance(pattern, list):
        return isinstance(value, list) and all(
            any(matches_pattern(v, p) for v in value) for p in pattern
        )
    return _same_primitive(value, pattern)


def describe(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if value is None:
        return "null"
    return repr(value)
