"""A small table of UCUM units and how they convert to one canonical unit per dimension.

FHIR R4 search.html#quantity: a server "SHOULD" compare quantities in canonical units
when the system is UCUM, so ``5.4|http://unitsofmeasure.org|mg`` finds ``0.0054 g``. We
know the units our programme's data uses (mass, length, time, volume, concentration,
rates, BMI); others are matched on system and code as written.
"""

from __future__ import annotations

from decimal import Decimal

UCUM = "http://unitsofmeasure.org"

_D = Decimal

# code -> (canonical code, factor to multiply a value in `code` by). Factors from the
# UCUM definitions (https://ucum.org/ucum): [lb_av] = 453.59237 g, [in_i] = 2.54 cm,
# mo = a_j/12 = 30.4375 d, a = a_j = 365.25 d.
_TABLE: dict[str, tuple[str, Decimal]] = {
    # mass
    "kg": ("g", _D(1000)),
    "g": ("g", _D(1)),
    "mg": ("g", _D("0.001")),
    "ug": ("g", _D("0.000001")),
    "ng": ("g", _D("1e-9")),
    "[lb_av]": ("g", _D("453.59237")),
    "[oz_av]": ("g", _D("28.349523125")),
    # length
    "km": ("m", _D(1000)),
    "m": ("m", _D(1)),
    "cm": ("m", _D("0.01")),
    "mm": ("m", _D("0.001")),
    "[in_i]": ("m", _D("0.0254")),
    "[ft_i]": ("m", _D("0.3048")),
    # time
    "ms": ("s", _D("0.001")),
    "s": ("s", _D(1)),
    "min": ("s", _D(60)),
    "h": ("s", _D(3600)),
    "d": ("s", _D(86400)),
    "wk": ("s", _D(604800)),
    "mo": ("s", _D("2629800")),
    "a": ("s", _D("31557600")),
    # volume
    "L": ("L", _D(1)),
    "l": ("L", _D(1)),
    "dL": ("L", _D("0.1")),
    "mL": ("L", _D("0.001")),
    "uL": ("L", _D("0.000001")),
    # substance and mass concentration
    "mol/L": ("mol/L", _D(1)),
    "mmol/L": ("mol/L", _D("0.001")),
    "umol/L": ("mol/L", _D("0.000001")),
    "g/L": ("g/L", _D(1)),
    "g/dL": ("g/L", _D(10)),
    "mg/dL": ("g/L", _D("0.01")),
    "mg/L": ("g/L", _D("0.001")),
    # rates (heart rate, respiratory rate, steps per day)
    "/s": ("/s", _D(1)),
    "/min": ("/s", _D(1) / _D(60)),
    "/h": ("/s", _D(1) / _D(3600)),
    "/d": ("/s", _D(1) / _D(86400)),
    # body mass index
    "kg/m2": ("g/m2", _D(1000)),
    "g/m2": ("g/m2", _D(1)),
}


def canonical(system: str | None, code: str | None) -> tuple[str, Decimal] | None:
    """(canonical code, factor) for a UCUM code we know, else None."""
    if system != UCUM or code is None:
        return None
    return _TABLE.get(code)
