"""National patient identifiers: the NHS number (England) and the CPR number (Denmark).

NHS number (NHS Data Dictionary, "NHS Number"): ten digits; the tenth is a modulus-11 check
digit of the first nine, weighted 10 down to 2. A remainder giving check digit 11 means 0;
check digit 10 means the number was never issued.

CPR number (CPR-kontoret, "Opbygning af CPR-nummeret"; DK Core Patient): ten digits, DDMMYY
then a four-digit serial. DK Core only checks the day and month (29 February always allowed,
the year is not known to be a leap year without the century digit) and the digit count. There
is deliberately no modulus-11 check: numbers issued since 1 October 2007 may fail it.
"""

from __future__ import annotations

import re

NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
CPR_SYSTEM = "urn:oid:1.2.208.176.1.2"

_NHS_WEIGHTS = (10, 9, 8, 7, 6, 5, 4, 3, 2)
_DAYS_IN_MONTH = {
    1: 31,
    2: 29,
    3: 31,
    4: 30,
    5: 31,
    6: 30,
    7: 31,
    8: 31,
    9: 30,
    10: 31,
    11: 30,
    12: 31,
}
_TEN_DIGITS = re.compile(r"[0-9]{10}")


def nhs_check_digit(first_nine: str) -> int | None:
    """The check digit for nine digits, or None when no valid NHS number starts with them."""
    total = sum(int(digit) * weight for digit, weight in zip(first_nine, _NHS_WEIGHTS, strict=True))
    check = 11 - total % 11
    if check == 11:
        return 0
    return None if check == 10 else check


def is_valid_nhs_number(value: str) -> bool:
    """Ten digits whose last digit is the modulus-11 check digit of the first nine."""
    if _TEN_DIGITS.fullmatch(value) is None:
        return False
    return nhs_check_digit(value[:9]) == int(value[9])


def is_well_formed_cpr(value: str) -> bool:
    """Ten digits starting with a real day and month (DDMM). No modulus-11 check, by design."""
    if _TEN_DIGITS.fullmatch(value) is None:
        return False
    day, month = int(value[0:2]), int(value[2:4])
    return 1 <= month <= 12 and 1 <= day <= _DAYS_IN_MONTH[month]
