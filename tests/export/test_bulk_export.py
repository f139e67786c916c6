"""Bulk Data export over HTTP against the real server with SMART Backend Services tokens:
the Inferno bulk-data checks INF-K1..K11 (../shared/research/smart-integration.md 3.2)
at system, Patient and Group level, and the IG's rules BDS-10..17 (export.html)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from fhir_server.validation import validate_resource
from tests.auth.conftest import SmartEnv
from tests.auth.smart_app import bearer
from tests.export.bulk_client import (
    KICK_OFF_HEADERS,
    download,
    ids,
    kick_off,
    manifest,
    poll,
    resources,
    started,
    token,
)

pytestmark = pytest.mark.db

BULK_DATA = "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"


@dataclass
class Clinic:
    """Three patients; A and B are in the cohort Group, C is not."""

    a: str
    b: str
    c: str
    group: str
    observations: dict[str, str]  # patient key -> Observation id
    condition: str  # A's
    encounter: str  # B's
    practitioner: str
    deleted: str  # an Observation of A, deleted


def observation(patient: str, code: str = "55423-8") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": "2026-11-20T08:00:00Z",
        "valueQuantity": {"value": 4200, "unit": "steps"},
    }


@pytest.fixture(scope="module")
def clinic(bulk: SmartEnv) -> Clinic:
    a, b, c = (bulk.new_patient(name) for name in ("Andersen", "Berg", "Carlsen"))
    observations = {key: bulk.create(observation(p)) for key, p in (("a", a), ("b", b), ("c", c))}
    condition = bulk.create(
        {
            "resourceType": "Condition",
            "code": {"text": "Non-specific low back pain"},
            "subject": {"reference": f"Patient/{a}"},
        }
    )
    encounter = bulk.create(
        {
            "resourceType": "Encounter",
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": f"Patient/{b}"},
        }
    )
    practitioner = bulk.create({"resourceType": "Practitioner", "name": [{"family": "Jensen"}]})
    group = bulk.create(
        {
            "resourceType": "Group",
            "type": "person",
            "actual": True,
            "member": [
                {"entity": {"reference": f"Patient/{a}"}},
                {"entity": {"reference": f"Patient/{b}"}},
                {"entity": {"reference": f"Patient/{c}"}, "inactive": True},
            ],
        }
    )
    deleted = bulk.create(observation(a))
    gone = httpx.delete(
        f"{bulk.fhir}/Observation/{deleted}", headers=bulk.admin_headers(), timeout=60
    )
    assert gone.status_code in (200, 204), gone.text
    return Clinic(a, b, c, group, observations, condition, encounter, practitioner, deleted)


def level_path(level: str, clinic: Clinic) -> str:
    return {
        "system": "$export",
        "patient": "Patient/$export",
        "group": f"Group/{clinic.group}/$export",
    }[level]


LEVELS = ("system", "patient", "group")


def check_manifest(bulk: SmartEnv, body: dict[str, Any], access_token: str) -> None:
    """INF-K4/K5/K7 and BDS-14/15 on one manifest and its files."""
    for name in ("transactionTime", "request", "requiresAccessToken", "output", "error"):
        assert name in body, name
    assert body["requiresAccessToken"] is True
    assert body["request"].startswith(bulk.fhir + "/")
    assert body["output"], "INF-K5: output is not empty"
    assert isinstance(body["error"], list)
    for item in body["output"]:
        assert item["url"].startswith(bulk.fhir + "/")  # absolute (INF-K5)
        lines = download(item["url"], access_token)
        assert len(lines) == item["count"]
        for resource in lines:
            assert resource["resourceType"] == item["type"]  # INF-K7: the declared type
            validate_resource(resource, expected_type=item["type"])  # and valid R4


# -- INF-K1, BDS-17: the CapabilityStatement ----------------------------------------------------


def test_INF_K1_capability_statement_declares_the_export_operations(bulk: SmartEnv) -> None:
    response = httpx.get(f"{bulk.fhir}/metadata", timeout=60)
    assert response.status_code in (200, 201)
    statement = response.json()
    assert BULK_DATA in statement["instantiates"]
    rest = statement["rest"][0]
    assert "export" in [op["name"] for op in rest["operation"]]
    by_type = {r["type"]: r for r in rest["resource"]}
    for rtype in ("Patient", "Group"):
        assert "export" in [op["name"] for op in by_type[rtype]["operation"]]


# -- INF-K2, INF-K3 and the kick-off's headers ----------------------------------------------------


@pytest.mark.parametrize("level", LEVELS)
def test_INF_K2_kick_off_without_token_is_401(bulk: SmartEnv, clinic: Clinic, level: str) -> None:
    response = kick_off(bulk, level_path(level, clinic), None)
    assert response.status_code == 401
    assert response.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize(
    "headers",
    [
        {"Prefer": None},
        {"Accept": None},
        {"Accept": "application/fhir+xml"},
        {"Prefer": "return=minimal"},
    ],
)
def test_kick_off_without_accept_or_prefer_is_400(
    bulk: SmartEnv, clinic: Clinic, headers: dict[str, str | None]
) -> None:
    for level in LEVELS:
        response = kick_off(bulk, level_path(level, clinic), token(bulk), headers=headers)
        assert response.status_code == 400, response.text
        assert response.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize("level", LEVELS)
def test_INF_K3_kick_off_returns_202_with_content_location(
    bulk: SmartEnv, clinic: Clinic, level: str
) -> None:
    response = kick_off(bulk, level_path(level, clinic), token(bulk))
    assert response.status_code == 202, response.text
    status_url = response.headers["content-location"]
    assert status_url.startswith(bulk.fhir + "/")  # absolute (BDS-12)
    assert httpx.delete(status_url, headers=bearer(token(bulk))).status_code == 202


# -- INF-K4..K8: a whole export at each level ----------------------------------------------------


@pytest.mark.parametrize("level", LEVELS)
def test_INF_K4_to_K8_export_completes_with_valid_ndjson(
    bulk: SmartEnv, clinic: Clinic, level: str
) -> None:
    access_token = token(bulk)
    status_url = started(bulk, level_path(level, clinic), access_token)
    response = poll(status_url, access_token)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")  # BDS-14
    assert response.headers["expires"]
    body = response.json()
    check_manifest(bulk, body, access_token)
    found = resources(body, access_token)
    assert len(found["Patient"]) >= 2  # INF-K8
    assert {clinic.a, clinic.b} <= ids(found, "Patient")
    assert {clinic.observations["a"], clinic.observations["b"]} <= ids(found, "Observation")
    assert clinic.deleted not in ids(found, "Observation")  # deleted resources are not exported
    assert body["error"] == []


def test_system_export_holds_every_type(bulk: SmartEnv, clinic: Clinic) -> None:
    access_token = token(bulk)
    found = resources(manifest(bulk, "$export", access_token), access_token)
    assert {clinic.a, clinic.b, clinic.c} <= ids(found, "Patient")
    assert clinic.practitioner in ids(found, "Practitioner")
    assert clinic.group in ids(found, "Group")
    assert clinic.encounter in ids(found, "Encounter")


def test_patient_export_holds_the_patient_compartments_only(bulk: SmartEnv, clinic: Clinic) -> None:
    access_token = token(bulk)
    found = resources(manifest(bulk, "Patient/$export", access_token), access_token)
    assert {clinic.a, clinic.b, clinic.c} <= ids(found, "Patient")
    assert set(clinic.observations.values()) <= ids(found, "Observation")
    assert clinic.condition in ids(found, "Condition")
    assert "Practitioner" not in found  # in no patient's compartment
    assert clinic.deleted not in ids(found, "Observation")


def test_group_export_holds_its_active_members_data_only(bulk: SmartEnv, clinic: Clinic) -> None:
    access_token = token(bulk)
    found = resources(manifest(bulk, f"Group/{clinic.group}/$export", access_token), access_token)
    assert ids(found, "Patient") == {clinic.a, clinic.b}  # C's membership is inactive
    assert ids(found, "Observation") == {clinic.observations["a"], clinic.observations["b"]}
    assert ids(found, "Condition") == {clinic.condition}
    assert ids(found, "Encounter") == {clinic.encounter}
    assert "Practitioner" not in found


def test_group_export_of_an_unknown_group_is_404(bulk: SmartEnv, clinic: Clinic) -> None:
    response = kick_off(bulk, "Group/no-such-group/$export", token(bulk))
    assert response.status_code == 404
    assert response.json()["resourceType"] == "OperationOutcome"


# -- parameters (BDS-11) ---------------------------------------------------------------------------


def test_type_limits_the_export_to_the_named_types(bulk: SmartEnv, clinic: Clinic) -> None:
    access_token = token(bulk)
    body = manifest(bulk, "$export", access_token, {"_type": "Patient,Observation"})
    assert {item["type"] for item in body["output"]} == {"Patient", "Observation"}


@pytest.mark.parametrize("level", LEVELS)
def test_an_unknown_type_is_400(bulk: SmartEnv, clinic: Clinic, level: str) -> None:
    response = kick_off(bulk, level_path(level, clinic), token(bulk), {"_type": "Patient,Pony"})
    assert response.status_code == 400
    assert "Pony" in response.text


@pytest.mark.parametrize(
    "output_format", ["application/fhir+ndjson", "application/ndjson", "ndjson"]
)
@pytest.mark.parametrize("level", LEVELS)
def test_INF_K10_each_output_format_alias_and_since_a_week_ago(
    bulk: SmartEnv, clinic: Clinic, level: str, output_format: str
) -> None:
    week_ago = (datetime.now(UTC) - timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%SZ")
    for params in ({"_outputFormat": output_format}, {"_since": week_ago}):
        status_url = started(bulk, level_path(level, clinic), token(bulk), params)
        assert httpx.delete(status_url, headers=bearer(token(bulk))).status_code == 202


def test_an_unknown_output_format_is_400(bulk: SmartEnv) -> None:
    response = kick_off(bulk, "$export", token(bulk), {"_outputFormat": "text/csv"})
    assert response.status_code == 400


def test_since_a_week_ago_exports_what_changed_this_week(bulk: SmartEnv, clinic: Clinic) -> None:
    access_token = token(bulk)
    week_ago = (datetime.now(UTC) - timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = manifest(bulk, "$export", access_token, {"_since": week_ago, "_type": "Patient"})
    assert {clinic.a, clinic.b, clinic.c} <= ids(resources(body, access_token), "Patient")


def test_since_between_two_writes_exports_only_the_later(bulk: SmartEnv, clinic: Clinic) -> None:
    access_token = token(bulk)
    # Patient C's: C is outside the Group, whose exact contents another test checks.
    first = bulk.create(observation(clinic.c))
    read = httpx.get(f"{bulk.fhir}/Observation/{first}", headers=bulk.admin_headers())
    since = read.json()["meta"]["lastUpdated"]  # the first write's instant, to the microsecond
    second = bulk.create(observation(clinic.c))
    body = manifest(bulk, "$export", access_token, {"_since": since, "_type": "Observation"})
    exported = ids(resources(body, access_token), "Observation")
    assert second in exported
    assert first not in exported  # changed at _since, not after it
    assert clinic.observations["c"] not in exported


@pytest.mark.parametrize("since", ["last week", "2026-11-14", "2026-11-14T09:00:00"])
def test_since_that_is_not_an_instant_is_400(bulk: SmartEnv, since: str) -> None:
    response = kick_off(bulk, "$export", token(bulk), {"_since": since})
    assert response.status_code == 400


def test_type_filter_selects_within_a_type(bulk: SmartEnv, clinic: Clinic) -> None:
    access_token = token(bulk)
    params = {
        "_type": "Patient,Observation",
        "_typeFilter": f"Observation?subject=Patient/{clinic.b}",
    }
    found = resources(manifest(bulk, "$export", access_token, params), access_token)
    assert ids(found, "Observation") == {clinic.observations["b"]}
    assert {clinic.a, clinic.b, clinic.c} <= ids(found, "Patient")  # no filter on Patient


@pytest.mark.parametrize(
    "type_filter",
    ["Observation?_sort=date", "Observation?_include=Observation:subject", "Observation?pony=1"],
)
def test_a_type_filter_the_search_engine_cannot_run_is_400(
    bulk: SmartEnv, type_filter: str
) -> None:
    response = kick_off(bulk, "$export", token(bulk), {"_typeFilter": type_filter})
    assert response.status_code == 400, response.text


def test_an_unsupported_parameter_is_400_unless_lenient(bulk: SmartEnv) -> None:
    strict = kick_off(bulk, "$export", token(bulk), {"_elements": "id"})
    assert strict.status_code == 400
    lenient = kick_off(
        bulk,
        "$export",
        token(bulk),
        {"_elements": "id"},
        headers={"Prefer": "respond-async, handling=lenient"},
    )
    assert lenient.status_code == 202, lenient.text
    httpx.delete(lenient.headers["content-location"], headers=bearer(token(bulk)))


def test_post_kick_off_takes_a_parameters_body(bulk: SmartEnv, clinic: Clinic) -> None:
    access_token = token(bulk)
    parameters = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "_type", "valueString": "Patient"},
            {"name": "_outputFormat", "valueString": "application/fhir+ndjson"},
        ],
    }
    status_url = started(
        bulk,
        f"Group/{clinic.group}/$export",
        access_token,
        method="POST",
        json=parameters,
        headers={**KICK_OFF_HEADERS, "Content-Type": "application/fhir+json"},
    )
    body = poll(status_url, access_token).json()
    assert [item["type"] for item in body["output"]] == ["Patient"]
    assert ids(resources(body, access_token), "Patient") == {clinic.a, clinic.b}


# -- access (BDS-10, BDS-15) ---------------------------------------------------------------------


def test_INF_K11_a_v1_system_read_token_exports(bulk: SmartEnv, clinic: Clinic) -> None:
    response = kick_off(bulk, "Patient/$export", bulk.backend_access_token("bulk", "system/*.read"))
    assert response.status_code == 202, response.text
    httpx.delete(response.headers["content-location"], headers=bearer(token(bulk)))


def test_INF_K6_a_download_needs_the_same_clients_token(bulk: SmartEnv, clinic: Clinic) -> None:
    access_token = token(bulk)
    body = manifest(bulk, "$export", access_token, {"_type": "Patient"})
    url = body["output"][0]["url"]
    assert httpx.get(url, timeout=60).status_code == 401
    other = httpx.get(url, headers=bearer(token(bulk, "other")), timeout=60)
    assert other.status_code == 404  # another client's job is as unknown as none
    assert other.json()["resourceType"] == "OperationOutcome"
    assert body["request"] == f"{bulk.fhir}/$export?_type=Patient"  # the kick-off URL


def test_another_client_cannot_poll_or_cancel_a_job(bulk: SmartEnv) -> None:
    status_url = started(bulk, "$export", token(bulk), {"_type": "Patient"})
    other = bearer(token(bulk, "other"))
    assert httpx.get(status_url, headers=other).status_code == 404
    assert httpx.delete(status_url, headers=other).status_code == 404
    assert httpx.get(status_url).status_code == 401
    assert poll(status_url, token(bulk)).status_code == 200


def test_types_the_scopes_do_not_cover_are_left_out(bulk: SmartEnv, clinic: Clinic) -> None:
    narrow = token(bulk, "narrow")  # system/Patient.rs system/Observation.rs
    body = manifest(bulk, "Patient/$export", narrow)
    assert {item["type"] for item in body["output"]} == {"Patient", "Observation"}
    named = manifest(bulk, "$export", narrow, {"_type": "Patient,Condition"})
    assert {item["type"] for item in named["output"]} == {"Patient"}
    (error_file,) = named["error"]
    assert error_file["type"] == "OperationOutcome"
    (outcome,) = download(error_file["url"], narrow)
    validate_resource(outcome, expected_type="OperationOutcome")
    assert "Condition" in outcome["issue"][0]["diagnostics"]
    refused = kick_off(bulk, "$export", narrow, {"_type": "Condition"})
    assert refused.status_code == 403
    assert refused.json()["resourceType"] == "OperationOutcome"


def test_a_patient_token_cannot_export(bulk: SmartEnv) -> None:
    tokens, _patient = bulk.patient_tokens()
    for path in ("$export", "Patient/$export"):
        response = kick_off(bulk, path, tokens["access_token"])
        assert response.status_code == 403
        assert response.json()["resourceType"] == "OperationOutcome"


# -- cancellation (INF-K9, BDS-16) -----------------------------------------------------------------


@pytest.mark.parametrize("level", LEVELS)
def test_INF_K9_cancel_returns_202_and_then_404(bulk: SmartEnv, clinic: Clinic, level: str) -> None:
    access_token = token(bulk)
    status_url = started(bulk, level_path(level, clinic), access_token)
    assert httpx.delete(status_url, headers=bearer(access_token)).status_code == 202
    after = httpx.get(status_url, headers=bearer(access_token))
    assert after.status_code == 404
    validate_resource(after.json(), expected_type="OperationOutcome")


def test_a_finished_export_cancelled_loses_its_files(bulk: SmartEnv) -> None:
    access_token = token(bulk)
    status_url = started(bulk, "$export", access_token, {"_type": "Patient"})
    url = poll(status_url, access_token).json()["output"][0]["url"]
    assert httpx.delete(status_url, headers=bearer(access_token)).status_code == 202
    assert httpx.get(url, headers=bearer(access_token)).status_code == 404
    job_id = status_url.rsplit("/", 1)[1]
    assert not (bulk.data_dir / "exports" / job_id).exists()


# -- audit ---------------------------------------------------------------------------------------


def test_kick_off_and_download_are_audited(bulk: SmartEnv, clinic: Clinic) -> None:
    from fhir_server.audit.balp import CLIENT_ID_SYSTEM, OPERATION_SYSTEM

    access_token = token(bulk)
    body = manifest(bulk, "$export", access_token, {"_type": "Practitioner"})
    download(body["output"][0]["url"], access_token)
    client_id = bulk.backends["bulk"][0]
    deadline = time.monotonic() + 15
    while True:
        response = httpx.get(
            f"{bulk.fhir}/AuditEvent",
            params={
                "subtype": f"{OPERATION_SYSTEM}|export",
                "agent:identifier": f"{CLIENT_ID_SYSTEM}|{client_id}",
                "_count": "500",
            },
            headers=bulk.admin_headers(),
            timeout=60,
        )
        assert response.status_code == 200, response.text
        descriptions = [
            e["resource"].get("outcomeDesc", "") for e in response.json().get("entry", [])
        ]
        kicked = [d for d in descriptions if d.startswith("HTTP 202") and "accepted" in d]
        fetched = [d for d in descriptions if d.startswith("HTTP 200") and "Practitioner-1" in d]
        if (kicked and fetched) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert kicked and fetched, descriptions
