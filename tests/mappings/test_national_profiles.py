"""mappings.export_for: our resources shaped for UK Core and DK Core, rule by rule.

Each verified national rule has a resource that breaks it and one that keeps it; the
shaping is checked on the programme's own resources (profile builders, scoring output).
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from mappings import ExportError, export_for, national_rule_violations, score_observations
from mappings.national_profiles import (
    DK_CORE_OBSERVATION,
    DK_CORE_PATIENT,
    RULES,
    UK_CORE_OBSERVATION,
    UK_CORE_PATIENT,
)
from mappings.scoring import score_response
from tests.mappings.qr_builder import build_response
from tests.profiles.builders import (
    cpr_number,
    daily_steps,
    data_sharing_consent,
    nhs_number,
    patient,
    step_goal,
    weekly_careplan,
)

VALID_NHS = "9434765919"
# The UK Core Access IG's example Patient "MaryMorris" carries NHS number 4123456879, whose
# check digit should be 1: IG example numbers are not to be trusted
# (https://build.fhir.org/ig/HL7-UK/UK-Core-Access/Bundle-Response-patientsearchbyidentifiervalue.html).
IG_EXAMPLE_FAILING_NHS = "4123456879"
# A CPR number that fails the old modulus-11 test but is well formed (DK Core: accepted).
CPR_WITHOUT_MOD11 = "0702921234"


def with_profile(resource: dict[str, Any], url: str) -> dict[str, Any]:
    return {**resource, "meta": {"profile": [url]}}


def keys(resource: dict[str, Any], nation: str) -> list[str]:
    return [rule.key for rule, _ in national_rule_violations(resource, nation)]  # type: ignore[arg-type]


UK_PATIENT = with_profile(patient(nhs_number(VALID_NHS)), UK_CORE_PATIENT)
DK_PATIENT = with_profile(patient(cpr_number(CPR_WITHOUT_MOD11)), DK_CORE_PATIENT)
DK_STEPS = with_profile(daily_steps(), DK_CORE_OBSERVATION)


def changed(resource: dict[str, Any], **changes: Any) -> dict[str, Any]:
    result = copy.deepcopy(resource)
    for key, value in changes.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = value
    return result


# (rule key, nation, a resource that breaks exactly that rule, where)
BROKEN = [
    ("ukcore-patient-profile", "uk", changed(UK_PATIENT, meta=None), "Patient.meta.profile"),
    (
        "ukcore-nhs-number-check-digit",
        "uk",
        changed(UK_PATIENT, identifier=[nhs_number(IG_EXAMPLE_FAILING_NHS)]),
        "Patient.identifier[0]",
    ),
    (
        "ukcore-nhs-number-check-digit",
        "uk",
        changed(UK_PATIENT, identifier=[nhs_number("943476591")]),
        "Patient.identifier[0]",
    ),
    (
        "ukcore-nhs-number-once",
        "uk",
        changed(UK_PATIENT, identifier=[nhs_number(VALID_NHS), nhs_number("9912003888")]),
        "Patient.identifier[1]",
    ),
    (
        "ukcore-observation-profile",
        "uk",
        daily_steps(),
        "Observation.meta.profile",
    ),
    ("dkcore-patient-profile", "dk", changed(DK_PATIENT, meta=None), "Patient.meta.profile"),
    ("dkcore-patient-identifier", "dk", changed(DK_PATIENT, identifier=None), "Patient.identifier"),
    (
        "dkcore-cpr-once",
        "dk",
        changed(DK_PATIENT, identifier=[cpr_number("0101001234"), cpr_number("0202021234")]),
        "Patient.identifier[1]",
    ),
    (
        "dkcore-cpr-use",
        "dk",
        changed(DK_PATIENT, identifier=[{**cpr_number("0101001234"), "use": "usual"}]),
        "Patient.identifier[0].use",
    ),
    (
        "dkcore-cpr-format",
        "dk",
        changed(DK_PATIENT, identifier=[cpr_number("3002901234")]),
        "Patient.identifier[0].value",
    ),
    (
        "dkcore-cpr-format",
        "dk",
        changed(DK_PATIENT, identifier=[cpr_number("010100-1234")]),
        "Patient.identifier[0].value",
    ),
    (
        "dkcore-official-name-family",
        "dk",
        changed(DK_PATIENT, name=[{"use": "official", "given": ["Anna"]}]),
        "Patient.name[0].family",
    ),
    (
        "dkcore-official-name-once",
        "dk",
        changed(
            DK_PATIENT,
            name=[{"use": "official", "family": "A"}, {"use": "official", "family": "B"}],
        ),
        "Patient.name[1]",
    ),
    ("dkcore-observation-profile", "dk", daily_steps(), "Observation.meta.profile"),
    ("dkcore-observation-subject", "dk", changed(DK_STEPS, subject=None), "Observation.subject"),
    (
        "dkcore-observation-subject-type",
        "dk",
        changed(DK_STEPS, subject={"reference": "Practitioner/x"}),
        "Observation.subject",
    ),
    (
        "dkcore-observation-ucum",
        "dk",
        changed(DK_STEPS, valueQuantity={"value": 3, "system": "http://example.org/units"}),
        "Observation.value.ofType(Quantity).system",
    ),
    (
        "dkcore-observation-loinc-code",
        "dk",
        changed(DK_STEPS, code={"coding": [{"system": "http://loinc.org", "display": "steps"}]}),
        "Observation.code.coding[0].code",
    ),
    (
        "dkcore-observation-loinc-code",
        "dk",
        changed(
            DK_STEPS,
            code={
                "coding": [
                    {"system": "http://loinc.org", "code": "41950-7"},
                    {"system": "http://loinc.org", "code": "55423-8"},
                ]
            },
        ),
        "Observation.code.coding[1]",
    ),
]


@pytest.mark.parametrize(("key", "nation", "resource", "where"), BROKEN, ids=[b[0] for b in BROKEN])
def test_each_national_rule_is_checked(
    key: str, nation: str, resource: dict[str, Any], where: str
) -> None:
    found = national_rule_violations(resource, nation)  # type: ignore[arg-type]
    assert [(rule.key, at) for rule, at in found] == [(key, where)]


def test_every_rule_has_a_breaking_case_and_a_source() -> None:
    assert {r.key for r in RULES} == {b[0] for b in BROKEN}
    assert all(r.source.startswith("https://") for r in RULES)


@pytest.mark.parametrize(
    ("resource", "nation"),
    [(UK_PATIENT, "uk"), (DK_PATIENT, "dk"), (DK_STEPS, "dk")],
    ids=["uk-patient", "dk-patient", "dk-steps"],
)
def test_conformant_resources_break_no_rule(resource: dict[str, Any], nation: str) -> None:
    assert keys(resource, nation) == []


def test_cpr_numbers_are_not_checked_with_modulus_11() -> None:
    for value in (CPR_WITHOUT_MOD11, "2902871239", "0101001234"):
        assert keys(changed(DK_PATIENT, identifier=[cpr_number(value)]), "dk") == []


# -- shaping -------------------------------------------------------------------------------


def test_uk_export_claims_uk_core_and_drops_the_cpr_number() -> None:
    ours = patient(nhs_number(VALID_NHS), cpr_number(CPR_WITHOUT_MOD11))
    shaped = export_for(ours, "uk")
    assert shaped["meta"]["profile"] == [UK_CORE_PATIENT]
    assert shaped["identifier"] == [nhs_number(VALID_NHS)]
    assert ours["identifier"][1]["system"] == "urn:oid:1.2.208.176.1.2"  # input untouched


def test_dk_export_claims_dk_core_sets_cpr_use_and_drops_the_nhs_number() -> None:
    cpr = {"system": "urn:oid:1.2.208.176.1.2", "value": CPR_WITHOUT_MOD11}
    shaped = export_for(patient(cpr, nhs_number(VALID_NHS)), "dk")
    assert shaped["meta"]["profile"] == [DK_CORE_PATIENT]
    assert shaped["identifier"] == [{**cpr, "use": "official"}]


def test_dk_export_of_a_patient_without_identifiers_is_refused() -> None:
    with pytest.raises(ExportError) as caught:
        export_for(patient(nhs_number(VALID_NHS)), "dk")
    assert caught.value.rule.key == "dkcore-patient-identifier"


def test_uk_export_refuses_an_invalid_nhs_number() -> None:
    with pytest.raises(ExportError) as caught:
        export_for(patient(nhs_number(IG_EXAMPLE_FAILING_NHS)), "uk")
    assert caught.value.rule.key == "ukcore-nhs-number-check-digit"
    assert caught.value.where == "Patient.identifier[0]"


@pytest.mark.parametrize(
    ("nation", "profile"), [("uk", UK_CORE_OBSERVATION), ("dk", DK_CORE_OBSERVATION)]
)
def test_step_observations_export_to_both(nation: str, profile: str) -> None:
    shaped = export_for(daily_steps(), nation)  # type: ignore[arg-type]
    assert shaped["meta"]["profile"] == [profile]
    assert shaped["valueQuantity"] == daily_steps()["valueQuantity"]


@pytest.mark.parametrize("nation", ["uk", "dk"])
def test_score_observations_from_the_scoring_export(nation: str) -> None:
    answers = {**{f"phq-{i}": 2 for i in range(1, 9)}, **{f"pss-{i}": 2 for i in range(1, 11)}}
    qr = build_response("selfback-mental-health", answers)
    as_of = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    results = score_observations(qr, score_response(qr, as_of), as_of)
    observations = [r for r in results if r["resourceType"] == "Observation"]
    assert observations
    for observation in observations:
        assert export_for(observation, nation)["meta"]["profile"][0].endswith(  # type: ignore[arg-type]
            "UKCore-Observation" if nation == "uk" else "dk-core-observation"
        )


def test_dk_export_of_an_observation_without_subject_is_refused() -> None:
    with pytest.raises(ExportError) as caught:
        export_for(changed(daily_steps(), subject=None), "dk")
    assert caught.value.rule.key == "dkcore-observation-subject"


@pytest.mark.parametrize(
    "make", [weekly_careplan, step_goal, data_sharing_consent], ids=lambda f: f.__name__
)
@pytest.mark.parametrize("nation", ["uk", "dk"])
def test_types_without_a_verified_national_profile_pass_unchanged(make: Any, nation: str) -> None:
    ours = make()
    assert export_for(ours, nation) == ours  # type: ignore[arg-type]


def test_unknown_nation_is_refused() -> None:
    with pytest.raises(ValueError):
        export_for(daily_steps(), "se")  # type: ignore[arg-type]


def test_nhs_number_rule_agrees_with_the_write_path_check() -> None:
    import random

    from mappings.national_profiles import is_valid_nhs_number
    from profiles import is_valid_nhs_number as write_path_check

    rng = random.Random(11)
    numbers = [f"{rng.randrange(10**10):010d}" for _ in range(5000)]
    numbers += [VALID_NHS, IG_EXAMPLE_FAILING_NHS, "943476591", "94347659190", "943476591x"]
    assert [is_valid_nhs_number(n) for n in numbers] == [write_path_check(n) for n in numbers]
    assert sum(is_valid_nhs_number(n) for n in numbers) > 300  # both outcomes are exercised
