"""$validate (operation-resource-validate): an OperationOutcome with 200 whether or not the
resource is valid; nothing is saved; our profiles apply when asked for."""

from __future__ import annotations

import uuid

import httpx

import profiles


def nhs_number(first_nine: str) -> str:
    """The modulus-11 check digit (NHS Data Dictionary), computed here, not copied."""
    total = sum(int(d) * w for d, w in zip(first_nine, range(10, 1, -1), strict=True))
    check = 11 - total % 11
    assert check != 10, "no valid number with these digits"
    return first_nine + str(0 if check == 11 else check)


def errors(outcome: dict[str, object]) -> list[dict[str, object]]:
    return [i for i in outcome["issue"] if i["severity"] in ("error", "fatal")]  # type: ignore[union-attr]


def test_valid_resource_has_no_errors_and_is_not_saved(fhir: httpx.Client) -> None:
    marker = uuid.uuid4().hex
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:v", "value": marker}],
        "gender": "female",
    }
    answer = fhir.post("/Patient/$validate", json=patient)
    assert answer.status_code == 200, answer.text
    assert answer.json()["resourceType"] == "OperationOutcome"
    assert errors(answer.json()) == []
    assert not fhir.get("/Patient", params={"identifier": f"urn:v|{marker}"}).json().get("entry")


def test_binding_and_structure_errors_are_located(fhir: httpx.Client) -> None:
    answer = fhir.post(
        "/Patient/$validate",
        json={"resourceType": "Patient", "gender": "sometimes", "birthDate": "soon"},
    )
    assert answer.status_code == 200
    expressions = {e for i in errors(answer.json()) for e in i.get("expression", [])}  # type: ignore[union-attr]
    assert "Patient.birthDate" in expressions
    assert any(e.startswith("Patient.gender") for e in expressions)


def test_our_patient_profile_checks_the_nhs_number(fhir: httpx.Client) -> None:
    good = nhs_number("401023213")
    bad = good[:-1] + str((int(good[-1]) + 1) % 10)
    params = lambda number: {  # noqa: E731
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "resource",
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [{"system": profiles.NHS_NUMBER_SYSTEM, "value": number}],
                },
            },
            {"name": "profile", "valueUri": profiles.PATIENT},
        ],
    }
    ok = fhir.post("/Patient/$validate", json=params(good)).json()
    assert errors(ok) == [], ok
    wrong = fhir.post("/Patient/$validate", json=params(bad)).json()
    assert errors(wrong), wrong


def test_instance_level_validates_the_stored_resource(fhir: httpx.Client) -> None:
    stored = fhir.post("/Patient", json={"resourceType": "Patient", "gender": "male"}).json()
    answer = fhir.get(f"/Patient/{stored['id']}/$validate")
    assert answer.status_code == 200 and errors(answer.json()) == []
    assert fhir.get("/Patient/no-such-one/$validate").status_code == 404


def test_bad_mode_is_400(fhir: httpx.Client) -> None:
    answer = fhir.post("/Patient/$validate?mode=sideways", json={"resourceType": "Patient"})
    assert answer.status_code == 400
    assert answer.json()["resourceType"] == "OperationOutcome"
