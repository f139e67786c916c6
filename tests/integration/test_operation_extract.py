"""QuestionnaireResponse/$extract (SDC) and the operation dispatch rules (operations.html)."""

from __future__ import annotations

import httpx

from tests.mappings.qr_builder import build_response

PHQ = {**{f"phq-{i}": 3 for i in range(1, 9)}, **{f"pss-{i}": 1 for i in range(1, 11)}}


def response_for(patient_id: str) -> dict[str, object]:
    qr = build_response("selfback-mental-health", PHQ)
    qr.pop("id", None)
    qr["subject"] = {"reference": f"Patient/{patient_id}"}
    return qr


def test_extract_on_a_stored_response_returns_a_transaction_of_scores(fhir: httpx.Client) -> None:
    patient = fhir.post("/Patient", json={"resourceType": "Patient"}).json()
    stored = fhir.post("/QuestionnaireResponse", json=response_for(patient["id"])).json()
    for method in ("GET", "POST"):
        answer = fhir.request(method, f"/QuestionnaireResponse/{stored['id']}/$extract")
        assert answer.status_code == 200, answer.text
        bundle = answer.json()
        assert bundle["resourceType"] == "Bundle" and bundle["type"] == "transaction"
        kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
        assert kinds.count("Provenance") == 1 and kinds.count("Observation") >= 2
        phq = next(
            e["resource"]
            for e in bundle["entry"]
            if e["resource"]["resourceType"] == "Observation"
            and "PHQ-8" in str(e["resource"]["code"])
        )
        assert phq["valueInteger"] == 24  # 8 items x 3
        assert phq["derivedFrom"] == [{"reference": f"QuestionnaireResponse/{stored['id']}"}]
        assert all(e["request"]["method"] == "PUT" for e in bundle["entry"])


def test_extract_on_a_response_in_the_body_saves_nothing(fhir: httpx.Client) -> None:
    patient = fhir.post("/Patient", json={"resourceType": "Patient"}).json()
    qr = response_for(patient["id"])
    direct = fhir.post("/QuestionnaireResponse/$extract", json=qr)
    assert direct.status_code == 200, direct.text
    wrapped = fhir.post(
        "/QuestionnaireResponse/$extract",
        json={
            "resourceType": "Parameters",
            "parameter": [{"name": "questionnaire-response", "resource": qr}],
        },
    )
    assert wrapped.status_code == 200, wrapped.text
    assert len(wrapped.json()["entry"]) == len(direct.json()["entry"])
    found = fhir.get("/Observation", params={"subject": f"Patient/{patient['id']}"}).json()
    assert not found.get("entry")


def test_operation_errors(fhir: httpx.Client) -> None:
    assert fhir.post("/Patient/$extract", json={"resourceType": "Parameters"}).status_code == 404
    assert fhir.post("/$no-such-operation", json={"resourceType": "Parameters"}).status_code == 404
    assert fhir.get("/QuestionnaireResponse/missing-one/$extract").status_code == 404
    bad = fhir.post(
        "/QuestionnaireResponse/$extract",
        json={"resourceType": "Parameters", "parameter": [{"value": 1}]},
    )
    assert bad.status_code == 400
    assert bad.json()["resourceType"] == "OperationOutcome"
    wrong = fhir.post("/QuestionnaireResponse/$extract", json={"resourceType": "Patient"})
    assert wrong.status_code == 400


def test_capability_statement_lists_extract(fhir: httpx.Client) -> None:
    statement = fhir.get("/metadata").json()
    by_type = {r["type"]: r for r in statement["rest"][0]["resource"]}
    names = [o["name"] for o in by_type["QuestionnaireResponse"].get("operation", [])]
    assert "extract" in names
    assert "operation" not in by_type["Patient"] or "extract" not in [
        o["name"] for o in by_type["Patient"]["operation"]
    ]
