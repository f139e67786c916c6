"""FHIR JSON in and out with decimals kept exactly as the client wrote them.

FHIR R4 datatypes.html#decimal and json.html#primitive: a decimal keeps its precision,
"1.50" is not "1.5", and a value such as 12345678901234567890.123 must not be rounded
through a double. ``orjson`` gives a ``float`` for every number with a fraction or an
exponent, so:

* :func:`parse_fhir_json` parses with ``orjson``, then proves no number changed: cheaply
  when the body is ``orjson``'s own output (stored bodies: writing the value back gives the
  same bytes), else by one scan of the raw bytes for number tokens a ``float`` would not
  write back unchanged (trailing zeros, exponents, more than 15 significant digits,
  integers past 64 bits). Without one (the common body) the ``orjson`` result is the
  answer. With one, the body (already accepted by ``orjson``, so both paths refuse exactly
  the same documents: bad UTF-8, a BOM, lone surrogates, NaN, 1e400, too deep) is parsed
  again by :mod:`json` and only those numbers become :class:`FhirDecimal`, a ``Decimal``
  that remembers its text; the rest stay ``int`` and ``float``.
* :func:`dump_fhir_json` writes with ``orjson`` and a ``FhirDecimal`` as its original text
  (``orjson.Fragment``); a plain ``Decimal`` (the result of arithmetic) as ``str()``.
* :func:`decimal_from_text` is the same choice for one decimal's text (XML input).
* A document whose object repeats a key is refused (:func:`refuse_duplicate_keys`).
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import orjson

# JSON number grammar (RFC 8259 section 6), which is also the FHIR decimal lexical form
# (datatypes.html#primitive).
_NUMBER_TEXT = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")

# A number token where JSON allows a value: after ':', ',' or '[' and before ',', ']' or
# '}'. Only tokens with a fraction or an exponent, or with 19 or more digits (orjson reads
# integers into 64 bits), can change when read as orjson reads them. "-0" stays the
# integer 0, as before: the same value and precision, and an integer element needs an int.
# Text inside a string may match too ("BP: 120.50,"); that only costs the exact path,
# never a wrong answer. Timestamps ("12:30:05.120Z") do not: a number never runs into a
# letter.
_SUSPECT = re.compile(
    rb"[:,\[][ \t\n\r]*(-?(?:(?:0|[1-9][0-9]*)(?:\.[0-9]+)?[eE][-+]?[0-9]+"
    rb"|(?:0|[1-9][0-9]*)\.[0-9]+|[1-9][0-9]{18,}))(?=[ \t\n\r]*[,\]}])"
)


# An object key: a quote that closes a string, then a colon. A quote inside a string is
# always escaped, so every match outside the rare key ending in an escaped backslash
# (`"a\\": ...`) is a key; that rare case only makes the count differ, which costs the exact
# check below, never a wrong answer.
_KEY = re.compile(rb'(?<!\\)"[ \t\n\r]*:')


def _key_count(value: Any) -> int:
    """How many object keys ``value`` holds, at every depth."""
    count = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            count += len(item)
            stack.extend(v for v in item.values() if isinstance(v, dict | list))
        elif isinstance(item, list):
            stack.extend(v for v in item if isinstance(v, dict | list))
    return count


def _duplicate_key(text: str) -> str | None:
    """The first key that repeats within one object, or None."""
    found: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for key, _ in items:
            if key in seen and not found:
                found.append(key)
            seen.add(key)
        return dict(items)

    json.loads(text, object_pairs_hook=pairs)
    return found[0] if found else None


def refuse_duplicate_keys(raw: bytes, value: Any) -> None:
    """Raise ``orjson.JSONDecodeError`` when an object of the document repeats a key.

    RFC 8259 section 4 leaves repeated names to the parser, and orjson keeps the last one;
    FHIR JSON (json.html#2.6.2, "JSON representation of resources") has each property
    once, and a server that silently kept one of two values would lose what the client
    sent. Cheap on the common body: the keys in the text are counted by one scan and
    compared with the keys parsed; only when they differ is the document read again to
    find the repeated one."""
    if len(_KEY.findall(raw)) == _key_count(value):
        return
    text = raw.decode("utf-8")
    repeated = _duplicate_key(text)
    if repeated is not None:
        raise orjson.JSONDecodeError(f"an object repeats the key {repeated!r}", text, 0)


class FhirDecimal(Decimal):
    """A decimal as written on the wire: equal to ``Decimal(text)``, written back as ``text``.

    Arithmetic on it gives a plain ``Decimal``; mixing it with a ``float`` raises
    ``TypeError`` like any ``Decimal`` does (convert with ``float()`` first).
    """

    __slots__ = ("text",)
    text: str

    def __new__(cls, text: str) -> FhirDecimal:
        if not _NUMBER_TEXT.fullmatch(text):
            raise ValueError(f"{text!r} is not a decimal")
        self = super().__new__(cls, text)
        self.text = text
        return self

    # Immutable like Decimal; copies keep the text (copy.deepcopy is used on resources).
    def __copy__(self) -> FhirDecimal:
        return self

    def __deepcopy__(self, memo: Any) -> FhirDecimal:
        return self

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (FhirDecimal, (self.text,))

    def __repr__(self) -> str:
        return f"FhirDecimal({self.text!r})"


def _exact_as_float(token: bytes) -> bool:
    """True when orjson reads ``token`` and writes it back byte for byte."""
    try:
        return orjson.dumps(orjson.loads(token)) == token
    except orjson.JSONDecodeError:
        return True  # not a JSON number (text inside a string): nothing to keep


def needs_exact_decimals(body: bytes) -> bool:
    """True when some number in ``body`` would lose its written form through a float."""
    return any(not _exact_as_float(m.group(1)) for m in _SUSPECT.finditer(body))


def decimal_from_text(text: str) -> Any:
    """One JSON/FHIR number's value: what orjson gives (``int`` or ``float``) when that
    writes back as ``text``, a :class:`FhirDecimal` otherwise."""
    if not _NUMBER_TEXT.fullmatch(text):
        raise ValueError(f"{text!r} is not a decimal")
    token = text.encode()
    # orjson refuses what a double cannot hold (1e400); so does this (ValueError).
    value = orjson.loads(token)
    if orjson.dumps(value) == token or text == "-0":  # -0: the integer 0 (see _SUSPECT)
        return value
    return FhirDecimal(text)


def parse_fhir_json(body: bytes | str) -> Any:
    """A FHIR JSON document as Python values; raises ``orjson.JSONDecodeError`` (a
    ``ValueError``) when it is not JSON. Decimals keep their text (module docstring)."""
    value = orjson.loads(body)
    raw = body.encode() if isinstance(body, str) else body
    if isinstance(value, dict | list):
        # Stored bodies are orjson's own output: when writing the value back gives the
        # same bytes, no number can have changed, and that is cheaper than the scan.
        if orjson.dumps(value) == raw:
            return value
        refuse_duplicate_keys(raw, value)
        if not needs_exact_decimals(raw):
            return value
    elif isinstance(value, bool) or not isinstance(value, int | float):
        return value
    text = body if isinstance(body, str) else body.decode("utf-8")
    # orjson has accepted the document; json only re-reads it with exact numbers.
    return json.loads(text, parse_float=decimal_from_text, parse_int=decimal_from_text)


def exact_number(value: int | float | Decimal) -> Decimal:
    """A number as the decimal it was written as, so a ``float`` and a ``Decimal`` compare
    (``Decimal("0.1") == 0.1`` is False: the float is not exactly 0.1). A float's shortest
    repr is the text it was read from on the fast path."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    return Decimal(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, FhirDecimal):
        return orjson.Fragment(value.text)
    if isinstance(value, Decimal) and value.is_finite():
        # str() of a finite Decimal is always a JSON number ("1.50", "1E+2", "-0").
        return orjson.Fragment(str(value))
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dump_fhir_json(value: Any, *, pretty: bool = False, sort_keys: bool = False) -> bytes:
    """``value`` as JSON bytes, decimals in their original text."""
    option = (orjson.OPT_INDENT_2 if pretty else 0) | (orjson.OPT_SORT_KEYS if sort_keys else 0)
    return orjson.dumps(value, default=_json_default, option=option)


def decimal_text(value: int | float | Decimal) -> str:
    """The JSON text of a decimal value (the XML ``value`` attribute uses the same)."""
    if isinstance(value, FhirDecimal):
        return value.text
    if isinstance(value, Decimal):
        return str(value)
    return orjson.dumps(value).decode()


__all__ = [
    "FhirDecimal",
    "decimal_from_text",
    "decimal_text",
    "dump_fhir_json",
    "exact_number",
    "needs_exact_decimals",
    "parse_fhir_json",
]
