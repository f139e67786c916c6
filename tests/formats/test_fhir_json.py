"""FHIR JSON decimals keep their written form (datatypes.html#decimal, json.html#primitive),
and the exact path refuses exactly what the fast orjson path refuses."""

from __future__ import annotations

import copy
import pickle
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fhir_server.formats.fhir_json import (
    FhirDecimal,
    decimal_from_text,
    dump_fhir_json,
    exact_number,
    needs_exact_decimals,
    parse_fhir_json,
)
from fhir_server.versioning import same_content, stamp

COMMON_BODY = (
    b'{"resourceType":"Observation","id":"3e4f1a2b","status":"final",'
    b'"meta":{"lastUpdated":"2026-11-21T03:45:12.120Z"},'
    b'"code":{"coding":[{"system":"http://loinc.org","code":"29463-7"}]},'
    b'"effectiveDateTime":"2026-11-20T09:30:00.000+01:00","note":[{"text":"BP 120.50"}],'
    b'"valueQuantity":{"value":72.5,"unit":"kg"},"component":[{"valueInteger":12},'
    b'{"valueQuantity":{"value":0.1}},{"valueQuantity":{"value":1.0}},'
    b'{"valueQuantity":{"value":-3.25}},{"valueQuantity":{"value":0.00001}}]}'
)


def _values(node: Any) -> list[Any]:
    if isinstance(node, dict):
        return [v for value in node.values() for v in _values(value)]
    if isinstance(node, list):
        return [v for value in node for v in _values(value)]
    return [node]


def test_common_body_takes_the_fast_path_with_no_decimal_objects() -> None:
    # Strings with number-like text after ':' only cost a check; they are no decimals.
    parsed = parse_fhir_json(COMMON_BODY)
    assert parsed == orjson.loads(COMMON_BODY)
    assert not any(isinstance(v, Decimal) for v in _values(parsed))
    assert dump_fhir_json(parsed) == COMMON_BODY


@pytest.mark.parametrize(
    ("token", "exact"),
    [
        # Tokens a float writes back unchanged: no Decimal needed.
        ("72.5", False),
        ("0.1", False),
        ("1.0", False),
        ("-3.25", False),
        ("0.00001", False),
        ("42", False),
        ("12345678901234567890", False),  # fits orjson's u64
        ("123456789012345.6", False),
        # datatypes.html#decimal: precision is part of the value.
        ("1.50", True),
        ("0.10", True),
        ("100.000", True),
        ("1e-2", True),
        ("1E5", True),
        ("12345678901234567890.123", True),
        ("123456789012345678901", True),  # past 64 bits
        ("0.12345678901234567", True),
        ("-0.0", False),
        ("-0e0", True),
    ],
)
def test_which_numbers_need_exact_decimals(token: str, exact: bool) -> None:
    body = f'{{"valueDecimal":{token}}}'.encode()
    assert needs_exact_decimals(body) is exact
    value = parse_fhir_json(body)["valueDecimal"]
    assert isinstance(value, FhirDecimal) is exact
    assert exact_number(value) == Decimal(token)
    assert dump_fhir_json({"valueDecimal": value}) == body


def test_negative_zero_integer_is_the_integer_zero() -> None:
    # An integer element needs an int (json.html); -0 and 0 are one value and precision.
    parsed = parse_fhir_json(b'{"valueInteger":-0,"valueDecimal":1.50}')
    assert parsed["valueInteger"] == 0 and type(parsed["valueInteger"]) is int


@pytest.mark.parametrize("spacing", ["", " ", "\n  ", "\t"])
def test_numbers_in_arrays_and_after_whitespace_are_found(spacing: str) -> None:
    body = f'{{"a":[1,{spacing}1.50,{spacing}2],"b":{spacing}0.10}}'.encode()
    parsed = parse_fhir_json(body)
    assert parsed["a"][1].text == "1.50" and parsed["b"].text == "0.10"
    assert parsed["a"][0] == 1 and type(parsed["a"][0]) is int


def test_slow_path_keeps_every_other_value_as_orjson_gives_it() -> None:
    body = COMMON_BODY.replace(b'"value":72.5', b'"value":72.50')
    parsed = parse_fhir_json(body)
    assert parsed["valueQuantity"]["value"].text == "72.50"
    fast = orjson.loads(body)
    parsed["valueQuantity"]["value"] = fast["valueQuantity"]["value"]
    assert parsed == fast
    assert [type(v) for v in _values(parsed)] == [type(v) for v in _values(fast)]
    assert dump_fhir_json(parse_fhir_json(body)) == body


@pytest.mark.parametrize(
    "bad",
    [
        b'{"a":1.50,"b":NaN}',
        b'{"a":1.50,"b":Infinity}',
        b'{"a":1.50,"b":1e400}',
        b'\xef\xbb\xbf{"a":1.50}',
        b'{"a":1.50,"b":"\\ud800"}',
        b'{"a":1.50,"b":"\xff"}',
        b'{"a":1.50,}',
        b'{"a":01.50}',
        b"{'a':1.50}",
        b'{"a":1.50} x',
        b'{"a":' + b"[" * 2000 + b"1.50" + b"]" * 2000 + b"}",
    ],
)
def test_exact_path_refuses_what_orjson_refuses(bad: bytes) -> None:
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(bad)
    with pytest.raises(ValueError):
        parse_fhir_json(bad)


@pytest.mark.parametrize(
    "body",
    [
        b'{"a":1,"a":2.5}',
        b'{"a":1,"a":2.50}',
        b'{"a" : 1, "b": {"c": [{"d": 1, "d" : 1}]}}',
        b'[{"x": 1}, {"y": {"z": "1", "z": "2"}}]',
        b'{"k\\\\":1,"k\\\\":2}',  # a key ending in an escaped backslash, twice
    ],
)
def test_an_object_that_repeats_a_key_is_refused(body: bytes) -> None:
    """orjson would keep the last value and lose the other; FHIR JSON has each property
    once (json.html), so the document is refused on either path."""
    with pytest.raises(orjson.JSONDecodeError, match="repeats the key"):
        parse_fhir_json(body)


@pytest.mark.parametrize(
    "body",
    [
        b'{"a":1,"b":{"a":2},"c":[{"a":3},{"a":4}]}',  # the same key in different objects
        b'{"t":"say \\"hi\\": ok","u":"\\":"}',  # quote-colon inside strings
        b'{"k\\\\":1,"k":2}',  # a key ending in an escaped backslash and its plain twin
        b'{"a":"x"}',
    ],
)
def test_keys_that_only_look_repeated_are_accepted(body: bytes) -> None:
    assert parse_fhir_json(body) == orjson.loads(body)


def test_pretty_and_sorted_output_keep_the_text() -> None:
    value = parse_fhir_json(b'{"b":0.10,"a":[1e-2]}')
    assert dump_fhir_json(value, pretty=True) == b'{\n  "b": 0.10,\n  "a": [\n    1e-2\n  ]\n}'
    assert dump_fhir_json(value, sort_keys=True) == b'{"a":[1e-2],"b":0.10}'


def test_arithmetic_results_are_written_as_plain_decimals() -> None:
    value = FhirDecimal("1.50")
    assert dump_fhir_json([value * 2, Decimal("1E+2"), Decimal("-0.000")]) == b"[3.00,1E+2,-0.000]"
    with pytest.raises(TypeError):
        dump_fhir_json([Decimal("NaN")])
    with pytest.raises(TypeError):
        dump_fhir_json([object()])


def test_fhir_decimal_survives_copies_and_pickling() -> None:
    value = FhirDecimal("1e-2")
    assert copy.deepcopy({"v": value})["v"].text == "1e-2"
    assert copy.copy(value).text == "1e-2"
    assert pickle.loads(pickle.dumps(value)).text == "1e-2"
    with pytest.raises(ValueError):
        FhirDecimal("1.")


@pytest.mark.parametrize(
    ("text", "kind"),
    [("3", int), ("2.5", float), ("2.50", FhirDecimal), ("1e3", FhirDecimal)],
)
def test_decimal_from_text_is_the_json_choice(text: str, kind: type) -> None:
    assert type(decimal_from_text(text)) is kind
    with pytest.raises(ValueError):
        decimal_from_text("1e400")  # not finite as a double: refused, as orjson does


def test_exact_number_compares_floats_and_decimals_by_their_written_value() -> None:
    assert Decimal("0.1") != 0.1
    assert exact_number(0.1) == exact_number(FhirDecimal("0.10"))
    assert exact_number(3) == Decimal(3)


def test_a_change_of_precision_is_a_change_of_content() -> None:
    stored = stamp(parse_fhir_json(b'{"resourceType":"Basic","v":1.5}'), "b1", 1, 0)
    assert b'"v":1.5}' in stored
    assert same_content(stored, parse_fhir_json(b'{"resourceType":"Basic","id":"b1","v":1.5}'))
    assert not same_content(
        stored, parse_fhir_json(b'{"resourceType":"Basic","id":"b1","v":1.50}')
    )
    assert not same_content(stored, parse_fhir_json(b'{"resourceType":"Basic","id":"b1","v":2}'))
    again = stamp(parse_fhir_json(b'{"resourceType":"Basic","v":1.50}'), "b1", 2, 0)
    assert b'"v":1.50}' in again
    assert same_content(again, parse_fhir_json(b'{"resourceType":"Basic","id":"b1","v":1.50}'))


@settings(max_examples=300, deadline=None)
@given(
    text=st.from_regex(
        r"\A-?(0|[1-9][0-9]{0,30})(\.[0-9]{1,25})?([eE][+-]?[0-9]{1,2})?\Z", fullmatch=True
    ).filter(lambda text: text != "-0"),  # the integer 0 (test above)
    space=st.sampled_from(["", " ", "\n  "]),
)
def test_any_decimal_text_is_written_back_as_read(text: str, space: str) -> None:
    body = f'{{"a":[{space}{text}{space}],"b":{{"valueDecimal":{space}{text}{space}}}}}'
    parsed = parse_fhir_json(body.encode())
    assert dump_fhir_json(parsed) == f'{{"a":[{text}],"b":{{"valueDecimal":{text}}}}}'.encode()
    assert exact_number(parsed["b"]["valueDecimal"]) == Decimal(text)
