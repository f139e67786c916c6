"""Decimal search values and the range their significant figures imply.

FHIR R4 search.html#number: "100" means a value in [99.5, 100.5), "100.00" one in
[99.995, 100.005), "1e2" one in [50, 150): half a unit of the last written digit on either
side. Prefixes other than eq/ne/ap compare against the exact value ("lt100: values that
are less than exactly 100").
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

# FHIR decimal (datatypes.html#decimal) plus the exponent form search.html#number allows.
_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


class InvalidNumber(ValueError):
    """Not a decimal number."""


def parse_decimal(text: str) -> Decimal:
    if not _DECIMAL.fullmatch(text):
        raise InvalidNumber(f"{text!r} is not a number")
    try:
        return Decimal(text)
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only decimals
        raise InvalidNumber(f"{text!r} is not a number") from exc


def implicit_range(value: Decimal) -> tuple[Decimal, Decimal]:
    """[lo, hi) of a decimal written with the precision it has."""
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    half = Decimal(5).scaleb(exponent - 1)
    return value - half, value + half
