"""Dates as the period of time they denote, in microseconds since the epoch (UTC).

FHIR R4 search.html#date: a date value is an implicit range whose width is its precision
-- ``2013`` is all of 2013, ``2013-01-14T10:00`` the whole minute -- and search compares
those ranges. We keep both ends inclusive, in microseconds, so instants, dates and Periods
share two integer columns.

Time-zone rule: a time written without a zone (allowed in search values, and sometimes
found in data) is taken as UTC; a date without a time is a UTC calendar day. This is one
rule applied everywhere, as Blaze does (fhir-server-anchors.md 3.3); it does not depend
on the server's local zone.
"""

from __future__ import annotations

import re
from datetime import date
from functools import lru_cache

US_PER_SECOND = 1_000_000
US_PER_DAY = 86_400 * US_PER_SECOND
# Open ends of a Period (search.html#date: a missing start or end is unbounded).
MIN_US = -(2**62)
MAX_US = 2**62

_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()

_DATE = re.compile(
    r"(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d{1,9}))?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?"
)


class InvalidDate(ValueError):
    """Not a FHIR date, dateTime or instant (datatypes.html#dateTime)."""


def _days(y: int, m: int, d: int) -> int:
    try:
        return date(y, m, d).toordinal() - _EPOCH_ORDINAL
    except ValueError as exc:
        raise InvalidDate(f"{y:04d}-{m:02d}-{d:02d} is not a calendar date") from exc


@lru_cache(maxsize=4096)
def date_range(text: str) -> tuple[int, int]:
    """The inclusive (lo, hi) microsecond bounds of a FHIR date/dateTime/instant string.

    >>> date_range("1970-01-01")
    (0, 86399999999)
    """
    m = _DATE.fullmatch(text)
    if m is None:
        raise InvalidDate(f"{text!r} is not a FHIR date")
    y = int(m["y"])
    if m["m"] is None:
        lo = _days(y, 1, 1) * US_PER_DAY
        return lo, _days(y + 1, 1, 1) * US_PER_DAY - 1 if y < 9999 else MAX_US
    mo = int(m["m"])
    if not 1 <= mo <= 12:
        raise InvalidDate(f"{text!r}: month out of range")
    if m["d"] is None:
        lo = _days(y, mo, 1) * US_PER_DAY
        ny, nm = (y + 1, 1) if mo == 12 else (y, mo + 1)
        return lo, (_days(ny, nm, 1) * US_PER_DAY - 1) if ny <= 9999 else MAX_US
    day = _days(y, mo, int(m["d"])) * US_PER_DAY
    if m["H"] is None:
        return day, day + US_PER_DAY - 1
    hour, minute = int(m["H"]), int(m["M"])
    if hour > 23 or minute > 59:
        raise InvalidDate(f"{text!r}: time out of range")
    lo = day + (hour * 3600 + minute * 60) * US_PER_SECOND
    width = 60 * US_PER_SECOND
    if m["S"] is not None:
        second = int(m["S"])
        if second > 59:
            # FHIR allows a leap second 60 in instants; fold it onto 59.
            if second != 60:
                raise InvalidDate(f"{text!r}: seconds out of range")
            second = 59
        lo += second * US_PER_SECOND
        width = US_PER_SECOND
        frac = m["f"]
        if frac is not None:
            digits = frac[:6]
            lo += int(digits.ljust(6, "0"))
            width = 10 ** (6 - len(digits))
    tz = m["tz"]
    if tz and tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        offset = (int(tz[1:3]) * 3600 + int(tz[4:6]) * 60) * US_PER_SECOND
        lo -= sign * offset
    return lo, lo + width - 1


def instant_us(text: str) -> int:
    """The first microsecond a date/dateTime/instant denotes."""
    return date_range(text)[0]
