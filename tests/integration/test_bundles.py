"""batch and transaction (FHIR R4 http.html#transaction, bundle.html#transaction)."""

from __future__ import annotations

import base64
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import orjson


def ident() -> dict[str, str]:
    return {"system": "urn:test:bundle", "value": uuid.uuid4().hex}


def transaction(*entries: dict[str, object], kind: str = "transaction") -> dict[str, object]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def post(
    resource: dict[str, object], full_url: str | None = None, **request: str
) -> dict[str, object]:
    entry: dict[str, object] = {
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"], **request},
    }
    if full_url:
        entry["fullUrl"] = full_url
    return entry


def observation(subject: str, value: float = 5) -> dict[str, object]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "72514-3"}]},
        "subject": {"reference": subject},
        "valueInteger": int(value),
    }


def find(fhir: httpx.Client, rtype: str, params: dict[str, str]) -> list[dict[str, object]]:
    body = fhir.get(f"/{rtype}", params=params).json()
    return [
        e["resource"]
        for e in body.get("entry", [])
        if e.get("search", {}).get("mode", "match") == "match"
    ]


def test_transaction_resolves_urn_uuid_references(fhir: httpx.Client) -> None:
    pid = f"urn:uuid:{uuid.uuid4()}"
    patient = {"resourceType": "Patient", "identifier": [ident()]}
    response = fhir.post("", json=transaction(post(observation(pid)), post(patient, pid)))
    assert response.status_code == 200, response.text
    bundle = response.json()
    assert bundle["type"] == "transaction-response"
    obs_entry, pat_entry = bundle["entry"]  # answered in the order given
    assert obs_entry["response"]["status"] == "201 Created"
    assert pat_entry["response"]["location"].startswith("Patient/")
    patient_id = pat_entry["resource"]["id"]
    assert obs_entry["resource"]["subject"]["reference"] == f"Patient/{patient_id}"
    stored = fhir.get(f"/Observation/{obs_entry['resource']['id']}").json()
    assert stored["subject"]["reference"] == f"Patient/{patient_id}"


def test_failing_entry_rolls_back_the_whole_transaction(fhir: httpx.Client) -> None:
    marker = ident()
    good = {"resourceType": "Patient", "identifier": [marker]}
    bad = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "valueInteger": "five",
    }
    response = fhir.post("", json=transaction(post(good), post(bad)))
    assert response.status_code == 400
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    expressions = [e for issue in body["issue"] for e in issue.get("expression", [])]
    assert any(e.startswith("Bundle.entry[1]") for e in expressions), body
    assert find(fhir, "Patient", {"identifier": f"{marker['system']}|{marker['value']}"}) == []


def test_transaction_with_failing_conditional_rolls_back(fhir: httpx.Client) -> None:
    marker = ident()
    criteria = f"identifier={marker['system']}|{marker['value']}"
    fhir.post("/Patient", json={"resourceType": "Patient", "identifier": [marker]})
    fhir.post("/Patient", json={"resourceType": "Patient", "identifier": [marker]})
    other = ident()
    bundle = transaction(
        post({"resourceType": "Patient", "identifier": [other]}),
        {
            "resource": {"resourceType": "Patient", "identifier": [marker]},
            "request": {"method": "PUT", "url": f"Patient?{criteria}"},
        },
    )
    response = fhir.post("", json=bundle)
    assert response.status_code == 412
    assert find(fhir, "Patient", {"identifier": f"{other['system']}|{other['value']}"}) == []


def test_transaction_processing_order_delete_post_put_get(fhir: httpx.Client) -> None:
    existing = fhir.post(
        "/Patient", json={"resourceType": "Patient", "identifier": [ident()]}
    ).json()
    put_id = f"p-{uuid.uuid4().hex[:10]}"
    bundle = transaction(
        {"request": {"method": "GET", "url": f"Patient/{put_id}"}},
        {
            "resource": {"resourceType": "Patient", "id": put_id, "gender": "male"},
            "request": {"method": "PUT", "url": f"Patient/{put_id}"},
        },
        {"request": {"method": "DELETE", "url": f"Patient/{existing['id']}"}},
    )
    response = fhir.post("", json=bundle)
    assert response.status_code == 200, response.text
    get_entry, put_entry, delete_entry = response.json()["entry"]
    # GET ran after the PUT, so it sees the new resource
    assert get_entry["response"]["status"] == "200 OK"
    assert get_entry["resource"]["gender"] == "male"
    assert put_entry["response"]["status"] == "201 Created"
    assert delete_entry["response"]["status"] == "204 No Content"
    assert fhir.get(f"/Patient/{existing['id']}").status_code == 410


def test_transaction_if_none_exist_and_conditional_reference(fhir: httpx.Client) -> None:
    marker = ident()
    criteria = f"identifier={marker['system']}|{marker['value']}"
    first = fhir.post(
        "",
        json=transaction(
            post({"resourceType": "Patient", "identifier": [marker]}, ifNoneExist=criteria)
        ),
    )
    patient_id = first.json()["entry"][0]["resource"]["id"]
    second = fhir.post(
        "",
        json=transaction(
            post({"resourceType": "Patient", "identifier": [marker]}, ifNoneExist=criteria),
            post(observation(f"Patient?{criteria}")),
        ),
    )
    assert second.status_code == 200, second.text
    entries = second.json()["entry"]
    assert entries[0]["response"]["status"] == "200 OK"
    assert entries[0]["resource"]["id"] == patient_id
    assert entries[1]["resource"]["subject"]["reference"] == f"Patient/{patient_id}"


def test_conditional_reference_with_no_match_fails(fhir: httpx.Client) -> None:
    response = fhir.post(
        "", json=transaction(post(observation("Patient?identifier=urn:none|nobody")))
    )
    assert response.status_code == 412
    assert response.json()["resourceType"] == "OperationOutcome"


def test_unresolved_urn_reference_fails(fhir: httpx.Client) -> None:
    response = fhir.post("", json=transaction(post(observation(f"urn:uuid:{uuid.uuid4()}"))))
    assert response.status_code == 400


def test_patch_entries_json_patch_binary_and_fhirpath(fhir: httpx.Client) -> None:
    made = fhir.post("/Patient", json={"resourceType": "Patient", "gender": "female"}).json()
    ops = [{"op": "replace", "path": "/gender", "value": "male"}]
    binary = {
        "resourceType": "Binary",
        "contentType": "application/json-patch+json",
        "data": base64.b64encode(orjson.dumps(ops)).decode(),
    }
    params = {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "operation",
                "part": [
                    {"name": "type", "valueCode": "add"},
                    {"name": "path", "valueString": "Patient"},
                    {"name": "name", "valueString": "active"},
                    {"name": "value", "valueBoolean": True},
                ],
            }
        ],
    }
    bundle = transaction(
        {"resource": binary, "request": {"method": "PATCH", "url": f"Patient/{made['id']}"}},
        {"resource": params, "request": {"method": "PATCH", "url": f"Patient/{made['id']}"}},
    )
    response = fhir.post("", json=bundle)
    assert response.status_code == 200, response.text
    now = fhir.get(f"/Patient/{made['id']}").json()
    assert now["gender"] == "male" and now["active"] is True
    assert now["meta"]["versionId"] == "3"


def test_batch_entries_are_independent(fhir: httpx.Client) -> None:
    marker = ident()
    bundle = transaction(
        post({"resourceType": "Patient", "identifier": [marker]}),
        post({"resourceType": "Patient", "birthDate": "never"}),
        {"request": {"method": "GET", "url": "Patient/definitely-missing"}},
        kind="batch",
    )
    response = fhir.post("", json=bundle)
    assert response.status_code == 200
    ok, invalid, missing = response.json()["entry"]
    assert ok["response"]["status"] == "201 Created"
    assert invalid["response"]["status"].startswith("400")
    assert invalid["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert missing["response"]["status"].startswith("404")
    assert len(find(fhir, "Patient", {"identifier": f"{marker['system']}|{marker['value']}"})) == 1


def test_bundle_of_wrong_type_is_refused(fhir: httpx.Client) -> None:
    response = fhir.post("", json={"resourceType": "Bundle", "type": "collection", "entry": []})
    assert response.status_code == 400
    response = fhir.post("", json={"resourceType": "Patient"})
    assert response.status_code == 400


def test_duplicate_full_urls_are_refused(fhir: httpx.Client) -> None:
    url = f"urn:uuid:{uuid.uuid4()}"
    response = fhir.post(
        "",
        json=transaction(
            post({"resourceType": "Patient"}, url), post({"resourceType": "Patient"}, url)
        ),
    )
    assert response.status_code == 400


def test_concurrent_conditional_creates_make_one_resource(
    server: object, fhir: httpx.Client
) -> None:
    """The HAPI #3141 repro: 8 identical conditional creates at once -> exactly one."""
    marker = ident()
    criteria = f"identifier={marker['system']}|{marker['value']}"
    resource = {"resourceType": "Patient", "identifier": [marker]}
    base = str(fhir.base_url)

    def attempt(_: int) -> int:
        with httpx.Client(base_url=base, timeout=60) as client:
            return client.post(
                "/Patient", json=resource, headers={"If-None-Exist": criteria}
            ).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(attempt, range(8)))
    assert statuses.count(201) == 1, statuses
    assert statuses.count(200) == 7, statuses
    assert len(find(fhir, "Patient", {"identifier": f"{marker['system']}|{marker['value']}"})) == 1


def test_concurrent_conditional_creates_in_transactions_make_one_resource(
    fhir: httpx.Client,
) -> None:
    marker = ident()
    criteria = f"identifier={marker['system']}|{marker['value']}"
    bundle = transaction(
        post({"resourceType": "Patient", "identifier": [marker]}, ifNoneExist=criteria)
    )
    base = str(fhir.base_url)

    def attempt(_: int) -> int:
        with httpx.Client(base_url=base, timeout=60) as client:
            return client.post("", json=bundle).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(attempt, range(8)))
    assert statuses == [200] * 8
    assert len(find(fhir, "Patient", {"identifier": f"{marker['system']}|{marker['value']}"})) == 1
