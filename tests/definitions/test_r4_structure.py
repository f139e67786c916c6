"""R4 structure metadata: element lookup through backbones, datatypes and choices."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

import fhir_server.definitions as definitions
from fhir_server.definitions import element_info

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT / ".." / "shared"
R4_DEFINITIONS = SHARED / "fhir-r4" / "definitions"


@pytest.mark.parametrize(
    ("type_name", "path", "definition_path", "types", "is_array", "minimum"),
    [
        # Backbone elements are defined inside the resource.
        ("Patient", "Patient.contact.name", "Patient.contact.name", ("HumanName",), False, 0),
        # Without the type prefix the path means the same.
        ("Patient", "contact.name", "Patient.contact.name", ("HumanName",), False, 0),
        # Through a datatype into the datatype's own definition.
        ("Observation", "Observation.code.coding.system", "Coding.system", ("uri",), False, 0),
        ("Observation", "Observation.code.coding", "CodeableConcept.coding", ("Coding",), True, 0),
        # A choice by its typed name is narrowed to that type (formats.html#choice).
        (
            "Observation",
            "Observation.valueQuantity",
            "Observation.value[x]",
            ("Quantity",),
            False,
            0,
        ),
        ("Observation", "valueQuantity.value", "Quantity.value", ("decimal",), False, 0),
        # contentReference: Questionnaire.item.item reuses Questionnaire.item.
        (
            "Questionnaire",
            "Questionnaire.item.item.linkId",
            "Questionnaire.item.linkId",
            ("string",),
            False,
            1,
        ),
        # Extensions on extensions, and mandatory Extension.url.
        ("Extension", "Extension.extension.url", "Extension.url", ("uri",), False, 1),
        ("Bundle", "Bundle.entry.resource", "Bundle.entry.resource", ("Resource",), False, 0),
        ("Observation", "Observation.status", "Observation.status", ("code",), False, 1),
    ],
)
def test_element_info_resolves_paths(
    type_name: str,
    path: str,
    definition_path: str,
    types: tuple[str, ...],
    is_array: bool,
    minimum: int,
) -> None:
    info = element_info(type_name, path)
    assert info is not None
    assert (info.path, info.types, info.is_array, info.min) == (
        definition_path,
        types,
        is_array,
        minimum,
    )


def test_unresolved_choice_lists_every_allowed_type() -> None:
    info = element_info("Observation", "Observation.value[x]")
    assert info is not None
    assert info.is_choice
    assert {"Quantity", "CodeableConcept", "string", "boolean", "integer", "Period"} <= set(
        info.types
    )


@pytest.mark.parametrize(
    ("type_name", "path"),
    [
        ("Patient", "Patient.nope"),
        ("Patient", "Patient.contact.nope"),
        ("Observation", "Observation.valueFoo"),  # not one of value[x]'s types
        ("Observation", "Observation.value.unit"),  # cannot descend into an open choice
        ("NoSuchType", "NoSuchType.id"),
        ("Patient", "Patient..name"),
    ],
)
def test_element_info_unknown_paths_are_none(type_name: str, path: str) -> None:
    assert element_info(type_name, path) is None


@pytest.mark.parametrize(
    ("type_name", "path", "is_summary", "is_modifier"),
    [
        ("Patient", "Patient.active", True, True),
        ("Patient", "Patient.photo", False, False),
        ("Observation", "Observation.status", True, True),
        ("Patient", "Patient.name", True, False),
        ("Patient", "Patient.text", False, False),
    ],
)
def test_summary_and_modifier_flags(
    type_name: str, path: str, is_summary: bool, is_modifier: bool
) -> None:
    info = element_info(type_name, path)
    assert info is not None
    assert (info.is_summary, info.is_modifier) == (is_summary, is_modifier)


def test_xml_attribute_representation() -> None:
    # FHIR R4 xml.html: Element.id and Extension.url are attributes; Resource.id is not.
    assert element_info("Patient", "Patient.name.id").is_xml_attribute  # type: ignore[union-attr]
    assert element_info("Extension", "Extension.url").is_xml_attribute  # type: ignore[union-attr]
    assert not element_info("Patient", "Patient.id").is_xml_attribute  # type: ignore[union-attr]


def test_served_types_are_r4_types_known_to_r4b() -> None:
    from fhir.resources.R4B import get_fhir_model_class

    served = definitions.R4_RESOURCE_TYPES
    assert {"Patient", "Observation", "Questionnaire", "Bundle", "CarePlan", "Binary"} <= served
    # FHIR R4 has 146 concrete resource types; 18 of them have no R4B model.
    assert len(definitions.ALL_R4_RESOURCE_TYPES) == 146
    assert served < definitions.ALL_R4_RESOURCE_TYPES
    assert "MedicinalProduct" not in served
    for name in served:
        assert get_fhir_model_class(name).__name__ == name
    from fhir_server.definitions.generate import RESTRUCTURED_IN_R4B

    # Evidence and EvidenceVariable have R4B models, but of another shape: not served.
    assert RESTRUCTURED_IN_R4B.isdisjoint(served)
    for name in definitions.ALL_R4_RESOURCE_TYPES - served - RESTRUCTURED_IN_R4B:
        with pytest.raises(ValueError):
            get_fhir_model_class(name)


def test_data_file_records_provenance() -> None:
    provenance = definitions.PROVENANCE
    assert provenance["fhirVersion"] == "4.0.1"
    assert [s["file"] for s in provenance["sources"]] == [
        "profiles-resources.json.gz",
        "profiles-types.json",
    ]
    # The SHA-256 of Bundle-resources.json the definitions README publishes.
    assert provenance["sources"][0]["sha256"].startswith("d062516a4202")


def test_element_order_follows_the_structure_definition() -> None:
    names = [c.name for c in definitions.child_elements(definitions.root_element("Patient"))]  # type: ignore[arg-type]
    assert names[:9] == [
        "id",
        "meta",
        "implicitRules",
        "language",
        "text",
        "contained",
        "extension",
        "modifierExtension",
        "identifier",
    ]
    assert names.index("birthDate") < names.index("deceased[x]") < names.index("address")


@pytest.mark.conformance
@pytest.mark.skipif(not SHARED.exists(), reason="../shared reference data is absent")
def test_committed_data_file_matches_a_fresh_generation() -> None:
    from fhir_server.definitions.generate import build_structure

    fresh = build_structure(R4_DEFINITIONS)
    with gzip.open(definitions.DATA_FILE, "rb") as fh:
        committed = json.load(fh)
    assert committed == fresh


@pytest.mark.conformance
@pytest.mark.skipif(not SHARED.exists(), reason="../shared reference data is absent")
def test_committed_differences_report_is_current() -> None:
    from fhir_server.definitions.generate import build_structure, differences_report

    report = differences_report(build_structure(R4_DEFINITIONS))
    assert (ROOT / "docs" / "R4-R4B-DIFFERENCES.md").read_text() == report
    # Known R4/R4B divergences the report must show: R4B added subjectCanonical, and the
    # restructured evidence resources are listed as not served.
    assert "subjectCanonical" in report
    assert "EvidenceVariable" in report
    assert "`ActivityDefinition.subjectCanonical`" in report
