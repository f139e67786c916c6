"""Snapshot generation from a differential (FHIR R4 profiling.html#snapshot), on small bases."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from profiles.snapshot import SnapshotError, generate_snapshot

CORE = "http://hl7.org/fhir/StructureDefinition/"


def _element(path: str, minimum: int, maximum: str, *types: str, **extra: Any) -> dict[str, Any]:
    element: dict[str, Any] = {
        "id": path,
        "path": path,
        "min": minimum,
        "max": maximum,
        "base": {"path": path, "min": minimum, "max": maximum},
    }
    if types:
        element["type"] = [{"code": t} for t in types]
    element.update(extra)
    return element


def _definition(name: str, kind: str, *elements: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "StructureDefinition",
        "url": CORE + name,
        "name": name,
        "type": name,
        "kind": kind,
        "derivation": "specialization",
        "snapshot": {"element": [_element(name, 0, "*"), *elements]},
    }


BASES = {
    CORE + "Patient": _definition(
        "Patient",
        "resource",
        _element("Patient.identifier", 0, "*", "Identifier"),
        _element(
            "Patient.gender",
            0,
            "1",
            "code",
            binding={
                "strength": "required",
                "valueSet": "http://hl7.org/fhir/ValueSet/administrative-gender",
            },
        ),
        _element(
            "Patient.contact",
            0,
            "*",
            "BackboneElement",
            constraint=[{"key": "pat-1", "severity": "error", "human": "h", "expression": "e"}],
        ),
        _element("Patient.contact.name", 0, "1", "HumanName"),
        _element("Patient.contact.gender", 0, "1", "code"),
        _element("Patient.deceased[x]", 0, "1", "boolean", "dateTime"),
        _element("Patient.link", 0, "*", "BackboneElement"),
        _element("Patient.link.other", 1, "1", "Reference"),
    ),
    CORE + "Identifier": _definition(
        "Identifier",
        "complex-type",
        _element("Identifier.system", 0, "1", "uri"),
        _element("Identifier.value", 0, "1", "string"),
    ),
    CORE + "Observation": _definition(
        "Observation",
        "resource",
        _element("Observation.value[x]", 0, "1", "Quantity", "string"),
    ),
    CORE + "Quantity": _definition(
        "Quantity",
        "complex-type",
        _element("Quantity.value", 0, "1", "decimal"),
        _element("Quantity.code", 0, "1", "code"),
    ),
}


def _resolve(url: str) -> dict[str, Any] | None:
    return BASES.get(url)


def _profile(type_name: str, *differential: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "StructureDefinition",
        "url": "http://selfback.example.org/fhir/StructureDefinition/test",
        "name": "Test",
        "type": type_name,
        "kind": "resource",
        "derivation": "constraint",
        "baseDefinition": CORE + type_name,
        "differential": {"element": list(differential)},
    }


def _snapshot(profile: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["id"]: e for e in generate_snapshot(profile, _resolve)["snapshot"]["element"]}


def test_a_constrained_element_keeps_what_the_differential_does_not_change():
    snapshot = _snapshot(
        _profile("Patient", {"id": "Patient.gender", "path": "Patient.gender", "min": 1})
    )
    assert snapshot["Patient.gender"]["min"] == 1
    assert snapshot["Patient.gender"]["binding"]["strength"] == "required"
    assert snapshot["Patient.gender"]["base"] == {"path": "Patient.gender", "min": 0, "max": "1"}


def test_a_slice_is_added_after_the_sliced_element_with_its_datatype_unfolded():
    ids = list(
        _snapshot(
            _profile(
                "Patient",
                {
                    "id": "Patient.identifier",
                    "path": "Patient.identifier",
                    "slicing": {
                        "discriminator": [{"type": "value", "path": "system"}],
                        "rules": "open",
                    },
                },
                {
                    "id": "Patient.identifier:nhs",
                    "path": "Patient.identifier",
                    "sliceName": "nhs",
                    "max": "1",
                },
                {
                    "id": "Patient.identifier:nhs.system",
                    "path": "Patient.identifier.system",
                    "min": 1,
                    "fixedUri": "https://fhir.nhs.uk/Id/nhs-number",
                },
            )
        )
    )
    assert ids[1:5] == [
        "Patient.identifier",
        "Patient.identifier:nhs",
        "Patient.identifier:nhs.system",
        "Patient.identifier:nhs.value",
    ]


def test_unfolded_children_have_the_profile_paths_and_their_own_bases():
    snapshot = _snapshot(
        _profile(
            "Patient",
            {
                "id": "Patient.identifier",
                "path": "Patient.identifier",
                "slicing": {
                    "discriminator": [{"type": "value", "path": "system"}],
                    "rules": "open",
                },
            },
            {"id": "Patient.identifier:nhs", "path": "Patient.identifier", "sliceName": "nhs"},
            {
                "id": "Patient.identifier:nhs.system",
                "path": "Patient.identifier.system",
                "fixedUri": "https://fhir.nhs.uk/Id/nhs-number",
            },
        )
    )
    system = snapshot["Patient.identifier:nhs.system"]
    assert system["path"] == "Patient.identifier.system"
    assert system["fixedUri"] == "https://fhir.nhs.uk/Id/nhs-number"
    assert system["base"]["path"] == "Identifier.system"
    assert snapshot["Patient.identifier:nhs"]["sliceName"] == "nhs"
    assert "slicing" not in snapshot["Patient.identifier:nhs"]


def test_a_slice_of_a_backbone_element_copies_the_backbone_children():
    snapshot = _snapshot(
        _profile(
            "Patient",
            {
                "id": "Patient.contact",
                "path": "Patient.contact",
                "slicing": {"discriminator": [{"type": "exists", "path": "name"}], "rules": "open"},
            },
            {"id": "Patient.contact:named", "path": "Patient.contact", "sliceName": "named"},
            {"id": "Patient.contact:named.name", "path": "Patient.contact.name", "min": 1},
        )
    )
    assert snapshot["Patient.contact:named.name"]["min"] == 1
    assert snapshot["Patient.contact:named.gender"]["path"] == "Patient.contact.gender"
    assert snapshot["Patient.contact.name"]["min"] == 0  # the sliced element is unchanged


def test_a_choice_restricted_to_one_type_can_constrain_that_types_children():
    snapshot = _snapshot(
        _profile(
            "Observation",
            {
                "id": "Observation.value[x]",
                "path": "Observation.value[x]",
                "type": [{"code": "Quantity"}],
            },
            {
                "id": "Observation.value[x].code",
                "path": "Observation.value[x].code",
                "min": 1,
                "fixedCode": "/d",
            },
        )
    )
    assert [t["code"] for t in snapshot["Observation.value[x]"]["type"]] == ["Quantity"]
    assert snapshot["Observation.value[x].code"]["fixedCode"] == "/d"
    assert snapshot["Observation.value[x].value"]["base"]["path"] == "Quantity.value"


def test_constraints_accumulate_and_other_properties_replace():
    snapshot = _snapshot(
        _profile(
            "Patient",
            {
                "id": "Patient.contact",
                "path": "Patient.contact",
                "short": "new",
                "constraint": [
                    {"key": "x-1", "severity": "error", "human": "h", "expression": "true"}
                ],
            },
        )
    )
    assert [c["key"] for c in snapshot["Patient.contact"]["constraint"]] == ["pat-1", "x-1"]
    assert snapshot["Patient.contact"]["short"] == "new"


def test_a_new_fixed_value_replaces_an_earlier_pattern():
    snapshot = _snapshot(
        _profile(
            "Patient",
            {"id": "Patient.gender", "path": "Patient.gender", "patternCode": "female"},
        )
    )
    assert snapshot["Patient.gender"]["patternCode"] == "female"


def test_the_base_is_not_changed():
    before = copy.deepcopy(BASES)
    _snapshot(
        _profile(
            "Patient",
            {
                "id": "Patient.identifier",
                "path": "Patient.identifier",
                "slicing": {
                    "discriminator": [{"type": "value", "path": "system"}],
                    "rules": "open",
                },
            },
            {"id": "Patient.identifier:nhs", "path": "Patient.identifier", "sliceName": "nhs"},
            {"id": "Patient.identifier:nhs.system", "path": "Patient.identifier.system", "min": 1},
        )
    )
    assert before == BASES


def test_an_element_given_by_path_and_slice_name_only():
    snapshot = _snapshot(
        _profile(
            "Patient",
            {
                "path": "Patient.identifier",
                "slicing": {
                    "discriminator": [{"type": "value", "path": "system"}],
                    "rules": "open",
                },
            },
            {"path": "Patient.identifier", "sliceName": "nhs", "max": "1"},
        )
    )
    assert snapshot["Patient.identifier:nhs"]["max"] == "1"


REFUSED = [
    (
        "min below the base",
        {"id": "Patient.link.other", "path": "Patient.link.other", "min": 0},
        "below the base",
    ),
    (
        "max above the base",
        {"id": "Patient.gender", "path": "Patient.gender", "max": "*"},
        "exceeds the base",
    ),
    (
        "type the base does not allow",
        {"id": "Patient.deceased[x]", "path": "Patient.deceased[x]", "type": [{"code": "string"}]},
        "not allowed by the base",
    ),
    (
        "required binding weakened",
        {
            "id": "Patient.gender",
            "path": "Patient.gender",
            "binding": {"strength": "extensible", "valueSet": "http://x.org/vs"},
        },
        "cannot be weakened",
    ),
    (
        "slice of an element that is not sliced",
        {"id": "Patient.identifier:nhs", "path": "Patient.identifier", "sliceName": "nhs"},
        "is not sliced",
    ),
    (
        "element that does not exist",
        {"id": "Patient.shoeSize", "path": "Patient.shoeSize"},
        "no such element",
    ),
    (
        "child of a choice of several types",
        {"id": "Patient.deceased[x].value", "path": "Patient.deceased[x].value"},
        "one type",
    ),
    ("id and path disagree", {"id": "Patient.gender", "path": "Patient.birthDate"}, "disagree"),
]


@pytest.mark.parametrize(("name", "element", "message"), REFUSED, ids=[r[0] for r in REFUSED])
def test_differentials_that_cannot_be_laid_over_the_base_are_refused(name, element, message):
    with pytest.raises(SnapshotError, match=message):
        generate_snapshot(_profile("Patient", element), _resolve)


def test_a_profile_needs_its_base():
    profile = _profile("Patient") | {"baseDefinition": "http://x.org/StructureDefinition/none"}
    with pytest.raises(SnapshotError, match="not available"):
        generate_snapshot(profile, _resolve)


def test_a_profile_keeps_the_type_of_its_base():
    profile = _profile("Patient") | {"type": "Observation"}
    with pytest.raises(SnapshotError, match="differs"):
        generate_snapshot(profile, _resolve)
