"""Pure rules of the REST core: ids, instants, ETags, stamping, cursors, negotiation."""

from __future__ import annotations

import orjson
import pytest

from fhir_server.api.negotiation import output_format, preferences
from fhir_server.errors import FhirError
from fhir_server.interactions.bundle_json import bundle_bytes, entry_bytes
from fhir_server.interactions.history import date_range
from fhir_server.paging import decode_cursor, encode_cursor
from fhir_server.versioning import (
    check_id,
    etag,
    instant,
    parse_etag,
    parse_http_date,
    same_content,
    stamp,
)


@pytest.mark.parametrize("id", ["a", "A-1.b", "x" * 64, "123"])
def test_valid_ids(id: str) -> None:
    assert check_id(id) == id


@pytest.mark.parametrize("id", ["", "x" * 65, "a_b", "a/b", "é", "a b"])
def test_invalid_ids_are_400(id: str) -> None:
    with pytest.raises(FhirError) as caught:
        check_id(id)
    assert caught.value.status == 400


def test_instant_has_microseconds_and_z() -> None:
    assert instant(0) == "1970-01-01T00:00:00.000000Z"
    assert instant(1_700_000_000_123_456) == "2023-11-14T22:13:20.123456Z"


@pytest.mark.parametrize(("header", "version"), [('W/"3"', 3), ('"12"', 12), (' W/"1" ', 1)])
def test_parse_etag(header: str, version: int) -> None:
    assert parse_etag(header) == version
    assert etag(version) == f'W/"{version}"'


@pytest.mark.parametrize("header", ["3", 'W/"x"', "W/3", ""])
def test_bad_etag_is_400(header: str) -> None:
    with pytest.raises(FhirError):
        parse_etag(header)


def test_parse_http_date() -> None:
    assert parse_http_date("Thu, 01 Jan 1970 00:00:10 GMT") == 10_000_000
    assert parse_http_date("not a date") is None


def test_stamp_puts_type_id_meta_first_and_keeps_client_meta() -> None:
    body = stamp(
        {"gender": "male", "resourceType": "Patient", "meta": {"tag": [{"code": "t"}]}}, "p1", 2, 0
    )
    assert body.startswith(b'{"resourceType":"Patient","id":"p1","meta":')
    parsed = orjson.loads(body)
    assert parsed["meta"] == {
        "tag": [{"code": "t"}],
        "versionId": "2",
        "lastUpdated": "1970-01-01T00:00:00.000000Z",
    }


def test_same_content_ignores_server_meta_only() -> None:
    stored = stamp({"resourceType": "Patient", "gender": "male"}, "p1", 1, 0)
    assert same_content(stored, {"resourceType": "Patient", "id": "p1", "gender": "male"})
    assert same_content(
        stored,
        {"resourceType": "Patient", "id": "p1", "gender": "male", "meta": {"versionId": "7"}},
    )
    assert not same_content(stored, {"resourceType": "Patient", "id": "p1", "gender": "female"})
    assert not same_content(
        stored,
        {"resourceType": "Patient", "id": "p1", "gender": "male", "meta": {"tag": [{"code": "x"}]}},
    )
    assert not same_content(b"", {"resourceType": "Patient", "id": "p1"})


@pytest.mark.parametrize(
    ("value", "lo", "hi"),
    [
        ("2020", "2020-01-01T00:00:00.000000Z", "2020-12-31T23:59:59.999999Z"),
        ("2020-02", "2020-02-01T00:00:00.000000Z", "2020-02-29T23:59:59.999999Z"),
        ("2020-12", "2020-12-01T00:00:00.000000Z", "2020-12-31T23:59:59.999999Z"),
        ("2020-02-03", "2020-02-03T00:00:00.000000Z", "2020-02-03T23:59:59.999999Z"),
        ("2020-02-03T10:00", "2020-02-03T10:00:00.000000Z", "2020-02-03T10:00:59.999999Z"),
        ("2020-02-03T10:00:05+02:00", "2020-02-03T08:00:05.000000Z", "2020-02-03T08:00:05.999999Z"),
        ("2020-02-03T10:00:05.25Z", "2020-02-03T10:00:05.250000Z", "2020-02-03T10:00:05.259999Z"),
    ],
)
def test_date_range_covers_the_precision(value: str, lo: str, hi: str) -> None:
    low, high = date_range(value, "_at")
    assert (instant(low), instant(high)) == (lo, hi)


@pytest.mark.parametrize("value", ["2020-13", "20", "2020-02-30", "yesterday"])
def test_bad_dates_are_400(value: str) -> None:
    with pytest.raises(FhirError):
        date_range(value, "_since")


def test_cursor_round_trip_and_tamper_detection() -> None:
    token = encode_cursor({"lu": 5, "pk": 9}, b"secret")
    assert decode_cursor(token, b"secret") == {"lu": 5, "pk": 9}
    with pytest.raises(FhirError):
        decode_cursor(token, b"other-secret")
    with pytest.raises(FhirError):
        decode_cursor(token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1], b"secret")
    with pytest.raises(FhirError):
        decode_cursor("%%%", b"secret")


@pytest.mark.parametrize(
    ("format_param", "accept", "expected"),
    [
        (None, None, "json"),
        (None, "application/fhir+xml", "xml"),
        (None, "text/html,application/xhtml+xml,*/*;q=0.8", "json"),
        ("xml", "application/fhir+json", "xml"),
        ("json", "application/fhir+xml", "json"),
        ("application/fhir+json", None, "json"),
        ("text/xml", None, "xml"),
    ],
)
def test_output_format(format_param: str | None, accept: str | None, expected: str) -> None:
    assert output_format(format_param, accept) == expected


def test_preferences_parse_prefer_header() -> None:
    prefs = preferences({"_pretty": "true"}, {"prefer": "return=minimal, handling=strict"})
    assert prefs.return_ == "minimal" and prefs.strict and prefs.pretty
    assert preferences({}, {}).return_ == "representation"


def test_bundle_bytes_splice_stored_resources() -> None:
    body = stamp({"resourceType": "Patient"}, "p1", 1, 0)
    entries = [
        entry_bytes({"fullUrl": "http://x/fhir/Patient/p1", "search": {"mode": "match"}}, body),
        entry_bytes({"response": {"status": "204"}}),
    ]
    bundle = orjson.loads(
        bundle_bytes("searchset", entries, now=0, links=[("self", "http://x")], total=1)
    )
    assert bundle["total"] == 1
    assert bundle["entry"][0] == {
        "fullUrl": "http://x/fhir/Patient/p1",
        "resource": orjson.loads(body),
        "search": {"mode": "match"},
    }
    assert bundle["entry"][1] == {"response": {"status": "204"}}
    assert orjson.loads(bundle_bytes("history", [], now=0))["type"] == "history"
