"""NHS number (modulus 11) and CPR number (date format, no modulus 11), as functions and as the
invariants of the nhsNumber and cpr slices of our Patient profile."""

from __future__ import annotations

import pytest
from fhirpathpy import evaluate
from fhirpathpy.models import models

import profiles
from profiles.national_identifiers import is_valid_nhs_number, is_well_formed_cpr, nhs_check_digit
from tests.profiles.builders import cpr_number, nhs_number, patient

# Check digits worked by hand: weights 10..2 on the first nine digits, check = 11 - sum mod 11.
NHS_CHECK_DIGITS = [
    # 4*10 + 0*9 + 1*8 + 0*7 + 2*6 + 3*5 + 2*4 + 1*3 + 3*2 = 92; 92 mod 11 = 4; 11 - 4 = 7
    ("401023213", 7),
    # 9*10 + 4*9 + 3*8 + 4*7 + 7*6 + 6*5 + 5*4 + 9*3 + 1*2 = 299; 299 mod 11 = 2; 11 - 2 = 9
    ("943476591", 9),
    # 6*10 + 3*2 = 66; 66 mod 11 = 0; 11 - 0 = 11, which means 0
    ("600000003", 0),
    # 1*10 + 1*2 = 12; 12 mod 11 = 1; 11 - 1 = 10: no valid NHS number starts like this
    ("100000001", None),
    # 1*10 + 2*9 + 3*8 + 4*7 + 5*6 + 6*5 + 7*4 + 8*3 + 9*2 = 210; 210 mod 11 = 1: check 10
    ("123456789", None),
]

VALID_NHS_NUMBERS = ["4010232137", "9434765919", "6000000030", "9912003888", "9449306753"]
INVALID_NHS_NUMBERS = [
    "4010232138",  # wrong check digit
    "9434765918",  # wrong check digit
    "1000000010",  # check digit would be 10: never issued, whatever the last digit
    "1234567890",  # the same, for a familiar-looking number
    "9912003814",  # UK Core example number that fails the check
    "4123456879",  # UK Core example number that fails the check
    "943476591",  # nine digits
    "94347659190",  # eleven digits
    "943 476 5919",  # spaces are formatting, not part of the identifier value
    "943476591X",
]


@pytest.mark.parametrize(("first_nine", "check"), NHS_CHECK_DIGITS)
def test_nhs_check_digit_is_eleven_minus_weighted_sum_mod_eleven(first_nine, check):
    assert nhs_check_digit(first_nine) == check


@pytest.mark.parametrize("number", VALID_NHS_NUMBERS)
def test_valid_nhs_numbers_pass_the_modulus_11_check(number):
    assert is_valid_nhs_number(number)


@pytest.mark.parametrize("number", INVALID_NHS_NUMBERS)
def test_invalid_nhs_numbers_fail_the_modulus_11_check(number):
    assert not is_valid_nhs_number(number)


@pytest.mark.parametrize("number", VALID_NHS_NUMBERS)
def test_patient_with_a_valid_nhs_number_conforms(number):
    assert profiles.validate(patient(nhs_number(number))) == []


@pytest.mark.parametrize("number", INVALID_NHS_NUMBERS)
def test_patient_with_an_invalid_nhs_number_is_rejected_at_the_identifier(number):
    issues = profiles.validate(patient(nhs_number(number)))
    assert [(i.rule, i.severity, i.expression) for i in issues] == [
        ("selfback-nhs-1", "error", ("Patient.identifier[0]",))
    ]


def test_the_nhs_check_runs_as_the_registered_function_not_the_fhirpath():
    assert "selfback-nhs-1" in profiles.registered_checks()


@pytest.mark.parametrize("number", VALID_NHS_NUMBERS + INVALID_NHS_NUMBERS[:6])
def test_the_portable_fhirpath_of_the_nhs_invariant_agrees_with_the_function(number):
    # Other validators evaluate the FHIRPath in the profile; it must say the same thing.
    definition = next(
        sd for sd in profiles.our_structure_definitions() if sd["url"] == profiles.PATIENT
    )
    element = next(
        e for e in definition["snapshot"]["element"] if e["id"] == "Patient.identifier:nhsNumber"
    )
    expression = next(c for c in element["constraint"] if c["key"] == "selfback-nhs-1")[
        "expression"
    ]
    result = evaluate(nhs_number(number), expression, model=models["r4"])
    assert result == [is_valid_nhs_number(number)]


def test_an_nhs_number_is_only_checked_under_its_system():
    other = {"system": "urn:oid:2.16.840.1.113883.2.1.4.1", "value": "1234567890"}
    assert profiles.validate(patient(other)) == []


def test_a_patient_has_at_most_one_nhs_number():
    issues = profiles.validate(patient(nhs_number("9434765919"), nhs_number("9912003888")))
    assert [i.rule for i in issues] == ["slice-cardinality"]
    assert "Patient.identifier:nhsNumber" in issues[0].diagnostics


# --- CPR -----------------------------------------------------------------------------------

WELL_FORMED_CPR = [
    "0108589995",  # DK Core's example: fails modulus 11, which must not matter
    "0108589996",  # the same date and any serial
    "2902001234",  # 29 February is always accepted (the century is not known from DDMMYY)
    "3112991234",  # 31 December
    "3004751234",  # 30 April
    "0101000000",
]
MALFORMED_CPR = [
    "3002001234",  # 30 February
    "3104751234",  # 31 April
    "0013751234",  # month 13
    "0001751234",  # day 00
    "3200751234",  # day 32, month 00
    "010858-9995",  # the hyphen is presentation, not part of the value
    "010858999",  # nine digits
    "01085899950",  # eleven digits
    "01085899A5",
]


@pytest.mark.parametrize("number", WELL_FORMED_CPR)
def test_well_formed_cpr_numbers_are_accepted_without_modulus_11(number):
    assert is_well_formed_cpr(number)
    assert profiles.validate(patient(cpr_number(number))) == []


@pytest.mark.parametrize("number", MALFORMED_CPR)
def test_malformed_cpr_numbers_are_rejected(number):
    assert not is_well_formed_cpr(number)
    issues = profiles.validate(patient(cpr_number(number)))
    assert "selfback-cpr-1" in {i.rule for i in issues}
    assert all(i.expression[0].startswith("Patient.identifier[0]") for i in issues)


def test_a_cpr_value_longer_than_ten_characters_breaks_the_max_length():
    issues = profiles.validate(patient(cpr_number("01085899950")))
    assert ("max-length", ("Patient.identifier[0].value",)) in {
        (i.rule, i.expression) for i in issues
    }


def test_a_cpr_identifier_is_official():
    issues = profiles.validate(patient({**cpr_number("0108589995"), "use": "usual"}))
    assert [(i.rule, i.expression) for i in issues] == [("fixed", ("Patient.identifier[0].use",))]


def test_both_national_identifiers_may_be_present():
    both = patient(nhs_number("9434765919"), cpr_number("0108589995"))
    assert profiles.validate(both) == []
