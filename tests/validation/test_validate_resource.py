"""validate_resource: structural FHIR R4 validation, one case per rule (no reference data)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from fhir_server.errors import FhirError
from fhir_server.validation import known_resource_type, model_class, validate_resource

OBS: dict[str, Any] = {
    "resourceType": "Observation",
    "status": "final",
    "code": {"text": "steps"},
}


def obs(**elements: Any) -> dict[str, Any]:
    return {**OBS, **elements}


def patient(**elements: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", **elements}


def ext(**value: Any) -> dict[str, Any]:
    return {"url": "http://example.org/x", **value}


def refusal(resource: object, **kwargs: Any) -> FhirError:
    with pytest.raises(FhirError) as caught:
        validate_resource(resource, **kwargs)
    return caught.value


def expressions(error: FhirError) -> list[str]:
    return [e for issue in error.issues for e in issue.expression]


# --- valid R4 content is accepted and returned untouched -------------------------------------

VALID = {
    "minimal resource": patient(),
    "id at the 64-character limit": patient(id="a" * 64),
    "id with dots and dashes": patient(id="A-1.b"),
    "string keeps surrounding whitespace (datatypes.html#string)": patient(
        name=[{"family": " van Dijk "}]
    ),
    "code with one inner space": patient(gender="male", language="en US"),
    "primitive extension aligned with null placeholder": patient(
        name=[{"given": [None, "B"], "_given": [{"extension": [ext(valueString="x")]}, None]}]
    ),
    "primitive with only an extension": patient(
        _birthDate={"extension": [ext(valueCode="unknown")]}
    ),
    "decimal as JSON number": obs(valueQuantity={"value": 72.5, "unit": "kg"}),
    "integer decimal as JSON number": obs(valueQuantity={"value": 3}),
    "choice type valueInteger": obs(valueInteger=5),
    "XHTML narrative": patient(
        text={"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">x</div>'}
    ),
    "contained resource": patient(
        contained=[{"resourceType": "Organization", "id": "org1", "name": "Clinic"}],
        managingOrganization={"reference": "#org1"},
    ),
    "R4 Extension.valueMeta (absent from R4B)": patient(
        extension=[ext(valueMeta={"versionId": "1"})]
    ),
    "R4 Extension._valueString (refused by the R4B model)": patient(
        extension=[ext(valueString="a", _valueString={"extension": [ext(valueCode="b")]})]
    ),
    "R4 uuid that is not version 4": {
        "resourceType": "Parameters",
        "parameter": [{"name": "u", "valueUuid": "urn:uuid:c757873d-ec9a-1b3a-8e3f-1f0f4a9f3e2c"}],
    },
    "element named resourceType inside a backbone element": {
        "resourceType": "ExampleScenario",
        "status": "draft",
        "instance": [{"resourceId": "p", "resourceType": "Patient"}],
    },
}


@pytest.mark.parametrize("resource", VALID.values(), ids=VALID.keys())
def test_valid_r4_resource_is_returned_unchanged(resource: dict[str, Any]) -> None:
    before = copy.deepcopy(resource)
    assert validate_resource(resource) is resource
    assert resource == before


# --- refusals: (resource, status, issue code, FHIRPath expression) ---------------------------

INVALID = {
    # resource.html: the id rule [A-Za-z0-9\-\.]{1,64}
    "id with a space": (patient(id="a b"), "value", "Patient.id"),
    "id longer than 64": (patient(id="a" * 65), "value", "Patient.id"),
    "empty id": (patient(id=""), "value", "Patient.id"),
    "contained resource id": (
        patient(contained=[{"resourceType": "Organization", "id": "x_y"}]),
        "value",
        "Patient.contained[0].id",
    ),
    "contained resource of unknown type": (
        patient(contained=[{"resourceType": "Nope"}]),
        "not-supported",
        "Patient.contained[0]",
    ),
    # json.html#2.6.2: no empty objects, arrays, strings; null only as an array placeholder
    "empty object": (patient(name=[{}]), "structure", "Patient.name[0]"),
    "empty array": (patient(name=[]), "structure", "Patient.name"),
    "empty string": (patient(name=[{"family": ""}]), "value", "Patient.name[0].family"),
    "null value": (patient(gender=None), "structure", "Patient.gender"),
    "null without a twin": (
        patient(name=[{"given": [None]}]),
        "structure",
        "Patient.name[0].given[0]",
    ),
    "null in a complex array": (patient(name=[None]), "structure", "Patient.name[0]"),
    "twin arrays of different length": (
        patient(name=[{"given": ["a", "b"], "_given": [{"id": "x"}]}]),
        "structure",
        "Patient.name[0].given",
    ),
    "array for a single element": (patient(gender=["male"]), "structure", "Patient.gender"),
    "object for a repeating element": (patient(name={"family": "x"}), "structure", "Patient.name"),
    # json.html: JSON types of primitives (the model would coerce these)
    "boolean as string": (patient(active="true"), "value", "Patient.active"),
    "boolean as number": (patient(active=1), "value", "Patient.active"),
    "integer as string": (
        patient(multipleBirthInteger="2"),
        "value",
        "Patient.multipleBirthInteger",
    ),
    "integer as boolean": (obs(valueInteger=True), "value", "Observation.valueInteger"),
    "integer with a fraction": (obs(valueInteger=1.5), "value", "Observation.valueInteger"),
    "decimal as string": (
        obs(valueQuantity={"value": "1.0"}),
        "value",
        "Observation.valueQuantity.value",
    ),
    "string as number": (patient(name=[{"given": ["a", 5]}]), "value", "Patient.name[0].given[1]"),
    # datatypes.html regexes: whitespace rules
    "code with leading space": (patient(gender=" male"), "value", "Patient.gender"),
    "code with double space": (patient(language="en  US"), "value", "Patient.language"),
    "uri with a space": (patient(implicitRules="http://a b"), "value", "Patient.implicitRules"),
    "uppercase uuid": (
        {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "u", "valueUuid": "urn:uuid:C757873D-EC9A-1B3A-8E3F-1F0F4A9F3E2C"}
            ],
        },
        "value",
        "Parameters.parameter[0].valueUuid",
    ),
    "dateTime with time but no zone": (
        obs(effectiveDateTime="2020-01-01T10:00:00"),
        "value",
        "Observation.effectiveDateTime",
    ),
    "base64 with bad characters": (
        {"resourceType": "Binary", "contentType": "text/plain", "data": "@@@@"},
        "value",
        "Binary.data",
    ),
    "narrative not an XHTML div": (
        patient(text={"status": "generated", "div": "<p>x</p>"}),
        "value",
        "Patient.text.div",
    ),
    # element names: FHIR R4 names only
    "unknown element": (patient(foo=1), "structure", "Patient.foo"),
    "python field name class_fhir": (
        {"resourceType": "Encounter", "status": "planned", "class_fhir": {"code": "x"}},
        "structure",
        "Encounter.class_fhir",
    ),
    "python field name given__ext": (
        patient(name=[{"given": ["a"], "given__ext": [{"id": "x"}]}]),
        "structure",
        "Patient.name[0].given__ext",
    ),
    "DSTU2 fhir_comments": (patient(fhir_comments=["x"]), "structure", "Patient.fhir_comments"),
    "R4B-only Extension.valueRatioRange": (
        patient(extension=[ext(valueRatioRange={"denominator": {"value": 1}})]),
        "structure",
        "Patient.extension[0].valueRatioRange",
    ),
    "R4B-only PlanDefinition.subjectCanonical": (
        {"resourceType": "PlanDefinition", "status": "draft", "subjectCanonical": "http://x"},
        "structure",
        "PlanDefinition.subjectCanonical",
    ),
    # errors found by the R4B model, reported as FHIRPath
    "missing required element": (
        {"resourceType": "Observation", "code": {"text": "x"}},
        "required",
        "Observation.status",
    ),
    "missing required complex element (Encounter.class)": (
        {"resourceType": "Encounter", "status": "planned"},
        "required",
        "Encounter.class",
    ),
    "missing required element in a backbone": (
        patient(link=[{"type": "seealso"}]),
        "required",
        "Patient.link[0].other",
    ),
    "impossible date": (patient(birthDate="2020-02-30"), "value", "Patient.birthDate"),
    "two choices of one element": (
        patient(deceasedBoolean=True, deceasedDateTime="2020"),
        "invariant",
        "Patient",
    ),
    "primitive extension id of wrong type": (
        patient(name=[{"given": ["a", "b"], "_given": [None, {"id": 3}]}]),
        "value",
        "Patient.name[0].given[1].id",
    ),
    "error inside a contained resource": (
        patient(contained=[{"resourceType": "Observation", "code": {"text": "x"}}]),
        "required",
        "Patient.contained[0].status",
    ),
    "R4 valueMeta content is validated": (
        patient(extension=[ext(valueMeta={"lastUpdated": "yesterday"})]),
        "value",
        "Patient.extension[0].valueMeta.lastUpdated",
    ),
}


@pytest.mark.parametrize(("resource", "code", "expression"), INVALID.values(), ids=INVALID.keys())
def test_structural_failure_is_400_with_fhirpath_location(
    resource: dict[str, Any], code: str, expression: str
) -> None:
    error = refusal(resource)
    assert error.status == 400  # http.html: "failed basic FHIR validation rules"
    assert (code, expression) in [(i.code, e) for i in error.issues for e in i.expression], (
        error.issues
    )
    assert all(i.severity == "error" and i.diagnostics for i in error.issues)


def test_every_problem_is_reported_once() -> None:
    error = refusal(patient(id="a b", active="yes", gender=" x", name=[{"given": [5]}]))
    assert sorted(expressions(error)) == [
        "Patient.active",
        "Patient.gender",
        "Patient.id",
        "Patient.name[0].given[0]",
    ]


@pytest.mark.parametrize(
    ("resource", "code"),
    [
        ([], "structure"),
        ("Patient", "structure"),
        ({"name": []}, "structure"),
        ({"resourceType": 5}, "structure"),
        ({"resourceType": "Foo"}, "not-supported"),
        ({"resourceType": "HumanName"}, "not-supported"),  # a datatype, not a resource
        ({"resourceType": "DomainResource"}, "not-supported"),  # abstract
        ({"resourceType": "SubscriptionTopic"}, "not-supported"),  # R4B only
        ({"resourceType": "Evidence"}, "not-supported"),  # restructured in R4B
        ({"resourceType": "MedicinalProduct"}, "not-supported"),  # R4 only, no model
    ],
    ids=[
        "array",
        "string",
        "no resourceType",
        "resourceType not a string",
        "unknown type",
        "datatype name",
        "abstract type",
        "R4B-only type",
        "restructured type",
        "R4-only type",
    ],
)
def test_not_a_known_resource_is_400(resource: object, code: str) -> None:
    error = refusal(resource)
    assert error.status == 400
    assert error.issues[0].code == code


def test_expected_type_mismatch_is_400_on_resource_type() -> None:
    error = refusal(patient(), expected_type="Observation")
    assert error.status == 400
    assert expressions(error) == ["resourceType"]


def test_expected_type_match_passes() -> None:
    assert validate_resource(patient(), expected_type="Patient")["resourceType"] == "Patient"


def test_input_with_r4_only_content_is_not_mutated() -> None:
    resource = patient(
        extension=[
            ext(valueMeta={"versionId": "1"}),
            ext(valueUuid="urn:uuid:" + "0" * 8 + "-0000-1000-8000-" + "0" * 12),
        ]
    )
    before = copy.deepcopy(resource)
    validate_resource(resource)
    assert resource == before


def test_model_class_is_cached_and_typed() -> None:
    assert model_class("Patient") is model_class("Patient")
    assert model_class("Patient").__name__ == "Patient"
    assert known_resource_type("Observation")
    assert not known_resource_type("Citation")
