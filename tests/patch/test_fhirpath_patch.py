"""apply_fhirpath_patch: FHIRPath Patch (R4 fhirpatch.html), one case per rule."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from fhir_server.errors import FhirError
from fhir_server.patch import apply_fhirpath_patch
from fhir_server.patch.fhirpath_location import evaluate_locations

PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "p1",
    "birthDate": "1970-01-01",
    "identifier": [
        {"system": "http://a", "value": "1"},
        {"system": "http://b", "value": "2"},
        {"system": "http://b", "value": "3"},
    ],
    "name": [
        {"use": "official", "family": "Smith", "given": ["Ann", "Bea"]},
        {"use": "usual", "given": ["Annie"]},
    ],
    "extension": [
        {"url": "http://x/birthPlace", "valueAddress": {"city": "Leeds"}},
        {"url": "http://x/nick", "valueString": "A"},
    ],
}

OBSERVATION: dict[str, Any] = {
    "resourceType": "Observation",
    "id": "o1",
    "status": "final",
    "code": {"text": "weight"},
    "valueQuantity": {"value": 70, "unit": "kg"},
}


def operation(type_: str, path: str, **parts: Any) -> dict[str, Any]:
    """One operation parameter; value parts are given as {"valueX": ...} or {"part": [...]}."""
    built: list[dict[str, Any]] = [
        {"name": "type", "valueCode": type_},
        {"name": "path", "valueString": path},
    ]
    for name, value in parts.items():
        if name == "name":
            built.append({"name": "name", "valueString": value})
        elif name in ("index", "source", "destination"):
            built.append({"name": name, "valueInteger": value})
        else:
            built.append({"name": "value", **value})
    return {"name": "operation", "part": built}


def patch(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": list(operations)}


def applied(resource: dict[str, Any], *operations: dict[str, Any]) -> dict[str, Any]:
    before = copy.deepcopy(resource)
    result = apply_fhirpath_patch(resource, patch(*operations))
    assert resource == before  # the input is never mutated
    return result


# --- the spec's examples (fhirpatch.html), in our own words ----------------------------------


def test_spec_example_add_a_birth_date() -> None:
    resource = {k: v for k, v in PATIENT.items() if k != "birthDate"}
    result = applied(
        resource, operation("add", "Patient", name="birthDate", value={"valueDate": "1930-01-01"})
    )
    assert result["birthDate"] == "1930-01-01"


def test_spec_example_insert_an_identifier_first() -> None:
    new = {"system": "http://c", "value": "0"}
    result = applied(
        PATIENT, operation("insert", "Patient.identifier", index=0, value={"valueIdentifier": new})
    )
    assert result["identifier"][0] == new and len(result["identifier"]) == 4


def test_spec_example_delete_the_birth_date() -> None:
    assert "birthDate" not in applied(PATIENT, operation("delete", "Patient.birthDate"))


def test_spec_example_replace_the_birth_date() -> None:
    result = applied(
        PATIENT, operation("replace", "Patient.birthDate", value={"valueDate": "1930-01-01"})
    )
    assert result["birthDate"] == "1930-01-01"


def test_spec_example_move_an_identifier() -> None:
    result = applied(PATIENT, operation("move", "Patient.identifier", source=0, destination=2))
    assert [i["value"] for i in result["identifier"]] == ["2", "3", "1"]


def test_spec_example_add_an_anonymous_type_from_parts() -> None:
    contact = {
        "part": [
            {"name": "name", "valueHumanName": {"text": "Bob"}},
            {"name": "telecom", "valueContactPoint": {"system": "phone", "value": "555"}},
            {"name": "gender", "valueCode": "male"},
        ]
    }
    result = applied(PATIENT, operation("add", "Patient", name="contact", value=contact))
    # Patient.contact repeats (so an array) and contact.telecom repeats; name does not.
    assert result["contact"] == [
        {
            "name": {"text": "Bob"},
            "telecom": [{"system": "phone", "value": "555"}],
            "gender": "male",
        }
    ]


# --- rules, table-driven: (resource, operation, check on the result) -------------------------

RULES = {
    "add to a repeating element appends": (
        PATIENT,
        operation("add", "Patient.name[1]", name="given", value={"valueString": "Ann-Marie"}),
        lambda r: r["name"][1]["given"] == ["Annie", "Ann-Marie"],
    ),
    "add to an absent repeating element creates the array": (
        PATIENT,
        operation("add", "Patient.name[1]", name="prefix", value={"valueString": "Dr"}),
        lambda r: r["name"][1]["prefix"] == ["Dr"],
    ),
    "add a complex datatype": (
        PATIENT,
        operation(
            "add", "Patient", name="maritalStatus", value={"valueCodeableConcept": {"text": "M"}}
        ),
        lambda r: r["maritalStatus"] == {"text": "M"},
    ),
    "add a choice element takes the value's type": (
        {**OBSERVATION, "component": [{"code": {"text": "c"}}]},
        operation("add", "Observation.component[0]", name="value", value={"valueString": "x"}),
        lambda r: r["component"][0]["valueString"] == "x",
    ),
    "where(use=...) selects the matching item": (
        PATIENT,
        operation(
            "replace", "Patient.name.where(use='usual').given[0]", value={"valueString": "An"}
        ),
        lambda r: r["name"][1]["given"] == ["An"] and r["name"][0]["given"] == ["Ann", "Bea"],
    ),
    "where with and": (
        PATIENT,
        operation("delete", "Patient.identifier.where(system='http://b' and value='3')"),
        lambda r: [i["value"] for i in r["identifier"]] == ["1", "2"],
    ),
    "where with or and parentheses": (
        PATIENT,
        operation("delete", "Patient.identifier.where((value='1' or value='9') and system!='x')"),
        lambda r: [i["value"] for i in r["identifier"]] == ["2", "3"],
    ),
    "first()": (
        PATIENT,
        operation("delete", "Patient.identifier.where(system='http://b').first()"),
        lambda r: [i["value"] for i in r["identifier"]] == ["1", "3"],
    ),
    "last()": (
        PATIENT,
        operation("delete", "Patient.name.last()"),
        lambda r: len(r["name"]) == 1 and r["name"][0]["use"] == "official",
    ),
    "extension('url')": (
        PATIENT,
        operation(
            "replace", "Patient.extension('http://x/nick').value", value={"valueString": "B"}
        ),
        lambda r: r["extension"][1] == {"url": "http://x/nick", "valueString": "B"},
    ),
    "extension.where(url=...)": (
        PATIENT,
        operation("delete", "Patient.extension.where(url='http://x/birthPlace')"),
        lambda r: [e["url"] for e in r["extension"]] == ["http://x/nick"],
    ),
    "choice element without its type (Observation.value)": (
        OBSERVATION,
        operation("replace", "Observation.value.value", value={"valueDecimal": 71.5}),
        lambda r: r["valueQuantity"] == {"value": 71.5, "unit": "kg"},
    ),
    "replace a choice with another type changes the key": (
        OBSERVATION,
        operation("replace", "Observation.value", value={"valueString": "heavy"}),
        lambda r: r["valueString"] == "heavy" and "valueQuantity" not in r,
    ),
    "ofType() on a choice": (
        OBSERVATION,
        operation("delete", "Observation.value.ofType(Quantity)"),
        lambda r: "valueQuantity" not in r,
    ),
    "delete of a path matching nothing is not an error": (
        PATIENT,
        operation("delete", "Patient.name.where(use='maiden')"),
        lambda r: r == PATIENT,
    ),
    "delete the last item removes the empty array": (
        {**PATIENT, "name": [{"family": "Solo"}]},
        operation("delete", "Patient.name[0]"),
        lambda r: "name" not in r,
    ),
    "delete a primitive also deletes its extension twin": (
        {**PATIENT, "_birthDate": {"extension": [{"url": "http://x", "valueString": "y"}]}},
        operation("delete", "Patient.birthDate"),
        lambda r: "birthDate" not in r and "_birthDate" not in r,
    ),
    "insert keeps a primitive array's twin aligned": (
        {**PATIENT, "name": [{"given": ["A", "B"], "_given": [None, {"id": "b"}]}]},
        operation("insert", "Patient.name[0].given", index=0, value={"valueString": "Z"}),
        lambda r: (
            r["name"][0]["given"] == ["Z", "A", "B"]
            and r["name"][0]["_given"] == [None, None, {"id": "b"}]
        ),
    ),
    "insert at the end (index equals count)": (
        PATIENT,
        operation(
            "insert", "Patient.identifier", index=3, value={"valueIdentifier": {"value": "4"}}
        ),
        lambda r: r["identifier"][3] == {"value": "4"},
    ),
    "move within a nested list": (
        PATIENT,
        operation("move", "Patient.name[0].given", source=1, destination=0),
        lambda r: r["name"][0]["given"] == ["Bea", "Ann"],
    ),
    "operations apply in order": (
        PATIENT,
        patch(
            operation("delete", "Patient.identifier[0]"),
            operation("replace", "Patient.identifier[0].value", value={"valueString": "two"}),
        )["parameter"],
        lambda r: [i["value"] for i in r["identifier"]] == ["two", "3"],
    ),
    "contained resource is typed by its resourceType": (
        {**PATIENT, "contained": [{"resourceType": "Organization", "id": "o"}]},
        operation("add", "Patient.contained[0]", name="alias", value={"valueString": "Org"}),
        lambda r: r["contained"][0]["alias"] == ["Org"],
    ),
}


@pytest.mark.parametrize(("resource", "ops", "check"), RULES.values(), ids=RULES.keys())
def test_fhirpath_patch_rule(resource: dict[str, Any], ops: Any, check: Any) -> None:
    result = applied(resource, *(ops if isinstance(ops, list) else [ops]))
    assert check(result), result


# --- refusals: (resource, parameters, status, expression) ------------------------------------

NOT_A_PATCH = {
    "not Parameters": {"resourceType": "Patient"},
    "no operations": {"resourceType": "Parameters"},
    "parameter not named operation": {"resourceType": "Parameters", "parameter": [{"name": "op"}]},
    "unknown operation type": patch(operation("merge", "Patient")),
    "add without name": patch(operation("add", "Patient", value={"valueString": "x"})),
    "insert without index": patch(operation("insert", "Patient.name", value={"valueString": "x"})),
    "move without destination": patch(operation("move", "Patient.name", source=0)),
    "negative index": patch(
        operation("insert", "Patient.name", index=-1, value={"valueHumanName": {}})
    ),
    "two values": patch(
        {
            "name": "operation",
            "part": [
                {"name": "type", "valueCode": "replace"},
                {"name": "path", "valueString": "Patient.birthDate"},
                {"name": "value", "valueDate": "2000", "valueString": "x"},
            ],
        }
    ),
    "unparseable path": patch(operation("delete", "Patient.name[")),
    "unsupported function resolve()": patch(
        operation("delete", "Patient.managingOrganization.resolve().name")
    ),
    "path for another resource type": patch(operation("delete", "Observation.status")),
}


@pytest.mark.parametrize("parameters", NOT_A_PATCH.values(), ids=NOT_A_PATCH.keys())
def test_malformed_patch_is_400(parameters: dict[str, Any]) -> None:
    with pytest.raises(FhirError) as caught:
        apply_fhirpath_patch(PATIENT, parameters)
    assert caught.value.status == 400


CANNOT_APPLY = {
    # fhirpatch.html: "The FHIRPath statement must return a single element"
    "replace matching nothing": operation("replace", "Patient.gender", value={"valueCode": "male"}),
    "replace matching several": operation(
        "replace", "Patient.identifier.value", value={"valueString": "x"}
    ),
    "delete matching several": operation("delete", "Patient.identifier.where(system='http://b')"),
    "add to a path matching several": operation(
        "add", "Patient.name", name="text", value={"valueString": "x"}
    ),
    "add to a path matching nothing": operation(
        "add", "Patient.contact", name="gender", value={"valueCode": "male"}
    ),
    "insert into a path matching nothing": operation(
        "insert", "Patient.telecom", index=0, value={"valueContactPoint": {}}
    ),
    "insert across several lists": operation(
        "insert", "Patient.name.given", index=0, value={"valueString": "x"}
    ),
    "insert beyond the end": operation(
        "insert", "Patient.identifier", index=4, value={"valueIdentifier": {}}
    ),
    "move from outside the list": operation("move", "Patient.identifier", source=3, destination=0),
    "move on a non-list": operation("move", "Patient.birthDate", source=0, destination=0),
    # add is for non-repeating elements "as long as they do not already exist"
    "add an existing single element": operation(
        "add", "Patient", name="birthDate", value={"valueDate": "2000"}
    ),
    # "The type of the value must be correct for the place"
    "wrong complex type": operation(
        "add", "Patient", name="name", value={"valueCodeableConcept": {"text": "x"}}
    ),
    "complex value for a primitive": operation(
        "replace", "Patient.birthDate", value={"valuePeriod": {}}
    ),
    "unknown element": operation("add", "Patient", name="nickname", value={"valueString": "x"}),
    "replace the resource itself": operation("replace", "Patient", value={"valueString": "x"}),
}


@pytest.mark.parametrize("op", CANNOT_APPLY.values(), ids=CANNOT_APPLY.keys())
def test_patch_that_cannot_be_applied_is_422_at_the_path(op: dict[str, Any]) -> None:
    before = copy.deepcopy(PATIENT)
    with pytest.raises(FhirError) as caught:
        apply_fhirpath_patch(PATIENT, patch(op))
    assert caught.value.status == 422
    path = op["part"][1]["valueString"]
    assert caught.value.issues[0].expression == (path,)
    assert before == PATIENT


@pytest.mark.parametrize(
    "op",
    [
        operation("replace", "Patient.id", value={"valueId": "p2"}),
        operation("delete", "Patient.id"),
    ],
    ids=["replace id", "delete id"],
)
def test_patch_may_not_change_the_id(op: dict[str, Any]) -> None:
    with pytest.raises(FhirError) as caught:
        apply_fhirpath_patch(PATIENT, patch(op))
    assert caught.value.status == 400


# --- the location evaluator ------------------------------------------------------------------


def test_locations_name_parent_key_and_index() -> None:
    (location,) = evaluate_locations(PATIENT, "Patient.name.where(use='official').given[1]")
    assert location.parent is PATIENT["name"][0]
    assert (location.key, location.index, location.value) == ("given", 1, "Bea")


def test_choice_location_keeps_the_element_name() -> None:
    (location,) = evaluate_locations(OBSERVATION, "Observation.value")
    assert (location.key, location.element, location.model.__name__) == (
        "valueQuantity",
        "value",
        "Quantity",
    )
