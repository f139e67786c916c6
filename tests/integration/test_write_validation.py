"""Write-time validation over HTTP (docs/VALIDATOR.md): profiles and Questionnaire answers.

Refused writes answer 422 with located issues and leave nothing behind (checked by searching
afterwards); warnings never refuse a write and are surfaced in ``X-FHIR-Request-Validation``
headers, in the OperationOutcome of ``Prefer: return=OperationOutcome`` and in a Bundle
entry's ``response.outcome``.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

import httpx

import profiles
from tests.integration.test_events_scoring import derived_from
from tests.mappings.qr_builder import build_response
from tests.profiles import builders

UNKNOWN_PROFILE = "http://example.org/fhir/StructureDefinition/not-here"
PHQ = {**{f"phq-{i}": 2 for i in range(1, 9)}, **{f"pss-{i}": 2 for i in range(1, 11)}}


def tag() -> str:
    return uuid.uuid4().hex[:12]


def new_patient(fhir: httpx.Client) -> str:
    answer = fhir.post("/Patient", json={"resourceType": "Patient", "gender": "female"})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def steps(patient_id: str, marker: str, **changes: Any) -> dict[str, Any]:
    resource = copy.deepcopy(builders.daily_steps())
    for key in ("id", "meta", "text"):
        resource.pop(key)
    resource["subject"] = {"reference": f"Patient/{patient_id}"}
    resource["identifier"] = [{"system": "urn:test:write-validation", "value": marker}]
    resource.update(changes)
    return resource


def bad_unit(resource: dict[str, Any]) -> dict[str, Any]:
    resource = copy.deepcopy(resource)
    resource["valueQuantity"]["code"] = "steps"
    return resource


def found(fhir: httpx.Client, rtype: str, **params: str) -> int:
    bundle = fhir.get(f"/{rtype}", params={**params, "_total": "accurate"}).json()
    return len(bundle.get("entry", []))


def expressions(answer: httpx.Response) -> list[str]:
    return [e for i in answer.json()["issue"] for e in i.get("expression", [])]


def response_to(qid: str, answers: dict[str, Any], patient_id: str) -> dict[str, Any]:
    qr = build_response(qid, answers)
    qr.pop("id")
    qr["subject"] = {"reference": f"Patient/{patient_id}"}
    return qr


# -- profiles -------------------------------------------------------------------------------


def test_programme_resource_violating_our_profile_is_422_and_not_written(
    fhir: httpx.Client,
) -> None:
    patient, marker = new_patient(fhir), tag()
    answer = fhir.post("/Observation", json=bad_unit(steps(patient, marker)))
    assert answer.status_code == 422, answer.text
    outcome = answer.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "Observation.value.ofType(Quantity).code" in expressions(answer)
    assert found(fhir, "Observation", identifier=f"urn:test:write-validation|{marker}") == 0
    ok = fhir.post("/Observation", json=steps(patient, marker))
    assert ok.status_code == 201, ok.text
    assert "X-FHIR-Request-Validation" not in ok.headers


def test_update_patch_and_conditional_create_are_validated(fhir: httpx.Client) -> None:
    patient, marker = new_patient(fhir), tag()
    created = fhir.post("/Observation", json=steps(patient, marker)).json()
    url = f"/Observation/{created['id']}"
    assert fhir.put(url, json={**bad_unit(created), "id": created["id"]}).status_code == 422
    patched = fhir.patch(
        url,
        json=[{"op": "replace", "path": "/valueQuantity/value", "value": 12.5}],
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert patched.status_code == 422, patched.text
    assert fhir.get(url).json()["meta"]["versionId"] == "1"
    conditional = fhir.post(
        "/Observation",
        json=bad_unit(steps(patient, tag())),
        headers={"If-None-Exist": f"identifier=urn:test:write-validation|{tag()}"},
    )
    assert conditional.status_code == 422
    conditional_update = fhir.put(
        f"/Observation?identifier=urn:test:write-validation|{tag()}",
        json=bad_unit(steps(patient, tag())),
    )
    assert conditional_update.status_code == 422


def test_invalid_entry_rejects_the_whole_transaction_naming_it(fhir: httpx.Client) -> None:
    marker = tag()
    patient_url = f"urn:uuid:{uuid.uuid4()}"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": patient_url,
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [{"system": "urn:test:write-validation", "value": marker}],
                },
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": bad_unit(steps("x", marker, subject={"reference": patient_url})),
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    answer = fhir.post("", json=bundle)
    assert answer.status_code == 422, answer.text
    assert any(e.startswith("Bundle.entry[1]") for e in expressions(answer))
    assert found(fhir, "Patient", identifier=f"urn:test:write-validation|{marker}") == 0
    assert found(fhir, "Observation", identifier=f"urn:test:write-validation|{marker}") == 0


def test_invalid_batch_entry_fails_alone(fhir: httpx.Client) -> None:
    patient, marker = new_patient(fhir), tag()
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {
                "resource": steps(patient, marker),
                "request": {"method": "POST", "url": "Observation"},
            },
            {
                "resource": bad_unit(steps(patient, marker)),
                "request": {"method": "POST", "url": "Observation"},
            },
            {
                "resource": {"resourceType": "Patient", "meta": {"profile": [UNKNOWN_PROFILE]}},
                "request": {"method": "POST", "url": "Patient"},
            },
        ],
    }
    answer = fhir.post("", json=bundle)
    assert answer.status_code == 200, answer.text
    entries = answer.json()["entry"]
    assert [e["response"]["status"][:3] for e in entries] == ["201", "422", "201"]
    failed = entries[1]["response"]["outcome"]
    assert any(
        e.startswith("Bundle.entry[1]") for i in failed["issue"] for e in i.get("expression", [])
    )
    warned = entries[2]["response"]["outcome"]["issue"]
    assert [(i["severity"], i["expression"]) for i in warned] == [
        ("warning", ["Bundle.entry[2].Patient.meta.profile[0]"])
    ]
    assert found(fhir, "Observation", identifier=f"urn:test:write-validation|{marker}") == 1


def test_transaction_entry_warnings_are_in_its_response_outcome(fhir: httpx.Client) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {"resourceType": "Patient", "meta": {"profile": [UNKNOWN_PROFILE]}},
                "request": {"method": "POST", "url": "Patient"},
            }
        ],
    }
    answer = fhir.post("", json=bundle)
    assert answer.status_code == 200, answer.text
    entry = answer.json()["entry"][0]
    assert entry["response"]["status"].startswith("201")
    assert entry["response"]["outcome"]["issue"][0]["severity"] == "warning"


def test_unknown_profile_is_accepted_with_a_warning(fhir: httpx.Client) -> None:
    resource = {"resourceType": "Patient", "meta": {"profile": [UNKNOWN_PROFILE]}}
    plain = fhir.post("/Patient", json=resource)
    assert plain.status_code == 201, plain.text
    header = plain.headers.get("X-FHIR-Request-Validation", "")
    assert header.startswith("warning Patient.meta.profile[0]:") and UNKNOWN_PROFILE in header
    as_outcome = fhir.post("/Patient", json=resource, headers={"Prefer": "return=OperationOutcome"})
    assert as_outcome.status_code == 201
    issues = as_outcome.json()["issue"]
    assert [i["severity"] for i in issues] == ["information", "warning"]
    assert issues[1]["expression"] == ["Patient.meta.profile[0]"]


def test_claimed_core_profile_is_enforced(fhir: httpx.Client) -> None:
    vital = {
        "resourceType": "Observation",
        "meta": {"profile": ["http://hl7.org/fhir/StructureDefinition/vitalsigns"]},
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2"}]},
    }
    answer = fhir.post("/Observation", json=vital)
    assert answer.status_code == 422
    assert answer.status_code == 422
    issues = answer.json()["issue"]
    assert any("Observation.category" in i["diagnostics"] for i in issues)  # vitalsigns 1..*
    assert "Observation" in expressions(answer)


# -- national identifiers ----------------------------------------------------------------------


def test_nhs_number_with_a_bad_check_digit_is_422(fhir: httpx.Client) -> None:
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": profiles.NHS_NUMBER_SYSTEM, "value": "9434765918"}],
    }
    answer = fhir.post("/Patient", json=patient)
    assert answer.status_code == 422, answer.text
    assert expressions(answer) == ["Patient.identifier[0]"]
    patient["identifier"][0]["value"] = "9434765919"
    assert fhir.post("/Patient", json=patient).status_code == 201


def test_danish_cpr_patient_is_accepted_without_modulus_11(fhir: httpx.Client) -> None:
    cpr = {"use": "official", "system": profiles.CPR_SYSTEM, "value": "0702921234"}
    answer = fhir.post("/Patient", json={"resourceType": "Patient", "identifier": [cpr]})
    assert answer.status_code == 201, answer.text
    bad_date = {**cpr, "value": "3102921234"}
    refused = fhir.post("/Patient", json={"resourceType": "Patient", "identifier": [bad_date]})
    assert refused.status_code == 422
    assert expressions(refused) == ["Patient.identifier[0]"]


# -- QuestionnaireResponse against its Questionnaire --------------------------------------------


def test_valid_response_is_created_and_scored(fhir: httpx.Client) -> None:
    patient = new_patient(fhir)
    answer = fhir.post(
        "/QuestionnaireResponse", json=response_to("selfback-mental-health", PHQ, patient)
    )
    assert answer.status_code == 201, answer.text
    assert derived_from(fhir, answer.json()["id"]), "no score Observations appeared"


def test_wrong_answer_type_is_422_at_the_answer(fhir: httpx.Client) -> None:
    qr = response_to("selfback-mental-health", PHQ, new_patient(fhir))
    qr["item"][0]["item"][1]["answer"] = [{"valueInteger": 2}]
    answer = fhir.post("/QuestionnaireResponse", json=qr)
    assert answer.status_code == 422, answer.text
    assert expressions(answer) == ["QuestionnaireResponse.item[0].item[1].answer[0]"]


def test_missing_required_item_is_422(fhir: httpx.Client) -> None:
    answers = {k: v for k, v in PHQ.items() if k != "phq-3"}
    qr = response_to("selfback-mental-health", answers, new_patient(fhir))
    answer = fhir.post("/QuestionnaireResponse", json=qr)
    assert answer.status_code == 422, answer.text
    assert expressions(answer) == ["QuestionnaireResponse.item[0]"]
    assert "phq-3" in answer.json()["issue"][0]["diagnostics"]
    qr["status"] = "in-progress"
    assert fhir.post("/QuestionnaireResponse", json=qr).status_code == 201


def test_answer_to_a_disabled_item_is_422(fhir: httpx.Client) -> None:
    patient = new_patient(fhir)
    answers = {
        "exercise": "bridge",
        "exercise-level": 2,
        "exercise-outcome": "exercise-skipped",
        "reps-set-1": 10,
    }
    qr = response_to("selfback-exercise-feedback", answers, patient)
    answer = fhir.post("/QuestionnaireResponse", json=qr)
    assert answer.status_code == 422, answer.text
    assert expressions(answer) == ["QuestionnaireResponse.item[3]"]
    answers.pop("reps-set-1")
    ok = fhir.post(
        "/QuestionnaireResponse",
        json=response_to("selfback-exercise-feedback", answers, patient),
    )
    assert ok.status_code == 201, ok.text


def test_unknown_link_id_is_422(fhir: httpx.Client) -> None:
    qr = response_to("selfback-mental-health", PHQ, new_patient(fhir))
    qr["item"].append({"linkId": "phq-9", "answer": [{"valueInteger": 1}]})
    answer = fhir.post("/QuestionnaireResponse", json=qr)
    assert answer.status_code == 422, answer.text
    assert expressions(answer) == ["QuestionnaireResponse.item[2]"]


def test_response_to_an_unknown_version_of_our_questionnaire_is_422(fhir: httpx.Client) -> None:
    qr = response_to("selfback-mental-health", PHQ, new_patient(fhir))
    qr["questionnaire"] = qr["questionnaire"].replace("|1.0.0", "|0.9.0")
    answer = fhir.post("/QuestionnaireResponse", json=qr)
    assert answer.status_code == 422, answer.text
    assert expressions(answer) == ["QuestionnaireResponse.questionnaire"]


def test_response_to_a_stored_foreign_questionnaire_is_checked(fhir: httpx.Client) -> None:
    url = f"http://example.org/fhir/Questionnaire/{tag()}"
    questionnaire = {
        "resourceType": "Questionnaire",
        "url": url,
        "status": "active",
        "item": [{"linkId": "ok", "text": "Feeling well?", "type": "boolean", "required": True}],
    }
    assert fhir.post("/Questionnaire", json=questionnaire).status_code == 201
    qr = {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": url,
        "status": "completed",
        "item": [{"linkId": "ok", "answer": [{"valueString": "yes"}]}],
    }
    answer = fhir.post("/QuestionnaireResponse", json=qr)
    assert answer.status_code == 422
    assert expressions(answer) == ["QuestionnaireResponse.item[0].answer[0]"]
    qr["item"][0]["answer"] = [{"valueBoolean": True}]
    assert fhir.post("/QuestionnaireResponse", json=qr).status_code == 201
    unknown = {**qr, "questionnaire": f"http://example.org/fhir/Questionnaire/{tag()}"}
    warned = fhir.post("/QuestionnaireResponse", json=unknown)
    assert warned.status_code == 201
    assert warned.headers["X-FHIR-Request-Validation"].startswith(
        "warning QuestionnaireResponse.questionnaire:"
    )
