"""Hostile and careless input against the real server, with real tokens per role
(issue 10, item 7): floods of bad tokens and refused requests, oversized bodies per role,
searches and URLs past the limits, characters R4 forbids in strings. Never a 500, never
a hang (every client has a timeout), memory bounded (the server process's RSS is read
from /proc), and a flood leaves a handful of AuditEvents that count it.

One server of its own with the refusal limits set low and short (100 refusals per 10 s,
5 audited one by one), trusting 127.0.0.1 as a proxy so each test floods from an address
of its own (X-Forwarded-For).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
import pytest

from fhir_server.audit.balp import COALESCED_DETAIL
from fhir_server.auth.tokens import TokenStore
from fhir_server.config import normalise_database_url
from fhir_server.storage.database import open_database
from tests.auth.access_world import World
from tests.auth.conftest import GENEROUS, SmartEnv, _populate
from tests.auth.smart_app import JwksServer, bearer
from tests.conftest import drop_database, fresh_database_url, start_server, stop_server

pytestmark = pytest.mark.db

LIMIT = 100
WINDOW = 10
DETAIL = 5
PATIENT_LIMIT = 256 * 1024
PRACTITIONER_LIMIT = 1024 * 1024
TIMEOUT = httpx.Timeout(60.0)
FORM = "application/x-www-form-urlencoded"


@dataclass
class Hostile:
    env: SmartEnv
    world: World
    patient: str

    @property
    def fhir(self) -> str:
        return self.env.fhir

    @property
    def pid(self) -> int:
        return self.env.server.process.pid

    def as_patient(self) -> dict[str, str]:
        return bearer(self.world.mint("patient/*.cruds", role="patient", patient=self.patient))

    def as_practitioner(self) -> dict[str, str]:
        practitioner = f"Practitioner/{self.env.practitioner}"
        return bearer(self.world.mint("user/*.cruds", role="practitioner", fhir_user=practitioner))

    def as_backend(self) -> dict[str, str]:
        return self.env.admin_headers()  # system/*.cruds, no person: the global limit

    def auditor(self) -> dict[str, str]:
        return bearer(self.env.cached_token("ehr", "system/*.rs"))


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hostile]:
    data_dir = tmp_path_factory.mktemp("hostile")
    database_url = fresh_database_url(data_dir, "hostile")
    settings = {
        **GENEROUS,
        "SELFBACK_REFUSAL_LIMIT": str(LIMIT),
        "SELFBACK_REFUSAL_WINDOW": str(WINDOW),
        "SELFBACK_REFUSAL_AUDIT_DETAIL": str(DETAIL),
        "SELFBACK_TRUSTED_PROXIES": "127.0.0.1",
        "SELFBACK_MAX_BODY_BYTES": str(64 * 1024 * 1024),
    }
    server = start_server(database_url, data_dir, **settings)
    jwks_server = JwksServer()
    env = SmartEnv(server, database_url, data_dir, jwks_server=jwks_server)
    store_db = None
    try:
        _populate(env, jwks_server)
        world = World(env)
        store_db = open_database(normalise_database_url(database_url))
        world.store = TokenStore(store_db)
        yield Hostile(env, world, env.patients["a"])
    finally:
        stop_server(server)
        jwks_server.close()
        if store_db is not None:
            store_db.dispose()
        drop_database(database_url)


def from_address(address: str, headers: dict[str, str] | None = None) -> dict[str, str]:
    return {**(headers or {}), "X-Forwarded-For": address}


def memory_mb(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (the peak) of a process, in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) // 1024
    return fields


def refusal_events(hostile: Hostile, address: str, total: int) -> list[dict[str, Any]]:
    """The refusals' AuditEvents of ``address``, once they account for ``total`` requests (the
    summaries come when their window has closed: up to WINDOW + a second or two)."""
    deadline = time.monotonic() + WINDOW * 4 + 30
    while True:
        response = httpx.get(
            f"{hostile.fhir}/AuditEvent",
            params={"address": address, "_count": "1000"},
            headers=hostile.auditor(),
            timeout=TIMEOUT,
        )
        assert response.status_code == 200, response.text
        entries = response.json().get("entry", [])
        events = [e["resource"] for e in entries if e["resource"]["outcome"] == "4"]
        if sum(map(represented, events)) >= total or time.monotonic() > deadline:
            return events
        time.sleep(0.5)


def represented(event: dict[str, Any]) -> int:
    """How many requests one AuditEvent stands for: its coalesced count, else 1."""
    for entity in event.get("entity", []):
        for detail in entity.get("detail", []):
            if detail.get("type") == COALESCED_DETAIL:
                return int(detail["valueString"])
    return 1


def assert_outcome(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text[:500])
    body = response.json()
    assert body["resourceType"] == "OperationOutcome", body
    return dict(body)


# -- floods -------------------------------------------------------------------------------------


def test_a_flood_of_bad_tokens_is_throttled_and_audited_as_a_handful_of_events(
    hostile: Hostile,
) -> None:
    address = "203.0.113.77"
    flood = 2000
    statuses: list[int] = []
    started = time.monotonic()
    with httpx.Client(base_url=hostile.fhir, timeout=TIMEOUT) as client:
        for n in range(flood):
            response = client.get(
                "/Patient", headers=from_address(address, {"Authorization": f"Bearer bad-{n}"})
            )
            statuses.append(response.status_code)
            if response.status_code == 429:
                retry = int(response.headers["Retry-After"])
                assert 1 <= retry <= WINDOW
                if statuses.count(429) == 1:
                    outcome = assert_outcome(response, 429)
                    assert outcome["issue"][0]["code"] == "throttled"
    elapsed = time.monotonic() - started
    assert set(statuses) <= {401, 429}, set(statuses)
    assert statuses[:LIMIT] == [401] * LIMIT
    assert statuses[LIMIT] == 429  # the 101st within one window (100 requests < 10 s)
    assert statuses.count(429) >= flood // 2

    events = refusal_events(hostile, address, flood)
    assert sum(map(represented, events)) == flood
    windows = math.ceil(elapsed / WINDOW) + 1
    # per window and status (401, 429): DETAIL events one by one, one summary
    assert len(events) <= windows * 2 * (DETAIL + 1), len(events)
    assert len(events) < flood / 20
    summaries = [e for e in events if represented(e) > 1]
    assert summaries
    for summary in summaries:
        assert summary["outcome"] == "4"
        assert summary["period"]["start"] < summary["period"]["end"]
        assert summary["agent"][0]["network"]["address"] == address


def test_refused_requests_of_a_valid_token_are_throttled_and_allowed_ones_are_not(
    hostile: Hostile,
) -> None:
    """A patient app that keeps asking for what it may not read (AuditEvent: admins and
    system clients only) is throttled; its allowed requests from the same address go on."""
    address = "203.0.113.78"
    headers = from_address(address, hostile.as_patient())
    statuses = []
    with httpx.Client(base_url=hostile.fhir, timeout=TIMEOUT) as client:
        for _ in range(LIMIT + 20):
            statuses.append(client.get("/AuditEvent", headers=headers).status_code)
        allowed = client.get(f"/Patient/{hostile.patient}", headers=headers)
    assert statuses[:LIMIT] == [403] * LIMIT
    assert set(statuses[LIMIT:]) == {429}
    assert allowed.status_code == 200, allowed.text
    events = refusal_events(hostile, address, LIMIT + 20)
    assert sum(map(represented, events)) == LIMIT + 20
    assert len(events) <= 2 * 2 * (DETAIL + 1)


# -- bodies ---------------------------------------------------------------------------------------


def observation(patient: str, padding: int) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        # A step count, which a patient writes (docs/AUTH.md "Write authority").
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "activity",
                    }
                ]
            }
        ],
        "code": {"text": "steps"},
        "subject": {"reference": f"Patient/{patient}"},
        "valueQuantity": {"value": 1000},
        "note": [{"text": "x" * padding}],
    }


def test_a_patient_body_past_256_kib_is_413_before_it_is_read(hostile: Hostile) -> None:
    before = memory_mb(hostile.pid)
    body = orjson.dumps(observation(hostile.patient, 8 * 1024 * 1024))
    response = httpx.post(
        f"{hostile.fhir}/Observation",
        content=body,
        headers={**hostile.as_patient(), "Content-Type": "application/fhir+json"},
        timeout=TIMEOUT,
    )
    outcome = assert_outcome(response, 413)
    assert str(PATIENT_LIMIT) in outcome["issue"][0]["diagnostics"]
    after = memory_mb(hostile.pid)
    assert after["VmHWM"] - before["VmHWM"] < 64, (before, after)  # never read


def test_a_patient_body_without_a_length_is_refused_while_it_streams(hostile: Hostile) -> None:
    chunk = b" " * 65536

    def body() -> Iterator[bytes]:
        yield orjson.dumps(observation(hostile.patient, 10))[:-1] + b',"id2":"'
        for _ in range(128):  # 8 MiB more, never a Content-Length
            yield chunk

    try:
        response = httpx.post(
            f"{hostile.fhir}/Observation",
            content=body(),
            headers={**hostile.as_patient(), "Content-Type": "application/fhir+json"},
            timeout=TIMEOUT,
        )
    except (httpx.WriteError, httpx.RemoteProtocolError, httpx.ReadError):
        return  # the server answered and closed before all was sent: refused while reading
    assert_outcome(response, 413)


def test_a_patient_body_within_its_limit_is_served(hostile: Hostile) -> None:
    response = httpx.post(
        f"{hostile.fhir}/Observation",
        json=observation(hostile.patient, 100 * 1024),
        headers=hostile.as_patient(),
        timeout=TIMEOUT,
    )
    assert response.status_code == 201, response.text[:500]


def test_a_clinician_body_past_1_mib_is_413_and_a_smaller_one_is_not(hostile: Hostile) -> None:
    big = httpx.post(
        f"{hostile.fhir}/Observation",
        json=observation(hostile.patient, 2 * 1024 * 1024),
        headers=hostile.as_practitioner(),
        timeout=TIMEOUT,
    )
    assert str(PRACTITIONER_LIMIT) in assert_outcome(big, 413)["issue"][0]["diagnostics"]
    small = httpx.post(
        f"{hostile.fhir}/Observation",
        json=observation(hostile.patient, 512 * 1024),
        headers=hostile.as_practitioner(),
        timeout=TIMEOUT,
    )
    assert small.status_code not in (413, 500), small.text[:500]


def test_a_23_mb_patient_from_a_backend_is_refused_with_memory_bounded(hostile: Hostile) -> None:
    """The 22.9 MB Patient of the security review (600,000 names) took 57 s and 1.7 GB;
    a backend client has the global 64 MiB body limit, so the structure limits refuse it
    once parsed, before validation."""
    names = [{"family": f"F{n}", "given": ["a", "b"]} for n in range(600_000)]
    body = orjson.dumps({"resourceType": "Patient", "name": names})
    assert len(body) > 22_000_000
    before = memory_mb(hostile.pid)
    response = httpx.post(
        f"{hostile.fhir}/Patient",
        content=body,
        headers={**hostile.as_backend(), "Content-Type": "application/fhir+json"},
        timeout=TIMEOUT,
    )
    outcome = assert_outcome(response, 413)
    assert "10000" in outcome["issue"][0]["diagnostics"]
    after = memory_mb(hostile.pid)
    assert after["VmHWM"] - before["VmHWM"] < 1024, (before, after)
    # the server still answers at once
    assert httpx.get(f"{hostile.fhir}/metadata", timeout=TIMEOUT).status_code == 200


def test_a_body_with_too_many_values_is_413(hostile: Hostile) -> None:
    names = [{"family": f"F{n}", "given": ["a"] * 60} for n in range(4000)]  # 250,000 values
    response = httpx.post(
        f"{hostile.fhir}/Patient",
        json={"resourceType": "Patient", "name": names},
        headers=hostile.as_backend(),
        timeout=TIMEOUT,
    )
    assert_outcome(response, 413)


# -- searches and URLs ----------------------------------------------------------------------------


def test_500_sort_keys_are_400(hostile: Hostile) -> None:
    keys = ",".join(["name", "birthdate", "-_lastUpdated", "family"] * 125)
    response = httpx.get(
        f"{hostile.fhir}/Patient",
        params={"_sort": keys},
        headers=hostile.as_backend(),
        timeout=TIMEOUT,
    )
    assert_outcome(response, 400)


def test_2000_repeated_parameters_are_400_by_post_and_414_by_get(hostile: Hostile) -> None:
    pairs = [("name", f"x{n}") for n in range(2000)]
    posted = httpx.post(
        f"{hostile.fhir}/Patient/_search",
        content=urlencode(pairs),
        headers={**hostile.as_backend(), "Content-Type": FORM},
        timeout=TIMEOUT,
    )
    assert_outcome(posted, 400)
    got = httpx.get(
        f"{hostile.fhir}/Patient", params=pairs, headers=hostile.as_backend(), timeout=TIMEOUT
    )
    assert_outcome(got, 414)


def test_too_many_parameters_or_alternatives_are_400(hostile: Hostile) -> None:
    many = [("identifier", f"s|{n}") for n in range(30)] + [("_id", f"i{n}") for n in range(80)]
    for params in (many, [("name", ",".join(f"x{n}" for n in range(500)))]):
        response = httpx.post(
            f"{hostile.fhir}/Patient/_search",
            content=urlencode(params),
            headers={**hostile.as_backend(), "Content-Type": FORM},
            timeout=TIMEOUT,
        )
        assert_outcome(response, 400)


def test_a_url_past_8_kib_is_414(hostile: Hostile) -> None:
    response = httpx.get(
        f"{hostile.fhir}/Patient",
        params={"name": "x" * 9000},
        headers=hostile.as_backend(),
        timeout=TIMEOUT,
    )
    assert_outcome(response, 414)


def test_a_batch_entry_past_the_search_limits_is_its_own_400(hostile: Hostile) -> None:
    url = "Patient?_sort=" + ",".join(["name"] * 50)
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [{"request": {"method": "GET", "url": url}}]}  # fmt: skip
    response = httpx.post(
        f"{hostile.fhir}/", json=bundle, headers=hostile.as_backend(), timeout=TIMEOUT
    )
    assert response.status_code == 200, response.text[:500]
    assert response.json()["entry"][0]["response"]["status"].startswith("400")


# -- characters R4 forbids in strings ---------------------------------------------------------------

NUL_FAMILY = "Nul\u0000Family"


def test_u0000_in_a_json_body_is_400_and_nothing_is_written(hostile: Hostile) -> None:
    for rtype, body in (
        ("Patient", {"resourceType": "Patient", "name": [{"family": NUL_FAMILY}]}),
        ("Observation", {**observation(hostile.patient, 1), "note": [{"text": "a\u0000"}]}),
    ):
        for headers in (hostile.as_backend(), hostile.as_patient()):
            response = httpx.post(
                f"{hostile.fhir}/{rtype}", json=body, headers=headers, timeout=TIMEOUT
            )
            assert_outcome(response, 400)
    other = httpx.post(
        f"{hostile.fhir}/Patient",
        json={"resourceType": "Patient", "name": [{"family": "Bell\u0007"}]},
        headers=hostile.as_backend(),
        timeout=TIMEOUT,
    )
    assert_outcome(other, 400)
    found = httpx.get(
        f"{hostile.fhir}/Patient",
        params={"name": "Nul"},
        headers=hostile.as_backend(),
        timeout=TIMEOUT,
    )
    assert found.status_code == 200 and not found.json().get("entry"), found.text[:500]


def test_u0000_in_an_xml_body_is_400(hostile: Hostile) -> None:
    xml = b'<Patient xmlns="http://hl7.org/fhir"><name><family value="a&#0;b"/></name></Patient>'
    response = httpx.post(
        f"{hostile.fhir}/Patient",
        content=xml,
        headers={**hostile.as_backend(), "Content-Type": "application/fhir+xml"},
        timeout=TIMEOUT,
    )
    assert response.status_code == 400, response.text[:500]


def test_u0000_in_a_transaction_is_400_and_nothing_is_written(hostile: Hostile) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {"resourceType": "Patient", "name": [{"family": "TxOk"}]},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {"resourceType": "Patient", "name": [{"family": "Tx\u0000"}]},
                "request": {"method": "POST", "url": "Patient"},
            },
        ],
    }
    response = httpx.post(
        f"{hostile.fhir}/", json=bundle, headers=hostile.as_backend(), timeout=TIMEOUT
    )
    assert_outcome(response, 400)
    found = httpx.get(
        f"{hostile.fhir}/Patient",
        params={"family": "TxOk"},
        headers=hostile.as_backend(),
        timeout=TIMEOUT,
    )
    assert found.status_code == 200 and not found.json().get("entry")


@pytest.mark.parametrize(
    ("method", "path", "extra"),
    [
        ("GET", "/Patient?name=a%00b", {}),
        ("GET", "/Patient?identifier=s%7Ca%01", {}),
        ("GET", "/Patient/a%00b", {}),
        ("GET", "/Patient/a%00b/_history", {}),
        ("GET", "/Patient/a%00b/Observation", {}),
        ("DELETE", "/Patient?name=a%00b", {}),
        ("PUT", "/Patient?name=a%00b", {"json": {"resourceType": "Patient"}}),
        (
            "POST",
            "/Patient",
            {"json": {"resourceType": "Patient"}, "headers": {"If-None-Exist": "name=a%00b"}},
        ),
        ("POST", "/Patient/_search", {"data": {"name": "a\u0000b"}}),
    ],
)
def test_u0000_in_a_search_value_id_or_header_is_400(
    hostile: Hostile, method: str, path: str, extra: dict[str, Any]
) -> None:
    headers = {**hostile.as_backend(), **extra.pop("headers", {})}
    response = httpx.request(method, hostile.fhir + path, headers=headers, timeout=TIMEOUT, **extra)
    assert_outcome(response, 400)


def test_u0000_in_a_batch_entry_url_is_that_entry_s_400(hostile: Hostile) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"request": {"method": "GET", "url": "Patient?name=a%00b"}},
            {"request": {"method": "GET", "url": f"Patient/{hostile.patient}"}},
        ],
    }
    response = httpx.post(
        f"{hostile.fhir}/", json=bundle, headers=hostile.as_backend(), timeout=TIMEOUT
    )
    assert response.status_code == 200, response.text[:500]
    first, second = (e["response"]["status"] for e in response.json()["entry"])
    assert first.startswith("400") and second.startswith("200")


def test_conditional_criteria_past_the_search_limits_are_400(hostile: Hostile) -> None:
    """Criteria come by URL, header or Bundle entry; within 8 KiB a URL still holds 1,100
    repeats of a short parameter, which SQLite could not run (500 before)."""
    repeated = "&".join(["name=a"] * 1100)
    assert len(repeated) < 8192
    deleted = httpx.delete(
        f"{hostile.fhir}/Patient?{repeated}", headers=hostile.as_backend(), timeout=TIMEOUT
    )
    assert_outcome(deleted, 400)
    created = httpx.post(
        f"{hostile.fhir}/Patient",
        json={"resourceType": "Patient"},
        headers={**hostile.as_backend(), "If-None-Exist": repeated},
        timeout=TIMEOUT,
    )
    assert_outcome(created, 400)
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {"resourceType": "Patient"},
                "request": {"method": "POST", "url": "Patient", "ifNoneExist": repeated},
            }
        ],
    }
    transaction = httpx.post(
        f"{hostile.fhir}/", json=bundle, headers=hostile.as_backend(), timeout=TIMEOUT
    )
    assert_outcome(transaction, 400)
