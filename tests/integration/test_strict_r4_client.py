"""Output is pure R4: the Python `fhirclient` package (strict R4 models, which reject
unknown elements) parses what the server returns."""

from __future__ import annotations

import uuid

import httpx
from fhirclient.models.bundle import Bundle
from fhirclient.models.capabilitystatement import CapabilityStatement
from fhirclient.models.observation import Observation
from fhirclient.models.operationoutcome import OperationOutcome
from fhirclient.models.patient import Patient


def test_strict_r4_models_parse_our_resources_and_bundles(fhir: httpx.Client) -> None:
    marker = uuid.uuid4().hex
    patient = fhir.post(
        "/Patient",
        json={
            "resourceType": "Patient",
            "identifier": [{"system": "urn:strict", "value": marker}],
            "name": [{"family": "Berg", "given": ["Ida"]}],
            "birthDate": "1980-01-02",
        },
    ).json()
    observation = fhir.post(
        "/Observation",
        json={
            "resourceType": "Observation",
            "status": "final",
            # a step count is a programme resource: the daily-step profile applies on write
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
            "code": {
                "coding": [
                    {
                        "system": "http://loinc.org",
                        "code": "41950-7",
                        "display": "Number of steps in 24 hour Measured",
                    }
                ]
            },
            "subject": {"reference": f"Patient/{patient['id']}"},
            "effectiveDateTime": "2026-11-20",
            "valueQuantity": {
                "value": 6012,
                "unit": "steps/day",
                "system": "http://unitsofmeasure.org",
                "code": "/d",
            },
        },
    ).json()

    parsed = Patient(fhir.get(f"/Patient/{patient['id']}").json(), strict=True)
    assert parsed.name[0].family == "Berg" and parsed.meta.versionId == "1"
    assert (
        Observation(
            fhir.get(f"/Observation/{observation['id']}").json(), strict=True
        ).valueQuantity.value
        == 6012
    )
    search = Bundle(
        fhir.get("/Observation", params={"subject": f"Patient/{patient['id']}"}).json(), strict=True
    )
    assert search.type == "searchset" and len(search.entry) == 1
    history = Bundle(fhir.get(f"/Patient/{patient['id']}/_history").json(), strict=True)
    assert history.type == "history"
    outcome = OperationOutcome(fhir.get("/Patient/not-there").json(), strict=True)
    assert outcome.issue[0].code == "not-found"
    statement = CapabilityStatement(fhir.get("/metadata").json(), strict=True)
    assert statement.fhirVersion == "4.0.1"
