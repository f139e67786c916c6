"""Required and extensible bindings answered through the terminology service.

The validator answers R4 core ValueSets from its own tables (R4 fixes them) and asks the
``validate_code`` callable of ``ValidationOptions`` for any other ValueSet (FHIR R4
terminologies.html#strength: required -> error, extensible -> warning; a membership that
cannot be known is not checked). ``terminology.ValueSetMembership`` makes that callable
from a ``TerminologyService``; the server's reaches stored ValueSets.
"""

from __future__ import annotations

import copy
from typing import Any

import profiles
from terminology import ResourceListSource, TerminologyService, ValueSetMembership
from terminology.sources import ChainSource, packaged_source
from tests.profiles import builders

LOCAL = "http://example.org/fhir/CodeSystem/local"
STORED_VS = "http://example.org/fhir/ValueSet/local-codes"
SCORE_CODES = "http://selfback.example.org/fhir/ValueSet/score-observation-code"


def value_set(url: str, *codes: str) -> dict[str, Any]:
    return {
        "resourceType": "ValueSet",
        "url": url,
        "status": "active",
        "compose": {"include": [{"system": LOCAL, "concept": [{"code": c} for c in codes]}]},
    }


def membership(*resources: dict[str, Any]) -> ValueSetMembership:
    source = ChainSource(ResourceListSource(resources), packaged_source())
    return ValueSetMembership(TerminologyService(source))


def binding_issues(issues: list[profiles.Issue]) -> list[profiles.Issue]:
    return [i for i in issues if i.rule == "binding"]


# -- the callable ---------------------------------------------------------------------------


def test_membership_of_a_held_value_set() -> None:
    member = membership(value_set(STORED_VS, "a", "b"))
    assert member(STORED_VS, LOCAL, "a") is True
    assert member(STORED_VS, LOCAL, "c") is False
    assert member(STORED_VS, "http://example.org/other", "a") is False
    # A bare code (a `code` element has no system) matches in any system of the set.
    assert member(STORED_VS, None, "b") is True
    assert member(STORED_VS, None, "z") is False


def test_unknown_or_unexpandable_value_sets_answer_none() -> None:
    member = membership()
    assert member("http://example.org/fhir/ValueSet/nowhere", LOCAL, "a") is None
    # SNOMED CT filters: the service does not hold SNOMED CT, so nobody here can tell.
    assert (
        member("http://hl7.org/fhir/ValueSet/clinical-findings", "http://snomed.info/sct", "1")
        is None
    )


def test_packaged_programme_and_core_value_sets_are_reachable() -> None:
    member = membership()
    score = builders.prom_score()["code"]["coding"][0]
    assert member(SCORE_CODES, score["system"], score["code"]) is True
    assert member(SCORE_CODES, score["system"], "not-a-score") is False
    assert member("http://hl7.org/fhir/ValueSet/administrative-gender", None, "female") is True


def test_a_version_in_the_canonical_picks_that_version() -> None:
    old = {**value_set(STORED_VS, "a"), "version": "1"}
    new = {**value_set(STORED_VS, "a", "b"), "version": "2"}
    member = membership(old, new)
    assert member(f"{STORED_VS}|1", LOCAL, "b") is False
    assert member(f"{STORED_VS}|2", LOCAL, "b") is True
    assert member(STORED_VS, LOCAL, "b") is True  # the latest


# -- the validator with a callable ------------------------------------------------------------


def test_required_binding_to_our_value_set_consults_the_callable() -> None:
    score = builders.prom_score()
    calls: list[tuple[str, str | None, str]] = []

    def nothing_is_in(canonical: str, system: str | None, code: str) -> bool | None:
        calls.append((canonical, system, code))
        return False

    options = profiles.ValidationOptions(validate_code=nothing_is_in)
    found = binding_issues(profiles.validate(score, [profiles.PROM_SCORE], options=options))
    assert [(i.severity, i.expression) for i in found] == [("error", ("Observation.code",))]
    # R4 core ValueSets (observation-status, ...) come from the validator's tables.
    assert {c[0] for c in calls} == {SCORE_CODES}
    # Without a callable the packaged terminology answers: the score code is in the set.
    assert binding_issues(profiles.validate(score, [profiles.PROM_SCORE])) == []


def test_a_callable_that_cannot_tell_leaves_the_binding_unchecked() -> None:
    score = builders.prom_score()
    score["code"]["coding"][0]["code"] = "not-a-score"
    assert binding_issues(profiles.validate(score, [profiles.PROM_SCORE]))  # packaged: error
    options = profiles.ValidationOptions(validate_code=lambda *_: None)
    found = profiles.validate(score, [profiles.PROM_SCORE], options=options)
    assert binding_issues(found) == []


def test_stored_value_set_in_a_profile_binding() -> None:
    """A profile (as a client would store it) binding Patient.maritalStatus, required, to a
    ValueSet the validator's tables do not hold: the callable decides."""
    sd = copy.deepcopy(
        next(s for s in profiles.our_structure_definitions() if s["url"] == profiles.PATIENT)
    )
    sd["url"] = "http://example.org/fhir/StructureDefinition/local-marital"
    sd["name"] = "LocalMarital"
    sd.pop("differential", None)
    for element in sd["snapshot"]["element"]:
        if element["path"] == "Patient.maritalStatus":
            element["binding"] = {"strength": "required", "valueSet": STORED_VS}
    profiles.add_structure_definition(sd)
    options = profiles.ValidationOptions(validate_code=membership(value_set(STORED_VS, "a")))
    patient = builders.patient()
    patient["maritalStatus"] = {"coding": [{"system": LOCAL, "code": "b"}]}
    found = binding_issues(profiles.validate(patient, [sd["url"]], options=options))
    assert [(i.severity, i.expression) for i in found] == [("error", ("Patient.maritalStatus",))]
    patient["maritalStatus"] = {"coding": [{"system": LOCAL, "code": "a"}]}
    assert binding_issues(profiles.validate(patient, [sd["url"]], options=options)) == []
    # No code at all under a required binding that can be enumerated: an error too.
    patient["maritalStatus"] = {"text": "it is complicated"}
    found = binding_issues(profiles.validate(patient, [sd["url"]], options=options))
    assert [i.expression for i in found] == [("Patient.maritalStatus",)]


def test_answer_value_set_of_a_questionnaire_uses_the_callable() -> None:
    questionnaire = {
        "resourceType": "Questionnaire",
        "url": "http://example.org/fhir/Questionnaire/local",
        "status": "active",
        "item": [{"linkId": "q", "type": "choice", "answerValueSet": STORED_VS}],
    }
    response = {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": questionnaire["url"],
        "status": "completed",
        "item": [{"linkId": "q", "answer": [{"valueCoding": {"system": LOCAL, "code": "b"}}]}],
    }
    # The packaged terminology does not know the ValueSet: not checked.
    assert profiles.check_questionnaire_response(response, questionnaire) == []
    member = membership(value_set(STORED_VS, "a"))
    found = profiles.check_questionnaire_response(response, questionnaire, validate_code=member)
    assert [(i.rule, i.expression) for i in found] == [
        ("qr-answer-valueset", ("QuestionnaireResponse.item[0].answer[0]",))
    ]
    response["item"][0]["answer"][0]["valueCoding"]["code"] = "a"
    assert (
        profiles.check_questionnaire_response(response, questionnaire, validate_code=member) == []
    )
