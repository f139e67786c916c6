"""The pure hardening rules: refusals limited per address, refusals coalesced in the
audit trail, body structure limits, search limits, characters R4 forbids in strings."""

from __future__ import annotations

import orjson
import pytest
from lxml import etree

from fhir_server.access.claims import ADMIN, PATIENT, PRACTITIONER, Claims
from fhir_server.access.scopes import parse as parse_scopes
from fhir_server.api.limits import body_limit, request_line_refusal
from fhir_server.api.refusals import RefusalLimiter
from fhir_server.audit.balp import COALESCED_DETAIL, ServerIdentity, audit_event, index_rows
from fhir_server.audit.coalesce import CoalescingAudit
from fhir_server.audit.records import AccessRecord
from fhir_server.config import Settings
from fhir_server.errors import FhirError
from fhir_server.formats.limits import StructureLimits, check_json, check_xml
from fhir_server.search import extract_index_rows
from fhir_server.search.limits import SearchLimits, check_search

# -- refusals per address --------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_refusals_past_the_limit_are_answered_429_with_retry_after() -> None:
    clock = Clock()
    limiter = RefusalLimiter(3, 60, clock=clock)
    assert [limiter.refused(401, "10.0.0.7") for _ in range(3)] == [None] * 3
    clock.now += 20
    throttled = limiter.refused(403, "10.0.0.7")
    assert throttled is not None and throttled.status == 429
    assert throttled.headers["Retry-After"] == "40"  # the window ends 60 s after it began
    assert throttled.issues[0].code == "throttled"


def test_other_addresses_and_allowed_requests_are_not_limited() -> None:
    limiter = RefusalLimiter(1, 60, clock=Clock())
    assert limiter.refused(401, "10.0.0.7") is None
    assert limiter.refused(401, "10.0.0.7") is not None
    assert limiter.refused(401, "10.0.0.8") is None
    assert limiter.refused(200, "10.0.0.7") is None
    assert limiter.refused(404, "10.0.0.7") is None


def test_a_new_window_starts_afresh() -> None:
    clock = Clock()
    limiter = RefusalLimiter(1, 60, clock=clock)
    limiter.refused(401, "a")
    assert limiter.refused(401, "a") is not None
    clock.now += 60
    assert limiter.refused(401, "a") is None


def test_memory_is_bounded_by_the_number_of_addresses() -> None:
    limiter = RefusalLimiter(5, 60, max_addresses=100, clock=Clock())
    for n in range(10_000):
        limiter.refused(401, f"2001:db8::{n:x}")
    assert len(limiter._counts) <= 100


# -- refusals coalesced -------------------------------------------------------------------------


class Sink:
    def __init__(self) -> None:
        self.records: list[AccessRecord] = []

    def record(self, record: AccessRecord) -> None:
        self.records.append(record)


def refusal(outcome: int = 401, ip: str = "203.0.113.9", at: int = 0) -> AccessRecord:
    return AccessRecord("read", outcome, at, client_ip=ip, resource_type="Patient", reason="bad")


def test_a_flood_of_refusals_is_a_handful_of_records_that_count_it() -> None:
    now = [0]
    sink = Sink()
    audit = CoalescingAudit(sink, window=10, detail=5, clock=lambda: now[0])
    for n in range(17_000):
        now[0] = n * 1_000  # 17,000 requests in 17 s
        audit.record(refusal(at=now[0]))
    audit.flush_summaries()
    assert len(sink.records) <= 5 * 2 + 2
    assert sum(r.count for r in sink.records) == 17_000
    summaries = [r for r in sink.records if r.period_us is not None]
    assert summaries and all(r.count > 1 for r in summaries)
    first = summaries[0]
    assert first.period_us == (0, 10_000_000)
    assert "203.0.113.9" in first.reason


def test_the_first_refusals_of_a_window_keep_their_own_records() -> None:
    sink = Sink()
    audit = CoalescingAudit(sink, window=60, detail=3, clock=lambda: 0)
    for _ in range(3):
        audit.record(refusal(403))
    audit.record(AccessRecord("read", 200, 0, client_ip="203.0.113.9"))
    assert [r.outcome for r in sink.records] == [403, 403, 403, 200]
    assert all(r.count == 1 and r.period_us is None for r in sink.records)


def test_statuses_and_addresses_are_counted_apart() -> None:
    sink = Sink()
    audit = CoalescingAudit(sink, window=60, detail=1, clock=lambda: 0)
    for outcome, ip in [(401, "a"), (401, "a"), (429, "a"), (429, "a"), (401, "b"), (401, "b")]:
        audit.record(refusal(outcome, ip))
    audit.flush_summaries()
    summaries = sorted((r.client_ip, r.outcome, r.count) for r in sink.records if r.period_us)
    assert summaries == [("a", 401, 1), ("a", 429, 1), ("b", 401, 1)]


def test_a_summary_is_a_valid_balp_audit_event_with_period_and_count() -> None:
    record = AccessRecord(
        "read",
        401,
        10_000_000,
        client_ip="203.0.113.9",
        reason="17 more",
        count=17,
        period_us=(0, 10_000_000),
    )
    event = audit_event(record, ServerIdentity("test"))
    assert event["period"] == {
        "start": "1970-01-01T00:00:00.000000Z",
        "end": "1970-01-01T00:00:10.000000Z",
    }
    (entity,) = event["entity"]
    assert entity["detail"] == [{"type": COALESCED_DETAIL, "valueString": "17"}]
    from fhir.resources.R4B.auditevent import AuditEvent

    AuditEvent.model_validate(event)
    stamped = {**event, "id": "x", "meta": {"versionId": "1", "lastUpdated": event["recorded"]}}
    assert index_rows(stamped) == extract_index_rows(stamped)


# -- body structure ---------------------------------------------------------------------------

LIMITS = StructureLimits(max_depth=8, max_array_items=10, max_elements=100)


def check(value: object) -> None:
    check_json(value, orjson.dumps(value), LIMITS)


@pytest.mark.parametrize(
    ("value", "status"),
    [
        ({"resourceType": "Patient", "name": [{"family": "x"}] * 11}, 413),  # array items
        ({"a": [[[[[[[[{"b": 1}]]]]]]]]}, 413),  # depth
        ({"resourceType": "Patient", "name": [{"given": ["a"] * 9}] * 10}, 413),  # values
        ({"resourceType": "Patient", "name": [{"family": "a\u0000b"}]}, 400),
        ({"resourceType": "Patient", "name": [{"family": "a\u001fb"}]}, 400),
        ({"resourceType": "Patient", "na\u0001me": []}, 400),
    ],
)
def test_bodies_past_a_limit_or_with_control_characters_are_refused(
    value: object, status: int
) -> None:
    with pytest.raises(FhirError) as refused:
        check(value)
    assert refused.value.status == status


def test_tab_cr_lf_and_ordinary_bodies_pass() -> None:
    check({"resourceType": "Patient", "name": [{"family": "a\tb\r\nc", "given": ["ø", "é"]}]})
    # An escaped backslash followed by "u0000" is text, not a control character.
    raw = b'{"resourceType": "Patient", "name": [{"family": "a\\\\u0000b"}]}'
    check_json(orjson.loads(raw), raw, LIMITS)


def test_xml_structure_limits() -> None:
    root = etree.fromstring(
        b'<Patient xmlns="http://hl7.org/fhir">' + b"<name/>" * 11 + b"</Patient>"
    )
    with pytest.raises(FhirError) as refused:
        check_xml(root, LIMITS)
    assert refused.value.status == 413


# -- body size by role -------------------------------------------------------------------------


def claims(role: str | None) -> Claims:
    return Claims("app", parse_scopes("patient/*.cruds"), subject="s" if role else None, role=role)


def test_body_limit_by_role() -> None:
    settings = Settings(
        max_body_bytes=8_000_000, patient_max_body_bytes=1000, practitioner_max_body_bytes=5000
    )
    assert body_limit(claims(PATIENT), settings) == 1000
    assert body_limit(claims(PRACTITIONER), settings) == 5000
    assert body_limit(claims(ADMIN), settings) == 8_000_000
    assert body_limit(claims(None), settings) == 8_000_000
    small = Settings(max_body_bytes=500)  # the installation's limit caps every role
    assert body_limit(claims(PATIENT), small) == 500


# -- searches and URLs ----------------------------------------------------------------------------

SEARCH = SearchLimits(max_params=100, max_repeats=20, max_values=100, max_sort_keys=8)


@pytest.mark.parametrize(
    "params",
    [
        [("_sort", ",".join(["name"] * 500))],
        [("_sort", "name,birthdate")] * 5,
        [("name", f"x{n}") for n in range(2000)],
        [(f"p{n}", "x") for n in range(101)],
        [("name", ",".join(f"x{n}" for n in range(101)))],
        [("name", "a\u0000b")],
        [("na\u0000me", "a")],
    ],
)
def test_searches_past_a_limit_are_400(params: list[tuple[str, str]]) -> None:
    with pytest.raises(FhirError) as refused:
        check_search(params, SEARCH)
    assert refused.value.status == 400


def test_ordinary_searches_pass() -> None:
    check_search(
        [("patient", "Patient/a"), ("_sort", "-date,code"), ("_include", "Observation:subject")]
        + [("_revinclude", "Provenance:target")] * 25
        + [("code", ",".join(f"c{n}" for n in range(100)))],
        SEARCH,
    )


def scope(path: str, query: bytes = b"", headers: list[tuple[bytes, bytes]] | None = None) -> dict:  # type: ignore[type-arg]
    return {
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "headers": headers or [],
    }


def test_request_line_limits() -> None:
    settings = Settings(max_url_bytes=100)
    assert request_line_refusal(scope("/fhir/Patient", b"name=x"), settings) is None
    long = request_line_refusal(scope("/fhir/Patient", b"name=" + b"x" * 100), settings)
    assert long is not None and long.status == 414
    nul = request_line_refusal(scope("/fhir/Patient", b"name=a%00b"), settings)
    assert nul is not None and nul.status == 400
    newline = request_line_refusal(scope("/fhir/Patient", b"name=a%0Ab"), settings)
    assert newline is None  # LF is allowed in an R4 string
    path = request_line_refusal(scope("/fhir/Patient/a\x00b"), settings)
    assert path is not None and path.status == 400
    header = request_line_refusal(
        scope("/fhir/Patient", headers=[(b"if-none-exist", b"identifier=a%00")]), settings
    )
    assert header is not None and header.status == 400


def test_an_audit_event_never_holds_a_character_r4_forbids() -> None:
    """What a client sent (a client_id, a scope quoted in the reason) may hold U+0000;
    PostgreSQL cannot store it, and one such AuditEvent would fail its whole batch."""
    record = AccessRecord("token", 400, 0, client_id="app\u0000", reason="scope=a\u0000\u0007b")
    event = audit_event(record, ServerIdentity("test"))
    text = orjson.dumps(event).decode()
    assert "\\u0000" not in text and "\\u0007" not in text
    assert event["outcomeDesc"] == "HTTP 400: scope=a\ufffd\ufffdb"
