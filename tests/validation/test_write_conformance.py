"""fhir_server.conformance: which writes are checked against what, on a real repository.

The hook sits in write_version, so these tests write through the create/update rooms on a
fresh database (SQLite, or PostgreSQL with SELFBACK_TEST_DB=postgresql) and look at what is refused (422), what is stored, and which warnings
the session keeps for the HTTP layer.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import profiles
from fhir_server import conformance
from fhir_server.errors import FhirError
from fhir_server.interactions.create import create
from fhir_server.interactions.update import update
from fhir_server.storage.database import open_database
from fhir_server.storage.migrate import upgrade
from fhir_server.storage.repository import Repository, WriteSession
from tests.conftest import drop_database, fresh_database_url
from tests.mappings.qr_builder import build_response
from tests.profiles import builders

SHARED_EXAMPLES = Path(__file__).resolve().parents[2] / ".." / "shared" / "fhir-r4" / "examples"
OUR_Q = "http://selfback.example.org/fhir/Questionnaire/"


@pytest.fixture
def own_database(tmp_path: Path) -> Iterator[str]:
    """A fresh database of the kind this run tests (the name marks the tests ``db``)."""
    url = fresh_database_url(tmp_path, "conformance")
    yield url
    drop_database(url)


@pytest.fixture
def repo(own_database: str) -> Iterator[Repository]:
    db = open_database(own_database)
    upgrade(db)
    yield Repository(db)
    db.dispose()


def bare(resource: dict[str, Any]) -> dict[str, Any]:
    """A builder's resource without its id, claimed profile and narrative."""
    out = copy.deepcopy(resource)
    for key in ("id", "meta", "text"):
        out.pop(key, None)
    return out


def write(repo: Repository, resource: dict[str, Any]) -> tuple[int, list[Any]]:
    def work(session: WriteSession) -> tuple[int, list[Any]]:
        outcome = create(session, resource["resourceType"], resource, now=1)
        return outcome.status, conformance.take_warnings(session)

    return repo.write(work)


def refused(repo: Repository, resource: dict[str, Any]) -> list[tuple[str, tuple[str, ...]]]:
    with pytest.raises(FhirError) as caught:
        write(repo, resource)
    assert caught.value.status == 422
    return [(i.severity, i.expression) for i in caught.value.issues if i.severity == "error"]


def count(repo: Repository, rtype: str) -> int:
    from sqlalchemy import func, select

    from fhir_server.storage.schema import resource

    with repo.db.reader.connect() as conn:
        query = select(func.count()).select_from(resource).where(resource.c.rtype == rtype)
        return int(conn.execute(query).scalar_one())


# -- which resources are programme resources ------------------------------------------------

PAIN_NRS = {
    "resourceType": "Observation",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "72514-3"}]},
    "valueQuantity": {"value": 4},
}


@pytest.mark.parametrize(
    ("resource", "profile"),
    [
        (bare(builders.patient(builders.nhs_number("9434765919"))), profiles.PATIENT),
        (bare(builders.patient(builders.cpr_number("0101001234"))), profiles.PATIENT),
        (bare(builders.patient()), None),
        (bare(builders.daily_steps()), profiles.DAILY_STEPS),
        (bare(builders.prom_score()), profiles.PROM_SCORE),
        ({**bare(builders.prom_score()), "code": PAIN_NRS["code"]}, profiles.PROM_SCORE),
        (PAIN_NRS, None),  # an EHR's pain score: LOINC 72514-3 without our method
        (bare(builders.weekly_careplan()), profiles.WEEKLY_CAREPLAN),
        ({**bare(builders.weekly_careplan()), "instantiatesCanonical": ["http://x.org/P"]}, None),
        (bare(builders.programme_response()), profiles.PROGRAMME_RESPONSE),
        ({**bare(builders.programme_response()), "questionnaire": "http://x.org/Q"}, None),
        (bare(builders.step_goal()), profiles.STEP_GOAL),
        ({**bare(builders.step_goal()), "target": []}, None),
        (bare(builders.data_sharing_consent()), None),  # generic shape: HL7's examples too
        (
            {**bare(builders.data_sharing_consent()), "policy": [{"uri": OUR_Q[:-14] + "x"}]},
            profiles.DATA_SHARING_CONSENT,
        ),
        ({"resourceType": "Encounter", "status": "finished"}, None),
    ],
    ids=lambda v: (
        (v or "none").rsplit("/", 1)[-1] if not isinstance(v, dict) else str(v["resourceType"])
    ),
)
def test_programme_resources_are_recognised(resource: dict[str, Any], profile: str | None) -> None:
    assert conformance.programme_profile(resource) == profile


@pytest.mark.skipif(not SHARED_EXAMPLES.exists(), reason="../shared is absent")
def test_no_official_r4_example_is_taken_for_a_programme_resource() -> None:
    for path in sorted((SHARED_EXAMPLES / "json").glob("*.json")):
        example = json.loads(path.read_text(encoding="utf-8"))
        assert conformance.programme_profile(example) is None, path.name


# -- profiles on write ------------------------------------------------------------------------


def test_programme_resource_breaking_our_profile_is_refused_and_not_stored(
    repo: Repository,
) -> None:
    steps = bare(builders.daily_steps())
    steps["valueQuantity"]["code"] = "steps"
    assert refused(repo, steps) == [("error", ("Observation.value.ofType(Quantity).code",))]
    assert count(repo, "Observation") == 0


def test_programme_resource_keeping_our_profile_is_stored_without_warnings(
    repo: Repository,
) -> None:
    assert write(repo, bare(builders.daily_steps())) == (201, [])


def test_claimed_profile_is_checked_even_for_a_resource_that_is_not_ours(
    repo: Repository,
) -> None:
    vital = {
        "resourceType": "Observation",
        "meta": {"profile": ["http://hl7.org/fhir/StructureDefinition/vitalsigns"]},
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2"}]},
    }
    errors = refused(repo, vital)
    assert ("error", ("Observation",)) in errors  # category, subject ... 1..* in vitalsigns


def test_unknown_profile_is_a_warning_at_its_meta_profile(repo: Repository) -> None:
    resource = {
        "resourceType": "Patient",
        "meta": {"profile": ["http://example.org/fhir/StructureDefinition/nobody-knows"]},
    }
    status, warnings = write(repo, resource)
    assert status == 201
    assert [(w.severity, w.expression) for w in warnings] == [
        ("warning", ("Patient.meta.profile[0]",))
    ]


def test_profile_for_another_type_is_refused(repo: Repository) -> None:
    resource = {"resourceType": "Patient", "meta": {"profile": [profiles.DAILY_STEPS]}}
    assert refused(repo, resource) == [("error", ("Patient.meta.profile[0]",))]


def test_unknown_extension_is_a_warning(repo: Repository) -> None:
    steps = bare(builders.daily_steps())
    steps["extension"] = [{"url": "https://wearables.test/fhir/ext/device", "valueString": "x"}]
    status, warnings = write(repo, steps)
    assert status == 201
    assert [w.expression for w in warnings] == [("Observation.extension[0]",)]


def test_stored_structure_definition_is_used_as_a_profile(repo: Repository) -> None:
    ours = next(
        sd for sd in profiles.our_structure_definitions() if sd["url"] == profiles.DAILY_STEPS
    )
    url = "http://example.org/fhir/StructureDefinition/site-steps"
    stored = {**ours, "id": "site-steps", "url": url, "name": "SiteSteps"}
    assert write(repo, stored)[0] == 201
    claimed = {**bare(builders.daily_steps()), "meta": {"profile": [url]}}
    claimed["code"] = {"coding": [{"system": "http://loinc.org", "code": "55423-8"}]}
    errors = refused(repo, claimed)  # the stored profile's code pattern is 41950-7
    assert ("error", ("Observation.code",)) in errors


def test_stored_structure_definition_without_snapshot_is_a_warning(repo: Repository) -> None:
    differential = {
        "resourceType": "StructureDefinition",
        "url": "http://example.org/fhir/StructureDefinition/diff-only",
        "name": "DiffOnly",
        "status": "draft",
        "kind": "resource",
        "abstract": False,
        "type": "Patient",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Patient",
        "derivation": "constraint",
        "differential": {"element": [{"id": "Patient", "path": "Patient"}]},
    }
    assert write(repo, differential)[0] == 201
    resource = {"resourceType": "Patient", "meta": {"profile": [differential["url"]]}}
    status, warnings = write(repo, resource)
    assert status == 201
    assert [w.code for w in warnings] == ["not-supported"]


def test_national_identifiers_follow_their_rules(repo: Repository) -> None:
    bad_nhs = bare(builders.patient(builders.nhs_number("9434765918")))
    assert refused(repo, bad_nhs) == [("error", ("Patient.identifier[0]",))]
    cpr_failing_mod11 = bare(builders.patient(builders.cpr_number("0702921234")))
    assert write(repo, cpr_failing_mod11)[0] == 201
    bad_cpr = bare(builders.patient(builders.cpr_number("3102901234")))
    assert refused(repo, bad_cpr) == [("error", ("Patient.identifier[0]",))]


def test_update_is_checked_too(repo: Repository) -> None:
    steps = {**bare(builders.daily_steps()), "id": "s-1"}
    repo.write(lambda s: update(s, "Observation", "s-1", steps, now=1))
    broken = copy.deepcopy(steps)
    broken["valueQuantity"]["value"] = 10.5
    with pytest.raises(FhirError) as caught:
        repo.write(lambda s: update(s, "Observation", "s-1", broken, now=2))
    assert caught.value.status == 422


def test_resources_that_are_not_ours_and_claim_nothing_are_not_profiled(
    repo: Repository,
) -> None:
    odd = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "anything"},
        "extension": [{"url": "http://example.org/unknown", "valueString": "x"}],
    }
    assert write(repo, odd) == (201, [])


# -- QuestionnaireResponse against its Questionnaire ----------------------------------------


PHQ = {**{f"phq-{i}": 2 for i in range(1, 9)}, **{f"pss-{i}": 2 for i in range(1, 11)}}


def test_programme_response_is_checked_against_the_packaged_questionnaire(
    repo: Repository,
) -> None:
    qr = build_response("selfback-mental-health", PHQ)
    qr.pop("id")
    assert write(repo, qr)[0] == 201
    qr["item"][0]["item"][1]["answer"] = [{"valueInteger": 2}]
    errors = refused(repo, qr)
    assert errors == [("error", ("QuestionnaireResponse.item[0].item[1].answer[0]",))]


def test_unknown_version_of_our_questionnaire_is_refused(repo: Repository) -> None:
    qr = build_response("selfback-mental-health", PHQ)
    qr["questionnaire"] = OUR_Q + "selfback-mental-health|9.9.9"
    assert refused(repo, qr) == [("error", ("QuestionnaireResponse.questionnaire",))]


def test_unknown_foreign_questionnaire_is_a_warning(repo: Repository) -> None:
    qr = {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": "http://example.org/fhir/Questionnaire/elsewhere",
        "status": "completed",
        "item": [{"linkId": "1", "answer": [{"valueString": "x"}]}],
    }
    status, warnings = write(repo, qr)
    assert status == 201
    assert [w.expression for w in warnings] == [("QuestionnaireResponse.questionnaire",)]


FOREIGN_Q = {
    "resourceType": "Questionnaire",
    "url": "http://example.org/fhir/Questionnaire/intake",
    "version": "2",
    "status": "active",
    "item": [
        {"linkId": "smoker", "text": "Do you smoke?", "type": "boolean", "required": True},
        {
            "linkId": "per-day",
            "text": "How many per day?",
            "type": "integer",
            "enableWhen": [{"question": "smoker", "operator": "=", "answerBoolean": True}],
        },
    ],
}


def foreign_response(*items: dict[str, Any], canonical: str | None = None) -> dict[str, Any]:
    return {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": canonical or "http://example.org/fhir/Questionnaire/intake|2",
        "status": "completed",
        **({"item": list(items)} if items else {}),
    }


def test_stored_questionnaire_is_found_by_url_and_version(repo: Repository) -> None:
    write(repo, FOREIGN_Q)
    ok = foreign_response({"linkId": "smoker", "answer": [{"valueBoolean": False}]})
    assert write(repo, ok) == (201, [])
    disabled = foreign_response(
        {"linkId": "smoker", "answer": [{"valueBoolean": False}]},
        {"linkId": "per-day", "answer": [{"valueInteger": 5}]},
    )
    assert refused(repo, disabled) == [("error", ("QuestionnaireResponse.item[1]",))]
    missing = foreign_response(canonical="http://example.org/fhir/Questionnaire/intake")
    assert refused(repo, missing) == [("error", ("QuestionnaireResponse",))]
    other_version = foreign_response(canonical="http://example.org/fhir/Questionnaire/intake|3")
    assert write(repo, other_version)[1][0].expression == ("QuestionnaireResponse.questionnaire",)


def test_contained_questionnaire_is_used_for_a_fragment_reference(repo: Repository) -> None:
    contained = {**FOREIGN_Q, "id": "q"}
    contained.pop("url")
    qr = foreign_response({"linkId": "smoker", "answer": [{"valueString": "no"}]}, canonical="#q")
    qr["contained"] = [contained]
    assert refused(repo, qr) == [("error", ("QuestionnaireResponse.item[0].answer[0]",))]


def test_warnings_do_not_outlive_their_session(repo: Repository) -> None:
    resource = {
        "resourceType": "Patient",
        "meta": {"profile": ["http://example.org/fhir/StructureDefinition/nobody-knows"]},
    }
    first = repo.write(
        lambda s: conformance.with_warnings(lambda t: create(t, "Patient", resource, now=1))(s)
    )
    assert len(first[1]) == 1
    second = repo.write(
        lambda s: conformance.with_warnings(
            lambda t: create(t, "Patient", {"resourceType": "Patient"}, now=2)
        )(s)
    )
    assert second[1] == []


def test_header_values_are_ascii_and_bounded() -> None:
    from fhir_server.errors import Issue

    issues = [Issue("x", "ø" * 500 + "\nnext", "warning", ("Patient.name[0]",))] * 12
    values = conformance.header_values(issues)
    assert len(values) == 10
    assert all(v.isascii() and len(v) <= 300 and "\n" not in v for v in values)


# -- the server's own content ------------------------------------------------------------------


def test_content_loaded_at_start_up_passes_write_time_validation(repo: Repository) -> None:
    import orjson

    from fhir_server.content import programme_content
    from fhir_server.interactions.transaction import BundleOptions, process_bundle
    from fhir_server.loading import as_transaction

    bundle = as_transaction(programme_content())
    response = orjson.loads(process_bundle(repo, bundle, BundleOptions("http://localhost/fhir", 1)))
    statuses = {entry["response"]["status"][:3] for entry in response["entry"]}
    assert statuses == {"201"}
    assert [e["response"]["outcome"] for e in response["entry"] if "outcome" in e["response"]] == []
