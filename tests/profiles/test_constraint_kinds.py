"""Every kind of constraint the validator checks, each on a small resource.

Each case names the rule it checks, the resource, and the (rule, severity, location) issues it
must produce; a case with no expected issue must produce no error at all.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

import profiles
from profiles import Issue, ValidationOptions
from tests.profiles.builders import (
    NARRATIVE,
    OBSERVATION_CATEGORY,
    UCUM,
    changed,
    daily_steps,
    patient,
    prom_score,
    weekly_careplan,
)

Expected = tuple[str, str, str]  # rule, severity, location


def _patient(**changes: Any) -> dict[str, Any]:
    base = {"resourceType": "Patient", "id": "p", "text": {"status": "generated", "div": NARRATIVE}}
    return changed(base, **changes)


def _observation(**changes: Any) -> dict[str, Any]:
    base = {
        "resourceType": "Observation",
        "id": "o",
        "text": {"status": "generated", "div": NARRATIVE},
        "status": "final",
        "code": {"text": "something observed"},
    }
    return changed(base, **changes)


def _found(issues: list[Issue]) -> set[Expected]:
    return {(i.rule, i.severity, i.expression[0] if i.expression else "") for i in issues}


def check(resource: dict[str, Any], expected: set[Expected], **kwargs: Any) -> list[Issue]:
    issues = profiles.validate(resource, **kwargs)
    found = _found(issues)
    assert expected <= found, f"missing {expected - found}; got {found}"
    if not expected:
        assert not [i for i in issues if i.is_error], issues
    return issues


CARDINALITY = [
    (
        "required element missing",
        _observation(code=None),
        {("cardinality", "error", "Observation")},
    ),
    (
        "required element of a backbone missing",
        _observation(component=[{"valueString": "x"}]),
        {("cardinality", "error", "Observation.component[0]")},
    ),
    (
        "profile raises a minimum",
        changed(daily_steps(), subject=None),
        {("cardinality", "error", "Observation")},
    ),
    (
        "profile lowers a maximum to zero",
        changed(daily_steps(), component=[{"code": {"text": "x"}}]),
        {("cardinality", "error", "Observation")},
    ),
    (
        "choice element counted once over its types",
        _observation(valueString="a", valueBoolean=True),
        {("cardinality", "error", "Observation")},
    ),
]


@pytest.mark.parametrize(
    ("name", "resource", "expected"), CARDINALITY, ids=[c[0] for c in CARDINALITY]
)
def test_cardinality(name, resource, expected):
    check(resource, expected)


def test_backbone_invariant_pat_1_is_reported_where_the_contact_is():
    issues = check(
        _patient(contact=[{"gender": "male"}]), {("pat-1", "error", "Patient.contact[0]")}
    )
    assert "pat-1" in issues[0].diagnostics


JSON_SHAPE = [
    ("unknown property", _patient(colour="blue"), {("json", "error", "Patient.colour")}),
    ("dstu2 comments", _patient(fhir_comments=["x"]), {("json", "error", "Patient.fhir_comments")}),
    (
        "repeating element as an object",
        _patient(name={"family": "X"}),
        {("json", "error", "Patient.name")},
    ),
    (
        "single element as an array",
        _patient(gender=["male"]),
        {("json", "error", "Patient.gender")},
    ),
    ("empty array", _patient(name=[]), {("empty-array", "error", "Patient.name")}),
    ("empty object", _patient(maritalStatus={}), {("ele-1", "error", "Patient.maritalStatus")}),
    (
        "object with only an id",
        _patient(maritalStatus={"id": "m"}),
        {("ele-1", "error", "Patient.maritalStatus")},
    ),
    ("null value", _patient(gender=None) | {"gender": None}, {("json", "error", "Patient.gender")}),
    (
        "primitive extension without value or extension",
        _patient(_birthDate={"id": "b"}),
        {("ele-1", "error", "Patient.birthDate")},
    ),
    (
        "null placeholder matched by the twin array",
        _patient(
            name=[
                {
                    "given": ["A", None],
                    "_given": [
                        None,
                        {
                            "extension": [
                                {
                                    "url": "http://hl7.org/fhir/StructureDefinition/iso21090-EN-qualifier",
                                    "valueCode": "IN",
                                }
                            ]
                        },
                    ],
                }
            ]
        ),
        set(),
    ),
    (
        "null placeholder without a partner",
        _patient(name=[{"given": ["A", None]}]),
        {("json", "error", "Patient.name[0].given[1]")},
    ),
    (
        "underscore on a complex element",
        _patient(_name=[{"id": "x"}]),
        {("json", "error", "Patient._name")},
    ),
    ("unknown resource type", {"resourceType": "Pateint"}, {("resource-type", "error", "Pateint")}),
]


@pytest.mark.parametrize(
    ("name", "resource", "expected"), JSON_SHAPE, ids=[c[0] for c in JSON_SHAPE]
)
def test_json_shape(name, resource, expected):
    check(resource, expected)


PRIMITIVES = [
    ("id of 64 characters", _patient(id="a" * 64), set()),
    ("id of 65 characters", _patient(id="a" * 65), {("primitive-format", "error", "Patient.id")}),
    ("id with an underscore", _patient(id="bad_id"), {("primitive-format", "error", "Patient.id")}),
    (
        "contained id checked too",
        _patient(
            contained=[{"resourceType": "Organization", "id": "o_1"}],
            managingOrganization={"reference": "#o_1"},
        ),
        {("primitive-format", "error", "Patient.contained[0].id")},
    ),
    ("string of 1 MB", _patient(name=[{"text": "x" * 1048576}]), set()),
    (
        "string over 1 MB",
        _patient(name=[{"text": "x" * 1048577}]),
        {("string-size", "error", "Patient.name[0].text")},
    ),
    (
        "string over 1 MB in UTF-8 bytes",
        _patient(name=[{"text": "\u00e6" * 524289}]),
        {("string-size", "error", "Patient.name[0].text")},
    ),
    (
        "empty string",
        _patient(name=[{"text": ""}]),
        {("empty-value", "error", "Patient.name[0].text")},
    ),
    (
        "string with surrounding whitespace",
        _patient(name=[{"text": " Anna "}]),
        {("string-whitespace", "warning", "Patient.name[0].text")},
    ),
    (
        "string with a control character",
        _patient(name=[{"text": "A\x07"}]),
        {("string-characters", "error", "Patient.name[0].text")},
    ),
    (
        "code with a double space",
        _patient(gender="fe  male"),
        {("primitive-format", "error", "Patient.gender")},
    ),
    (
        "uri with whitespace",
        _patient(implicitRules="http://x.org/a b"),
        {("primitive-format", "error", "Patient.implicitRules")},
    ),
    (
        "date that does not exist",
        _patient(birthDate="2023-02-29"),
        {("primitive-format", "error", "Patient.birthDate")},
    ),
    ("leap day", _patient(birthDate="2024-02-29"), set()),
    (
        "dateTime with a time but no zone",
        _observation(effectiveDateTime="2024-01-01T10:00:00"),
        {("primitive-format", "error", "Observation.effective.ofType(dateTime)")},
    ),
    ("boolean as a string", _patient(active="true"), {("json-type", "error", "Patient.active")}),
    (
        "integer as a string",
        _observation(valueInteger="3"),
        {("json-type", "error", "Observation.value.ofType(integer)")},
    ),
    (
        "integer beyond 32 bits",
        _observation(valueInteger=2**31),
        {("primitive-range", "error", "Observation.value.ofType(integer)")},
    ),
    ("positiveInt of zero", _patient(multipleBirthInteger=0) | {"resourceType": "Patient"}, set()),
    (
        "decimal as a string",
        _observation(valueQuantity={"value": "1.5"}),
        {("json-type", "error", "Observation.value.ofType(Quantity).value")},
    ),
    (
        "invalid base64",
        {"resourceType": "Binary", "contentType": "text/plain", "data": "%%%"},
        {("base64", "error", "Binary.data")},
    ),
    (
        "canonical that is relative",
        {"resourceType": "Questionnaire", "status": "draft", "derivedFrom": ["Questionnaire/q"]},
        {("canonical-absolute", "error", "Questionnaire.derivedFrom[0]")},
    ),
]


@pytest.mark.parametrize(
    ("name", "resource", "expected"), PRIMITIVES, ids=[c[0] for c in PRIMITIVES]
)
def test_primitive_rules(name, resource, expected):
    check(resource, expected)


CHOICE_TYPES = [
    ("allowed type", _observation(valueQuantity={"value": 1}), set()),
    (
        "type not in the base",
        _observation(valueAddress={"city": "X"}),
        {("type", "error", "Observation.valueAddress")},
    ),
    (
        "type the profile removes",
        changed(daily_steps(), valueQuantity=None, valueInteger=5),
        {("type", "error", "Observation.valueInteger")},
    ),
    (
        "period allowed by the profile",
        changed(
            daily_steps(),
            effectiveDateTime=None,
            effectivePeriod={"start": "2026-03-01T00:00:00Z", "end": "2026-03-02T00:00:00Z"},
        ),
        set(),
    ),
]


@pytest.mark.parametrize(
    ("name", "resource", "expected"), CHOICE_TYPES, ids=[c[0] for c in CHOICE_TYPES]
)
def test_types_and_choice_types(name, resource, expected):
    check(resource, expected)


def test_choice_locations_use_of_type():
    issues = profiles.validate(_observation(valueQuantity={"value": 1, "comparator": "about"}))
    assert ("binding", "Observation.value.ofType(Quantity).comparator") in {
        (i.rule, i.expression[0]) for i in issues
    }


FIXED_AND_PATTERN = [
    (
        "fixed code",
        changed(daily_steps(), valueQuantity={"value": 10, "system": UCUM, "code": "steps"}),
        {("fixed", "error", "Observation.value.ofType(Quantity).code")},
    ),
    (
        "fixed uri",
        changed(daily_steps(), valueQuantity={"value": 10, "system": "http://x.org", "code": "/d"}),
        {("fixed", "error", "Observation.value.ofType(Quantity).system")},
    ),
    (
        "pattern met with more codings",
        changed(
            daily_steps(),
            code={
                "coding": [
                    {"system": "http://x.org", "code": "s"},
                    {"system": "http://loinc.org", "code": "41950-7", "display": "Steps"},
                ],
                "text": "Steps",
            },
        ),
        set(),
    ),
    (
        "pattern not met",
        changed(
            daily_steps(), code={"coding": [{"system": "http://loinc.org", "code": "55423-8"}]}
        ),
        {("pattern", "error", "Observation.code")},
    ),
    (
        "pattern with system only",
        changed(prom_score(), method={"coding": [{"system": "http://x.org", "code": "m"}]}),
        {("pattern", "error", "Observation.method")},
    ),
]


@pytest.mark.parametrize(
    ("name", "resource", "expected"), FIXED_AND_PATTERN, ids=[c[0] for c in FIXED_AND_PATTERN]
)
def test_fixed_and_pattern_values(name, resource, expected):
    check(resource, expected)


CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"


def _condition(clinical_status: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "text": {"status": "generated", "div": NARRATIVE},
        "clinicalStatus": clinical_status,
        "code": {"text": "low back pain"},
        "subject": {"reference": "Patient/p"},
    }


BINDINGS = [
    ("required code in an R4 core enumeration", _patient(gender="female"), set()),
    ("required code outside it", _patient(gender="f"), {("binding", "error", "Patient.gender")}),
    (
        "required binding on a CodeableConcept",
        _condition({"coding": [{"system": CLINICAL, "code": "active"}]}),
        set(),
    ),
    (
        "required binding on a CodeableConcept not met",
        _condition({"coding": [{"system": CLINICAL, "code": "nope"}]}),
        {("binding", "error", "Condition.clinicalStatus")},
    ),
    (
        "required binding with only text",
        _condition({"text": "active"}),
        {("binding", "error", "Condition.clinicalStatus")},
    ),
    (
        "extensible binding not met is a warning",
        _patient(
            identifier=[
                {"type": {"coding": [{"system": "http://x.org/types", "code": "T"}]}, "value": "1"}
            ]
        ),
        {("binding", "warning", "Patient.identifier[0].type")},
    ),
    (
        "extensible binding met",
        _patient(
            identifier=[
                {
                    "type": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                "code": "MR",
                            }
                        ]
                    },
                    "value": "1",
                }
            ]
        ),
        set(),
    ),
    (
        "our ValueSet through the terminology package",
        changed(prom_score(), code={"coding": [{"system": "http://loinc.org", "code": "72514-3"}]}),
        set(),
    ),
    (
        "our ValueSet, code outside it",
        changed(prom_score(), code={"coding": [{"system": "http://loinc.org", "code": "2160-0"}]}),
        {("binding", "error", "Observation.code")},
    ),
]


@pytest.mark.parametrize(("name", "resource", "expected"), BINDINGS, ids=[c[0] for c in BINDINGS])
def test_bindings(name, resource, expected):
    check(resource, expected)


def test_a_binding_to_a_value_set_that_cannot_be_enumerated_is_not_guessed():
    # Attachment.contentType is bound (required) to MIME types, which no table enumerates.
    resource = {"resourceType": "Binary", "contentType": "application/x-made-up"}
    assert not [i for i in profiles.validate(resource) if i.is_error]


SLICING = [
    (
        "value discriminator picks the slice",
        patient({"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765918"}),
        {("selfback-nhs-1", "error", "Patient.identifier[0]")},
    ),
    (
        "pattern discriminator slice missing",
        changed(
            daily_steps(),
            category=[{"coding": [{"system": OBSERVATION_CATEGORY, "code": "survey"}]}],
        ),
        {("slice-cardinality", "error", "Observation")},
    ),
    (
        "pattern discriminator slice present among others",
        changed(
            daily_steps(),
            category=[
                {"text": "x"},
                {"coding": [{"system": OBSERVATION_CATEGORY, "code": "activity"}]},
            ],
        ),
        set(),
    ),
    (
        "slice maximum",
        changed(
            daily_steps(),
            category=[{"coding": [{"system": OBSERVATION_CATEGORY, "code": "activity"}]}] * 2,
        ),
        {("slice-cardinality", "error", "Observation")},
    ),
]


@pytest.mark.parametrize(("name", "resource", "expected"), SLICING, ids=[c[0] for c in SLICING])
def test_slicing(name, resource, expected):
    check(resource, expected)


def _bp(**changes: Any) -> dict[str, Any]:
    loinc = "http://loinc.org"

    def component(code: str, value: float) -> dict[str, Any]:
        return {
            "code": {"coding": [{"system": loinc, "code": code}]},
            "valueQuantity": {"value": value, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"},
        }

    base = {
        "resourceType": "Observation",
        "meta": {"profile": ["http://hl7.org/fhir/StructureDefinition/bp"]},
        "text": {"status": "generated", "div": NARRATIVE},
        "status": "final",
        "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "vital-signs"}]}],
        "code": {"coding": [{"system": loinc, "code": "85354-9"}]},
        "subject": {"reference": "Patient/p"},
        "effectiveDateTime": "2026-03-01",
        "component": [component("8480-6", 120), component("8462-4", 80)],
    }
    return changed(base, **changes)


def test_core_vital_signs_profile_with_nested_coding_slices_conforms():
    check(_bp(), set())


def test_core_profile_value_discriminator_through_nested_slices():
    bp = _bp()
    bp["component"][1]["code"]["coding"][0]["code"] = "9999-9"
    check(bp, {("slice-cardinality", "error", "Observation")})


def test_type_discriminator_puts_the_value_in_its_slice():
    # bp slices value[x] by type ($this) into a valueQuantity slice of at most 0 items
    issues = check(
        _bp(valueQuantity={"value": 1, "system": UCUM, "code": "mm[Hg]"}),
        {("slice-cardinality", "error", "Observation")},
    )
    assert any("valueQuantity" in i.diagnostics for i in issues)


def test_extensible_binding_inside_a_slice():
    bp = _bp()
    bp["component"][0]["valueQuantity"]["code"] = "kPa"
    check(bp, {("binding", "error", "Observation.component[0].value.ofType(Quantity)")})


# Slicing rules that our profiles do not use: a test profile built from our Patient snapshot.
TEST_PROFILE = "http://selfback.example.org/fhir/StructureDefinition/test-slicing-rules"


def _test_profile(rules: str, ordered: bool, discriminator: list[dict[str, str]]) -> str:
    """Our Patient profile with Patient.telecom sliced into 'phone' (then 'email')."""
    base = next(sd for sd in profiles.our_structure_definitions() if sd["url"] == profiles.PATIENT)
    sd = copy.deepcopy(base)
    url = f"{TEST_PROFILE}-{rules}-{ordered}-{discriminator[0]['type']}"
    sd.update(url=url, id=url.rsplit("/", 1)[1], name="TestSlicingRules")
    elements = sd["snapshot"]["element"]
    index = next(i for i, e in enumerate(elements) if e["id"] == "Patient.telecom")
    elements[index] = dict(
        elements[index],
        slicing={"discriminator": discriminator, "rules": rules, "ordered": ordered},
    )
    slices = []
    for name, system in (("phone", "phone"), ("email", "email")):
        head = dict(elements[index], id=f"Patient.telecom:{name}", sliceName=name, min=0, max="1")
        head.pop("slicing")
        if discriminator[0]["type"] == "exists":
            # the email slice has a value, the phone slice must not (an odd but legal rule)
            head["min"] = 0
        system_element = {
            "id": f"Patient.telecom:{name}.system",
            "path": "Patient.telecom.system",
            "min": 1,
            "max": "1",
            "base": {"path": "ContactPoint.system", "min": 0, "max": "1"},
            "type": [{"code": "code"}],
            "fixedCode": system,
        }
        value_element = {
            "id": f"Patient.telecom:{name}.value",
            "path": "Patient.telecom.value",
            "min": 1 if name == "email" else 0,
            "max": "1" if name == "email" else "0",
            "base": {"path": "ContactPoint.value", "min": 0, "max": "1"},
            "type": [{"code": "string"}],
        }
        slices += [head, system_element, value_element]
    elements[index + 1 : index + 1] = slices
    return profiles.add_structure_definition(sd)


def _telecoms(*systems: str) -> dict[str, Any]:
    return patient() | {
        "telecom": [
            {"system": s, "value": "x@example.org"} if s == "email" else {"system": s}
            for s in systems
        ]
    }


VALUE = [{"type": "value", "path": "system"}]
SLICING_RULES = [
    (
        "closed: unknown slice rejected",
        "closed",
        False,
        VALUE,
        ("fax",),
        {("slice-closed", "error", "Patient.telecom[0]")},
    ),
    ("open: unknown slice accepted", "open", False, VALUE, ("fax", "phone"), set()),
    ("openAtEnd: unknown slice at the end", "openAtEnd", False, VALUE, ("phone", "fax"), set()),
    (
        "openAtEnd: unknown slice before a known one",
        "openAtEnd",
        False,
        VALUE,
        ("fax", "phone"),
        {("slice-order", "error", "Patient.telecom[1]")},
    ),
    ("ordered: slices in order", "open", True, VALUE, ("phone", "email"), set()),
    (
        "ordered: slices out of order",
        "open",
        True,
        VALUE,
        ("email", "phone"),
        {("slice-order", "error", "Patient.telecom[1]")},
    ),
    (
        "exists: element presence picks the slice",
        "closed",
        False,
        [{"type": "exists", "path": "value"}],
        ("email",),
        set(),
    ),
]


@pytest.mark.parametrize(
    ("name", "rules", "ordered", "discriminator", "systems", "expected"),
    SLICING_RULES,
    ids=[c[0] for c in SLICING_RULES],
)
def test_slicing_rules(name, rules, ordered, discriminator, systems, expected):
    url = _test_profile(rules, ordered, discriminator)
    check(_telecoms(*systems), expected, profiles=[url])


def test_profile_discriminator():
    base = next(sd for sd in profiles.our_structure_definitions() if sd["url"] == profiles.PATIENT)
    sd = copy.deepcopy(base)
    sd.update(url=f"{TEST_PROFILE}-profile", id="test-slicing-profile", name="TestProfileSlicing")
    elements = sd["snapshot"]["element"]
    index = next(i for i, e in enumerate(elements) if e["id"] == "Patient.contained")
    elements[index] = dict(
        elements[index],
        slicing={"discriminator": [{"type": "profile", "path": "$this"}], "rules": "closed"},
    )
    step_slice = dict(
        elements[index],
        id="Patient.contained:steps",
        sliceName="steps",
        type=[{"code": "Resource", "profile": [profiles.DAILY_STEPS]}],
    )
    step_slice.pop("slicing")
    elements.insert(index + 1, step_slice)
    url = profiles.add_structure_definition(sd)
    steps = changed(daily_steps(), meta=None, text=None, subject={"reference": "#"})
    conforming = patient() | {"contained": [steps], "meta": {"profile": [url]}}
    check(conforming, set())
    other = changed(steps, code={"coding": [{"system": "http://loinc.org", "code": "8867-4"}]})
    check(
        patient() | {"contained": [other], "meta": {"profile": [url]}},
        {("slice-closed", "error", "Patient.contained[0]")},
    )


EXTENSIONS = [
    (
        "known extension in its context",
        _patient(
            extension=[
                {
                    "url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace",
                    "valueAddress": {"city": "Aarhus"},
                }
            ]
        ),
        set(),
    ),
    (
        "unknown extension",
        _patient(
            extension=[
                {"url": "http://other.org/fhir/StructureDefinition/shoe-size", "valueInteger": 44}
            ]
        ),
        {("extension-unknown", "error", "Patient.extension[0]")},
    ),
    (
        "example domain accepted without a definition",
        _patient(
            extension=[
                {"url": "http://example.org/fhir/StructureDefinition/shoe-size", "valueInteger": 44}
            ]
        ),
        set(),
    ),
    (
        "version in the url",
        _patient(
            extension=[
                {
                    "url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace|4.0.1",
                    "valueAddress": {"city": "Aarhus"},
                }
            ]
        ),
        {("extension-url", "error", "Patient.extension[0]")},
    ),
    (
        "wrong context",
        _observation(
            extension=[
                {
                    "url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace",
                    "valueAddress": {"city": "Aarhus"},
                }
            ]
        ),
        {("extension-context", "error", "Observation.extension[0]")},
    ),
    (
        "context on a datatype element",
        _patient(
            name=[
                {
                    "family": "Hansen",
                    "_family": {
                        "extension": [
                            {
                                "url": "http://hl7.org/fhir/StructureDefinition/humanname-own-name",
                                "valueString": "Hansen",
                            }
                        ]
                    },
                }
            ]
        ),
        set(),
    ),
    (
        "value type not allowed",
        _patient(
            extension=[
                {
                    "url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace",
                    "valueString": "Aarhus",
                }
            ]
        ),
        {("type", "error", "Patient.extension[0].valueString")},
    ),
    (
        "both value and extensions",
        _patient(
            extension=[
                {
                    "url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace",
                    "valueAddress": {"city": "A"},
                    "extension": [{"url": "http://example.org/x", "valueString": "y"}],
                }
            ]
        ),
        {("ext-1", "error", "Patient.extension[0]")},
    ),
    (
        "no url",
        _patient(extension=[{"valueString": "x"}]),
        {("extension-url", "error", "Patient.extension[0]")},
    ),
    (
        "modifier extension used as an extension",
        {
            "resourceType": "ServiceRequest",
            "status": "active",
            "intent": "order",
            "subject": {"reference": "Patient/p"},
            "extension": [
                {
                    "url": "http://hl7.org/fhir/StructureDefinition/request-doNotPerform",
                    "valueBoolean": True,
                }
            ],
        },
        {("extension-modifier", "error", "ServiceRequest.extension[0]")},
    ),
    (
        "complex extension missing a required part",
        _patient(
            extension=[
                {
                    "url": "http://hl7.org/fhir/StructureDefinition/patient-animal",
                    "extension": [{"url": "breed", "valueCodeableConcept": {"text": "Labrador"}}],
                }
            ]
        ),
        {("slice-cardinality", "error", "Patient.extension[0]")},
    ),
    (
        "complex extension with an undefined part",
        _patient(
            extension=[
                {
                    "url": "http://hl7.org/fhir/StructureDefinition/patient-animal",
                    "extension": [
                        {"url": "species", "valueCodeableConcept": {"text": "dog"}},
                        {"url": "colour", "valueString": "black"},
                    ],
                }
            ]
        ),
        {("extension-url", "error", "Patient.extension[0].extension[1]")},
    ),
]


@pytest.mark.parametrize(
    ("name", "resource", "expected"), EXTENSIONS, ids=[c[0] for c in EXTENSIONS]
)
def test_extensions(name, resource, expected):
    check(resource, expected)


@pytest.mark.parametrize("severity", ["warning", "information"])
def test_unknown_extensions_can_be_downgraded(severity):
    resource = _patient(extension=[{"url": "http://other.org/x", "valueInteger": 1}])
    issues = profiles.validate(resource, options=ValidationOptions(unknown_extensions=severity))
    assert [(i.rule, i.severity) for i in issues] == [("extension-unknown", severity)]


INVARIANTS = [
    (
        "per-1 start after end",
        _observation(effectivePeriod={"start": "2024-02-01", "end": "2024-01-01"}),
        {("per-1", "error", "Observation.effective.ofType(Period)")},
    ),
    (
        "per-1 different precisions that cannot be ordered",
        _observation(effectivePeriod={"start": "2023-06-21", "end": "2023-06-21T06:20:00Z"}),
        {("per-1", "error", "Observation.effective.ofType(Period)")},
    ),
    (
        "per-1 across time zones",
        _observation(
            effectivePeriod={"start": "2024-01-01T10:00:00+02:00", "end": "2024-01-01T09:30:00Z"}
        ),
        set(),
    ),
    (
        "FHIRPath invariant through fhirpathpy",
        _observation(referenceRange=[{"text": "n"}, {"appliesTo": [{"text": "adults"}]}]),
        {("obs-3", "error", "Observation.referenceRange[1]")},
    ),
    (
        "invariant of a datatype (rng-2)",
        _observation(
            valueRange={
                "low": {"value": 5, "system": UCUM, "code": "mg"},
                "high": {"value": 2, "system": UCUM, "code": "mg"},
            }
        ),
        {("rng-2", "error", "Observation.value.ofType(Range)")},
    ),
    (
        "contained resource not referenced (dom-3)",
        _patient(contained=[{"resourceType": "Organization", "id": "o1", "name": "x"}]),
        {("dom-3", "error", "Patient")},
    ),
    (
        "contained resource referenced from the narrative",
        _patient(
            contained=[{"resourceType": "Binary", "id": "img", "contentType": "image/png"}],
            text={
                "status": "generated",
                "div": '<div xmlns="http://www.w3.org/1999/xhtml"><img src="#img" alt="x"/></div>',
            },
        ),
        set(),
    ),
    (
        "local reference to nothing (ref-1)",
        _patient(managingOrganization={"reference": "#nothing"}),
        {("ref-1", "error", "Patient.managingOrganization")},
    ),
    (
        "narrative without content (txt-2)",
        _patient(
            text={
                "status": "generated",
                "div": '<div xmlns="http://www.w3.org/1999/xhtml"><p> </p></div>',
            }
        ),
        {("txt-2", "error", "Patient.text.div")},
    ),
    (
        "narrative with a script (txt-1)",
        _patient(
            text={
                "status": "generated",
                "div": '<div xmlns="http://www.w3.org/1999/xhtml"><script>x()</script></div>',
            }
        ),
        {("txt-1", "error", "Patient.text.div")},
    ),
    (
        "narrative that is not XHTML",
        _patient(
            text={
                "status": "generated",
                "div": '<div xmlns="http://www.w3.org/1999/xhtml">&reg;</div>',
            }
        ),
        {("xhtml", "error", "Patient.text.div")},
    ),
    ("best practice is a warning (dom-6)", _patient(text=None), {("dom-6", "warning", "Patient")}),
    (
        "invariant of our profile with date arithmetic",
        changed(weekly_careplan(), period={"start": "2026-03-02", "end": "2026-03-10"}),
        {("selfback-careplan-2", "error", "CarePlan")},
    ),
]


@pytest.mark.parametrize(
    ("name", "resource", "expected"), INVARIANTS, ids=[c[0] for c in INVARIANTS]
)
def test_invariants(name, resource, expected):
    check(resource, expected)


def test_an_invariant_that_cannot_be_evaluated_is_reported_as_information_and_counted():
    base = next(sd for sd in profiles.our_structure_definitions() if sd["url"] == profiles.PATIENT)
    sd = copy.deepcopy(base)
    sd.update(url=f"{TEST_PROFILE}-unevaluable", id="test-unevaluable", name="TestUnevaluable")
    sd["snapshot"]["element"][0]["constraint"].append(
        {"key": "test-1", "severity": "error", "human": "conforms", "expression": "conformsTo('x')"}
    )
    url = profiles.add_structure_definition(sd)
    before = profiles.unevaluable_invariants().get("test-1", 0)
    issues = profiles.validate(patient(), [url])
    assert [(i.rule, i.severity, i.code) for i in issues] == [
        ("test-1", "information", "informational")
    ]
    assert profiles.unevaluable_invariants()["test-1"] == before + 1
    quiet = ValidationOptions(report_unevaluated=False)
    assert profiles.validate(patient(), [url], options=quiet) == []


def test_a_registered_check_replaces_the_expression_of_its_key():
    base = next(sd for sd in profiles.our_structure_definitions() if sd["url"] == profiles.PATIENT)
    sd = copy.deepcopy(base)
    sd.update(url=f"{TEST_PROFILE}-registered", id="test-registered", name="TestRegistered")
    sd["snapshot"]["element"][0]["constraint"].append(
        {"key": "test-2", "severity": "error", "human": "named Jensen", "expression": "false"}
    )
    url = profiles.add_structure_definition(sd)
    profiles.register_check("test-2", lambda p: p["name"][0]["family"] == "Jensen")
    assert profiles.validate(patient(), [url]) == []
    renamed = patient() | {"name": [{"family": "Hansen"}]}
    assert [i.rule for i in profiles.validate(renamed, [url])] == ["test-2"]


REFERENCES_AND_PROFILES = [
    (
        "reference that is neither relative type/id nor absolute",
        _observation(subject={"reference": "p-1"}),
        {("reference-format", "error", "Observation.subject.reference")},
    ),
    (
        "conditional reference",
        _observation(subject={"reference": "Patient?identifier=x|1"}),
        set(),
    ),
    (
        "reference to a type the profile forbids",
        changed(daily_steps(), subject={"reference": "Group/g"}),
        {("reference-target", "error", "Observation.subject")},
    ),
    (
        "absolute reference",
        changed(daily_steps(), subject={"reference": "https://x.org/fhir/Patient/p/_history/2"}),
        set(),
    ),
    (
        "unknown profile in meta.profile",
        _patient(meta={"profile": ["http://x.org/StructureDefinition/nope"]}),
        {("profile-unknown", "error", "Patient.meta.profile[0]")},
    ),
    (
        "profile of another type",
        _patient(meta={"profile": [profiles.DAILY_STEPS]}),
        {("profile", "error", "Patient")},
    ),
]


@pytest.mark.parametrize(
    ("name", "resource", "expected"),
    REFERENCES_AND_PROFILES,
    ids=[c[0] for c in REFERENCES_AND_PROFILES],
)
def test_references_and_profiles(name, resource, expected):
    check(resource, expected)


def test_profiles_argument_replaces_meta_profile():
    steps = changed(daily_steps(), meta=None)
    assert profiles.validate(steps) == []
    issues = profiles.validate(changed(steps, subject=None), [profiles.DAILY_STEPS])
    assert [i.rule for i in issues] == ["cardinality"]
    assert [i.rule for i in profiles.validate(steps, ["http://x.org/nope"])] == ["profile-unknown"]


def test_unknown_meta_profile_severity_is_an_option():
    resource = _patient(meta={"profile": ["http://x.org/StructureDefinition/nope"]})
    issues = profiles.validate(resource, options=ValidationOptions(unknown_profiles="warning"))
    assert [(i.rule, i.severity) for i in issues] == [("profile-unknown", "warning")]


def _document(*entries: dict[str, Any]) -> dict[str, Any]:
    composition = {
        "resourceType": "Composition",
        "id": "c",
        "text": {"status": "generated", "div": NARRATIVE},
        "status": "final",
        "type": {"text": "summary"},
        "subject": {"reference": "Patient/p"},
        "date": "2026-03-01",
        "author": [{"display": "x"}],
        "title": "t",
    }
    return {
        "resourceType": "Bundle",
        "identifier": {
            "system": "urn:ietf:rfc:3986",
            "value": "urn:uuid:5b0b5a4c-0a28-4b5e-9d7c-2f7b6a1c9d10",
        },
        "type": "document",
        "timestamp": "2026-03-01T10:00:00Z",
        "entry": [
            {"fullUrl": "http://x.org/fhir/Composition/c", "resource": composition},
            *entries,
        ],
    }


BUNDLES = [
    (
        "document whose references resolve",
        _document({"fullUrl": "http://x.org/fhir/Patient/p", "resource": _patient(id="p")}),
        set(),
    ),
    (
        "document reference that does not resolve",
        _document(),
        {("bundle-reference", "error", "Bundle.entry[0].resource.subject")},
    ),
    (
        "document entry nothing links to",
        _document(
            {"fullUrl": "http://x.org/fhir/Patient/p", "resource": _patient(id="p")},
            {"fullUrl": "http://x.org/fhir/Patient/q", "resource": _patient(id="q")},
        ),
        {("bundle-document-reachable", "error", "Bundle.entry[2]")},
    ),
    (
        "relative fullUrl",
        {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"fullUrl": "Patient/1", "resource": _patient(id="1")}],
        },
        {("bundle-fullurl", "error", "Bundle.entry[0]")},
    ),
    (
        "fullUrl and id disagree",
        {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"fullUrl": "http://x.org/fhir/Patient/2", "resource": _patient(id="1")}],
        },
        {("bundle-fullurl", "error", "Bundle.entry[0]")},
    ),
    (
        "self link twice",
        {
            "resourceType": "Bundle",
            "type": "searchset",
            "link": [
                {"relation": "self", "url": "http://x.org/a"},
                {"relation": "self", "url": "http://x.org/b"},
            ],
        },
        {("bundle-link", "error", "Bundle.link[1]")},
    ),
    (
        "reference resolving to another type",
        {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [
                {
                    "fullUrl": "http://x.org/fhir/Observation/o",
                    "resource": _observation(id="o", subject={"reference": "Patient/p"}),
                },
                {
                    "fullUrl": "http://x.org/fhir/Patient/p",
                    "resource": {
                        "resourceType": "Group",
                        "id": "p",
                        "type": "person",
                        "actual": True,
                    },
                },
            ],
        },
        {("bundle-fullurl", "error", "Bundle.entry[1]")},
    ),
    (
        "entry resources validated with their own locations",
        {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": _patient(gender="x")}],
        },
        {("binding", "error", "Bundle.entry[0].resource.gender")},
    ),
]


@pytest.mark.parametrize(("name", "resource", "expected"), BUNDLES, ids=[c[0] for c in BUNDLES])
def test_bundle_rules(name, resource, expected):
    check(resource, expected)


def test_valid_resource_has_no_issues_and_an_all_ok_outcome():
    issues = profiles.validate(daily_steps())
    assert issues == [] and profiles.is_valid(issues)
    assert profiles.operation_outcome(issues)["issue"][0]["severity"] == "information"


def test_the_resource_is_not_changed():
    resource = changed(daily_steps(), subject=None)
    snapshot = copy.deepcopy(resource)
    profiles.validate(resource)
    assert resource == snapshot


def test_issues_render_as_operation_outcome_issues():
    outcome = profiles.operation_outcome(profiles.validate(_patient(gender="f")))
    assert outcome["issue"] == [
        {
            "severity": "error",
            "code": "code-invalid",
            "diagnostics": outcome["issue"][0]["diagnostics"],
            "expression": ["Patient.gender"],
        }
    ]


@pytest.mark.parametrize("value", [None, [], "Patient", 3])
def test_anything_that_is_not_an_object_is_fatal(value):
    assert [i.severity for i in profiles.validate(value)] == ["fatal"]


CODE_SYSTEMS = [
    (
        "unknown code in a FHIR-defined code system",
        _observation(
            code={
                "coding": [{"system": "http://hl7.org/fhir/administrative-gender", "code": "nope"}]
            }
        ),
        {("coding-code", "error", "Observation.code.coding[0].code")},
    ),
    (
        "unknown code in a terminology.hl7.org code system is only a warning",
        _observation(
            code={
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/admit-source", "code": "ZZZ"}
                ]
            }
        ),
        {("coding-code", "warning", "Observation.code.coding[0].code")},
    ),
    (
        "unknown code in one of our code systems",
        changed(
            prom_score(),
            code={
                "coding": [
                    {
                        "system": "http://selfback.example.org/fhir/CodeSystem/assessment",
                        "code": "nope",
                    }
                ]
            },
        ),
        {("coding-code", "error", "Observation.code.coding[0].code")},
    ),
    (
        "system that is a value set",
        _observation(
            code={
                "coding": [
                    {"system": "http://hl7.org/fhir/ValueSet/observation-codes", "code": "x"}
                ]
            }
        ),
        {("coding-system", "error", "Observation.code.coding[0].system")},
    ),
    (
        "relative system",
        _observation(code={"coding": [{"system": "local-codes", "code": "x"}]}),
        {("coding-system", "error", "Observation.code.coding[0].system")},
    ),
    (
        "code from a system we do not hold",
        _observation(code={"coding": [{"system": "http://loinc.org", "code": "no-such-code"}]}),
        set(),
    ),
]


@pytest.mark.parametrize(
    ("name", "resource", "expected"), CODE_SYSTEMS, ids=[c[0] for c in CODE_SYSTEMS]
)
def test_codes_against_code_systems(name, resource, expected):
    check(resource, expected)


OTHER_RULES = [
    (
        "upper-case urn:uuid",
        _patient(implicitRules="urn:uuid:68D043B5-9ECF-4559-A57A-396E0D452311"),
        {("urn-format", "error", "Patient.implicitRules")},
    ),
    (
        "identifier system rfc3986 with a bare value",
        _patient(identifier=[{"system": "urn:ietf:rfc:3986", "value": "2.16.840.1"}]),
        {("identifier-uri", "error", "Patient.identifier[0].value")},
    ),
    (
        "attachment size that does not match",
        {
            "resourceType": "DocumentReference",
            "status": "current",
            "content": [
                {"attachment": {"contentType": "text/plain", "data": "aGVsbG8=", "size": 6}}
            ],
        },
        {("attachment-size", "error", "DocumentReference.content[0].attachment")},
    ),
    (
        "attachment size that matches",
        {
            "resourceType": "DocumentReference",
            "status": "current",
            "content": [
                {"attachment": {"contentType": "text/plain", "data": "aGVsbG8=", "size": 5}}
            ],
        },
        set(),
    ),
    (
        "search match without an id",
        {
            "resourceType": "Bundle",
            "type": "searchset",
            "link": [{"relation": "self", "url": "http://x.org/fhir/Patient?name=a"}],
            "entry": [{"search": {"mode": "match"}, "resource": _patient(id=None)}],
        },
        {("bundle-search", "error", "Bundle.entry[0].resource")},
    ),
    (
        "search match of another type",
        {
            "resourceType": "Bundle",
            "type": "searchset",
            "link": [{"relation": "self", "url": "http://x.org/fhir/Patient?name=a"}],
            "entry": [{"search": {"mode": "match"}, "resource": _observation()}],
        },
        {("bundle-search", "error", "Bundle.entry[0].resource")},
    ),
    (
        "search outcome that is not an OperationOutcome",
        {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [{"search": {"mode": "outcome"}, "resource": _patient()}],
        },
        {("bundle-search", "error", "Bundle.entry[0].resource")},
    ),
    (
        "ValueSet including a relative system",
        {
            "resourceType": "ValueSet",
            "status": "draft",
            "compose": {"include": [{"system": "#local"}]},
        },
        {("valueset-system", "error", "ValueSet.compose.include[0].system")},
    ),
    (
        "CodeSystem supplement with complete content",
        {
            "resourceType": "CodeSystem",
            "status": "draft",
            "content": "complete",
            "supplements": "http://loinc.org",
        },
        {("codesystem-content", "error", "CodeSystem.content")},
    ),
    (
        "SearchParameter derived with another type",
        {
            "resourceType": "SearchParameter",
            "url": "http://x.org/sp",
            "name": "n",
            "status": "draft",
            "description": "d",
            "code": "name",
            "base": ["Organization"],
            "type": "token",
            "expression": "Organization.name",
            "derivedFrom": "http://hl7.org/fhir/SearchParameter/Organization-name",
        },
        {("searchparameter-derived", "error", "SearchParameter")},
    ),
    (
        "CapabilityStatement search parameter of another type",
        {
            "resourceType": "CapabilityStatement",
            "status": "draft",
            "date": "2026",
            "kind": "instance",
            "fhirVersion": "4.0.1",
            "format": ["json"],
            "implementation": {"description": "x"},
            "rest": [
                {
                    "mode": "server",
                    "resource": [
                        {
                            "type": "Patient",
                            "searchParam": [
                                {
                                    "name": "gender",
                                    "definition": "http://hl7.org/fhir/SearchParameter/individual-gender",
                                    "type": "date",
                                }
                            ],
                        }
                    ],
                }
            ],
        },
        {
            (
                "capabilitystatement-searchparam",
                "error",
                "CapabilityStatement.rest[0].resource[0].searchParam[0]",
            )
        },
    ),
    (
        "Questionnaire enableWhen on an inner question",
        {
            "resourceType": "Questionnaire",
            "status": "draft",
            "item": [
                {
                    "linkId": "g",
                    "type": "group",
                    "enableWhen": [{"question": "q", "operator": "exists", "answerBoolean": True}],
                    "item": [{"linkId": "q", "type": "boolean"}],
                }
            ],
        },
        {("questionnaire-enablewhen", "error", "Questionnaire.item[0]")},
    ),
    (
        "StructureDefinition differential path that does not exist",
        {
            "resourceType": "StructureDefinition",
            "url": "http://x.org/sd",
            "name": "X",
            "status": "draft",
            "kind": "resource",
            "abstract": False,
            "type": "Observation",
            "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Observation",
            "derivation": "constraint",
            "differential": {
                "element": [{"id": "Observation.valueBla", "path": "Observation.valueBla"}]
            },
        },
        {("sd-differential-path", "error", "StructureDefinition")},
    ),
]


@pytest.mark.parametrize(
    ("name", "resource", "expected"), OTHER_RULES, ids=[c[0] for c in OTHER_RULES]
)
def test_rules_beyond_structure_definitions(name, resource, expected):
    check(resource, expected)
