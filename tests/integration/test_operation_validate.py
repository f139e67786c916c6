"""$validate (operation-resource-validate): an OperationOutcome with 200 whether or not the
resource is valid; nothing is saved; our profiles apply when asked for."""

from __future__ import annotations

import uuid

import httpx

import profiles
from tests.integration.test_write_validation import PHQ, new_patient, response_to


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


# -- what a write would say (fhir_server.conformance.check, shared with the write path) -----


def _tag() -> str:
    return uuid.uuid4().hex[:12]


def expressions(outcome: dict[str, object]) -> list[str]:
    return [e for i in errors(outcome) for e in i.get("expression", [])]  # type: ignore[union-attr]


def _responses_of(fhir: httpx.Client, patient_id: str) -> int:
    bundle = fhir.get("/QuestionnaireResponse", params={"subject": f"Patient/{patient_id}"})
    return len(bundle.json().get("entry", []))


def test_invalid_programme_response_reports_the_located_errors(fhir: httpx.Client) -> None:
    patient = new_patient(fhir)
    qr = response_to("selfback-mental-health", PHQ, patient)
    qr["item"][0]["item"][1]["answer"] = [{"valueInteger": 2}]  # a Coding is expected
    qr["item"].append({"linkId": "phq-9", "answer": [{"valueInteger": 1}]})  # no such item
    answer = fhir.post("/QuestionnaireResponse/$validate", json=qr)
    assert answer.status_code == 200, answer.text
    assert expressions(answer.json()) == [
        "QuestionnaireResponse.item[0].item[1].answer[0]",
        "QuestionnaireResponse.item[2]",
    ]
    # The same resource is refused by a write with the same locations.
    refused = fhir.post("/QuestionnaireResponse", json=qr)
    assert refused.status_code == 422
    assert expressions(refused.json()) == expressions(answer.json())
    assert _responses_of(fhir, patient) == 0


def test_valid_programme_response_has_no_errors_and_is_not_saved(fhir: httpx.Client) -> None:
    patient = new_patient(fhir)
    qr = response_to("selfback-mental-health", PHQ, patient)
    for mode in ("", "?mode=create"):
        answer = fhir.post(f"/QuestionnaireResponse/$validate{mode}", json=qr)
        assert answer.status_code == 200, answer.text
        assert errors(answer.json()) == [], answer.text
    assert _responses_of(fhir, patient) == 0


def test_response_to_an_unknown_programme_questionnaire_version_is_an_error(
    fhir: httpx.Client,
) -> None:
    qr = response_to("selfback-mental-health", PHQ, new_patient(fhir))
    qr["questionnaire"] = qr["questionnaire"].replace("|1.0.0", "|0.9.0")
    answer = fhir.post("/QuestionnaireResponse/$validate", json=qr)
    assert answer.status_code == 200
    assert expressions(answer.json()) == ["QuestionnaireResponse.questionnaire"]


def test_programme_resource_is_checked_against_our_profile_unasked(fhir: httpx.Client) -> None:
    good = nhs_number("401023213")
    bad = good[:-1] + str((int(good[-1]) + 1) % 10)
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": profiles.NHS_NUMBER_SYSTEM, "value": bad}],
    }
    answer = fhir.post("/Patient/$validate", json=patient)
    assert expressions(answer.json()) == ["Patient.identifier[0]"]


def test_profile_parameter_must_name_a_known_profile(fhir: httpx.Client) -> None:
    patient = {"resourceType": "Patient", "gender": "female"}
    unknown = f"http://example.org/fhir/StructureDefinition/{_tag()}"
    answer = fhir.post(f"/Patient/$validate?profile={unknown}", json=patient)
    assert answer.status_code == 200
    assert [i["code"] for i in errors(answer.json())] == ["not-found"]
    wrong_type = fhir.post(f"/Patient/$validate?profile={profiles.DAILY_STEPS}", json=patient)
    assert [i["code"] for i in errors(wrong_type.json())] == ["invalid"]
    # A profile merely claimed in meta.profile and unknown is a warning, as on a write.
    claimed = {**patient, "meta": {"profile": [unknown]}}
    warned = fhir.post("/Patient/$validate", json=claimed).json()
    assert errors(warned) == []
    warnings = [i for i in warned["issue"] if i["severity"] == "warning"]
    assert [i["expression"] for i in warnings] == [["Patient.meta.profile[0]"]]


def test_mode_profile_checks_the_stored_resource(fhir: httpx.Client) -> None:
    observation = {"resourceType": "Observation", "status": "final", "code": {"text": "steps"}}
    stored = fhir.post("/Observation", json=observation)
    assert stored.status_code == 201, stored.text  # not a programme resource: no profile
    url = f"/Observation/{stored.json()['id']}/$validate"
    answer = fhir.get(url, params={"mode": "profile", "profile": profiles.DAILY_STEPS})
    assert answer.status_code == 200
    found = errors(answer.json())
    # subject is 1..1 in selfback-daily-steps (a cardinality issue is located at the parent).
    assert any(str(i["diagnostics"]).startswith("Observation.subject") for i in found), found
    # resource-validation-mode#profile: the stored resource, not a body, is checked.
    body = {**observation, "status": "not-a-status"}
    posted = fhir.post(url, params={"mode": "profile", "profile": profiles.DAILY_STEPS}, json=body)
    assert errors(posted.json()) == found
    assert fhir.get("/Observation/$validate", params={"mode": "profile"}).status_code == 400


def test_mode_update_checks_the_id(fhir: httpx.Client) -> None:
    stored = fhir.post("/Patient", json={"resourceType": "Patient", "gender": "male"}).json()
    url = f"/Patient/{stored['id']}/$validate?mode=update"
    same = fhir.post(url, json={**stored, "gender": "female"})
    assert same.status_code == 200 and errors(same.json()) == [], same.text
    other = fhir.post(url, json={**stored, "id": "someone-else"})
    assert other.status_code == 200
    assert expressions(other.json()) == ["Patient.id"]
    missing = {k: v for k, v in stored.items() if k != "id"}
    assert expressions(fhir.post(url, json=missing).json()) == ["Patient.id"]
    # update and delete name an instance (operation-resource-validate).
    assert fhir.post("/Patient/$validate?mode=update", json=stored).status_code == 400
    assert fhir.post("/Patient/$validate?mode=delete", json=stored).status_code == 400
    # Nothing was written.
    assert fhir.get(f"/Patient/{stored['id']}").json()["meta"]["versionId"] == "1"


def test_mode_delete(fhir: httpx.Client) -> None:
    stored = fhir.post("/Patient", json={"resourceType": "Patient"}).json()
    answer = fhir.get(f"/Patient/{stored['id']}/$validate", params={"mode": "delete"})
    assert answer.status_code == 200
    assert errors(answer.json()) == []
    assert fhir.get(f"/Patient/{stored['id']}").status_code == 200
    # An instance operation needs its instance (operations.html): 404 for one never stored.
    absent = fhir.get(f"/Patient/{_tag()}/$validate", params={"mode": "delete"})
    assert absent.status_code == 404


def test_stored_profile_binding_to_a_stored_value_set(fhir: httpx.Client) -> None:
    """A client stores a ValueSet and a profile binding Patient.maritalStatus (required) to
    it; $validate and writes check codes against the stored ValueSet, and see it change."""
    system = f"http://example.org/fhir/CodeSystem/{_tag()}"
    vs_url = f"http://example.org/fhir/ValueSet/{_tag()}"
    value_set = {
        "resourceType": "ValueSet",
        "url": vs_url,
        "status": "active",
        "compose": {"include": [{"system": system, "concept": [{"code": "a"}]}]},
    }
    created = fhir.post("/ValueSet", json=value_set)
    assert created.status_code == 201, created.text
    sd = next(s for s in profiles.our_structure_definitions() if s["url"] == profiles.PATIENT)
    sd = {k: v for k, v in sd.items() if k not in ("id", "meta", "text", "differential")}
    sd["url"] = f"http://example.org/fhir/StructureDefinition/{_tag()}"
    sd["name"] = "LocalMaritalPatient"
    for element in sd["snapshot"]["element"]:
        if element["path"] == "Patient.maritalStatus":
            element["binding"] = {"strength": "required", "valueSet": vs_url}
    stored_sd = fhir.post("/StructureDefinition", json=sd)
    assert stored_sd.status_code == 201, stored_sd.text

    def patient(code: str) -> dict[str, object]:
        return {
            "resourceType": "Patient",
            "meta": {"profile": [sd["url"]]},
            "maritalStatus": {"coding": [{"system": system, "code": code}]},
        }

    answer = fhir.post("/Patient/$validate", json=patient("b"))
    assert answer.status_code == 200
    assert expressions(answer.json()) == ["Patient.maritalStatus"]
    assert vs_url in errors(answer.json())[0]["diagnostics"]  # type: ignore[operator]
    assert errors(fhir.post("/Patient/$validate", json=patient("a")).json()) == []
    # The write path says the same.
    assert fhir.post("/Patient", json=patient("b")).status_code == 422
    assert fhir.post("/Patient", json=patient("a")).status_code == 201
    # The ValueSet changes: the next check sees the new version.
    value_set["compose"]["include"][0]["concept"].append({"code": "b"})  # type: ignore[index]
    updated = fhir.put(
        f"/ValueSet/{created.json()['id']}", json={**value_set, "id": created.json()["id"]}
    )
    assert updated.status_code == 200, updated.text
    assert errors(fhir.post("/Patient/$validate", json=patient("b")).json()) == []
    assert fhir.post("/Patient", json=patient("b")).status_code == 201


def test_odd_input_is_never_a_server_error(fhir: httpx.Client) -> None:
    odd: list[tuple[str, object]] = [
        ("/Patient/$validate?profile=%7C%7C", {"resourceType": "Patient"}),
        ("/Patient/$validate", {"resourceType": "Patient", "meta": {"profile": "not-a-list"}}),
        ("/Patient/$validate", {"resourceType": "Patient", "meta": {"profile": [1, None, "|"]}}),
        ("/Patient/$validate", {"resourceType": "Observation", "status": "final"}),
        ("/QuestionnaireResponse/$validate", {"resourceType": "QuestionnaireResponse"}),
        (
            "/QuestionnaireResponse/$validate",
            {"resourceType": "QuestionnaireResponse", "questionnaire": "#x", "item": "many"},
        ),
        (
            "/QuestionnaireResponse/$validate",
            {
                "resourceType": "QuestionnaireResponse",
                "questionnaire": "http://selfback.example.org/fhir/Questionnaire/x|,$\\",
                "status": "completed",
            },
        ),
        ("/Patient/$validate", {"resourceType": "Parameters", "parameter": [{"name": "mode"}]}),
        ("/Patient/$validate", {"resourceType": "Parameters", "parameter": [{"name": "resource"}]}),
    ]
    for url, body in odd:
        answer = fhir.post(url, json=body)
        assert answer.status_code < 500, (url, body, answer.text)
        assert answer.json()["resourceType"] == "OperationOutcome"
