"""Consent over HTTP: nested provisions and data classes, the CareTeam link, full history
pages for a restricted token, and tokens revoked when a patient withdraws consent
(SEC-02, docs/AUTH.md "Consent"). The rules themselves are table-tested in
test_auth_consent_rules.py."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.auth.access_world import World, body_for, care_team, consent
from tests.auth.smart_app import bearer

pytestmark = pytest.mark.db

RESOURCE_TYPES = "http://hl7.org/fhir/resource-types"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as client:
        yield client


def match_ids(bundle: dict[str, Any]) -> set[str]:
    return {e["resource"]["id"] for e in bundle.get("entry", []) if "resource" in e}


def doctor_of(world: World, patient: str, family: str) -> tuple[str, dict[str, str]]:
    """A new Practitioner in a CareTeam of ``patient``, with a user/*.rs token."""
    doctor = world.create({"resourceType": "Practitioner", "name": [{"family": family}]})
    world.create(care_team(patient, f"Practitioner/{doctor}"))
    token = world.mint("user/*.rs", role="practitioner", fhir_user=f"Practitioner/{doctor}")
    return doctor, bearer(token)


# -- data classes and nested provisions -----------------------------------------------------------


def test_a_grant_of_observations_only_hides_the_patients_other_data(
    world: World, http: httpx.Client
) -> None:
    patient = world.smart.new_patient("Classen")
    obs = world.create(body_for("Observation", patient))
    qr = world.create(body_for("QuestionnaireResponse", patient))
    doctor, token = doctor_of(world, patient, "Observations-only")
    granted = consent(patient, f"Practitioner/{doctor}")
    granted["provision"]["class"] = [{"system": RESOURCE_TYPES, "code": "Observation"}]
    world.create(granted)

    assert http.get(f"{world.fhir}/Observation/{obs}", headers=token).status_code == 200
    assert http.get(f"{world.fhir}/QuestionnaireResponse/{qr}", headers=token).status_code == 404
    assert http.get(f"{world.fhir}/Patient/{patient}", headers=token).status_code == 404
    found = http.get(
        f"{world.fhir}/Observation", params={"subject": f"Patient/{patient}"}, headers=token
    )
    assert found.status_code == 200 and match_ids(found.json()) == {obs}
    hidden = http.get(
        f"{world.fhir}/QuestionnaireResponse",
        params={"subject": f"Patient/{patient}"},
        headers=token,
    )
    assert hidden.status_code == 200 and match_ids(hidden.json()) == set()
    # the class narrows inside the SQL: a system search and its total see Observations only
    everything = http.get(
        f"{world.fhir}/",
        params={"_id": f"{obs},{qr}", "_total": "accurate"},
        headers=token,
    ).json()
    assert match_ids(everything) == {obs} and everything["total"] == 1


def test_a_deny_exception_inside_a_permit_and_its_withdrawal_of_one_class(
    world: World, http: httpx.Client
) -> None:
    patient = world.smart.new_patient("Nested")
    obs = world.create(body_for("Observation", patient))
    qr = world.create(body_for("QuestionnaireResponse", patient))
    doctor, token = doctor_of(world, patient, "Exception")
    granted = consent(patient, f"Practitioner/{doctor}")
    granted["provision"]["provision"] = [
        {"type": "deny", "class": [{"system": RESOURCE_TYPES, "code": "QuestionnaireResponse"}]}
    ]
    world.create(granted)
    assert http.get(f"{world.fhir}/Observation/{obs}", headers=token).status_code == 200
    assert http.get(f"{world.fhir}/QuestionnaireResponse/{qr}", headers=token).status_code == 404
    searched = http.get(
        f"{world.fhir}/QuestionnaireResponse", params={"_id": qr}, headers=token
    ).json()
    assert match_ids(searched) == set()


def test_a_permit_exception_inside_a_patients_blanket_deny(
    world: World, http: httpx.Client
) -> None:
    patient = world.smart.new_patient("Blanket")
    obs = world.create(body_for("Observation", patient))
    goal = world.create(body_for("Goal", patient))
    doctor, token = doctor_of(world, patient, "Excepted")
    refusal = consent(patient, f"Patient/{patient}", kind="deny")
    refusal["provision"]["provision"] = [
        {
            "type": "permit",
            "actor": [
                {
                    "role": {"coding": [{"system": PARTICIPATION, "code": "PRCP"}]},
                    "reference": {"reference": f"Practitioner/{doctor}"},
                }
            ],
            "class": [{"system": RESOURCE_TYPES, "code": "Observation"}],
        }
    ]
    world.create(refusal)
    assert http.get(f"{world.fhir}/Observation/{obs}", headers=token).status_code == 200
    assert http.get(f"{world.fhir}/Goal/{goal}", headers=token).status_code == 404
    # another clinician in the same CareTeam is refused by the blanket deny
    _, other = doctor_of(world, patient, "Not-excepted")
    assert http.get(f"{world.fhir}/Observation/{obs}", headers=other).status_code == 404


def test_a_data_period_is_decided_per_resource_on_a_read(world: World, http: httpx.Client) -> None:
    patient = world.smart.new_patient("Period")
    early = world.create(body_for("Observation", patient) | {"effectiveDateTime": "2026-01-10"})
    late = world.create(body_for("Observation", patient) | {"effectiveDateTime": "2026-06-10"})
    doctor, token = doctor_of(world, patient, "Period")
    granted = consent(patient, f"Practitioner/{doctor}")
    granted["provision"]["dataPeriod"] = {"start": "2026-01-01", "end": "2026-03-31"}
    world.create(granted)
    assert http.get(f"{world.fhir}/Observation/{early}", headers=token).status_code == 200
    assert http.get(f"{world.fhir}/Observation/{late}", headers=token).status_code == 404
    # a search cannot see the data's dates: the type fails closed for this patient
    searched = http.get(
        f"{world.fhir}/Observation", params={"_id": f"{early},{late}"}, headers=token
    ).json()
    assert match_ids(searched) == set()


# -- the CareTeam link ------------------------------------------------------------------------------


def test_a_consent_without_a_care_team_link_shows_nothing(world: World, http: httpx.Client) -> None:
    patient = world.smart.new_patient("Unlinked")
    obs = world.create(body_for("Observation", patient))
    doctor = world.create({"resourceType": "Practitioner", "name": [{"family": "Unlinked"}]})
    token = bearer(world.mint("user/*.rs", role="practitioner", fhir_user=f"Practitioner/{doctor}"))
    world.create(consent(patient, f"Practitioner/{doctor}"))
    url = f"{world.fhir}/Observation/{obs}"
    assert http.get(url, headers=token).status_code == 404
    ended = datetime.now(UTC) - timedelta(days=1)
    team = care_team(patient, f"Practitioner/{doctor}", period={"end": ended.isoformat()})
    world.create(team)
    assert http.get(url, headers=token).status_code == 404  # the team's period is over
    role = world.create(
        {
            "resourceType": "PractitionerRole",
            "active": True,
            "practitioner": {"reference": f"Practitioner/{doctor}"},
        }
    )
    world.create(care_team(patient, f"PractitionerRole/{role}"))
    assert http.get(url, headers=token).status_code == 200  # linked through their role
    searched = http.get(f"{world.fhir}/Observation", params={"_id": obs}, headers=token).json()
    assert match_ids(searched) == {obs}


# -- history: full pages of what the token may see -------------------------------------------------


def pages(
    http: httpx.Client, url: str, params: dict[str, str], headers: dict[str, str]
) -> list[list[dict[str, Any]]]:
    found = []
    response = http.get(url, params=params, headers=headers)
    while True:
        assert response.status_code == 200, response.text
        bundle = response.json()
        found.append(bundle.get("entry", []))
        following = [link["url"] for link in bundle.get("link", []) if link["relation"] == "next"]
        if not following:
            return found
        response = http.get(following[0], headers=headers)


def entry_key(entry: dict[str, Any]) -> tuple[str, str]:
    return entry["fullUrl"], entry["response"]["etag"]


def test_a_patients_history_pages_are_full_and_only_theirs(
    world: World, http: httpx.Client
) -> None:
    mine_patient = world.smart.new_patient("History-mine")
    stored = http.get(f"{world.fhir}/Patient/{mine_patient}", headers=world.admin()).json()
    since = stored["meta"]["lastUpdated"]  # the server's own clock
    theirs_patient = world.smart.new_patient("History-theirs")
    mine: list[str] = []
    theirs: list[str] = []
    for _ in range(7):  # interleaved: one of theirs between each two of mine
        mine.append(world.create(body_for("Observation", mine_patient)))
        theirs.append(world.create(body_for("Observation", theirs_patient)))
        theirs.append(world.create(body_for("Observation", theirs_patient)))
    admin = world.admin()
    assert http.delete(f"{world.fhir}/Observation/{mine[0]}", headers=admin).status_code == 204
    assert http.delete(f"{world.fhir}/Observation/{theirs[0]}", headers=admin).status_code == 204
    token = bearer(world.mint("patient/*.rs", role="patient", patient=mine_patient))

    found = pages(http, f"{world.fhir}/Observation/_history", {"_count": "3"}, token)
    entries = [e for page in found for e in page]
    assert all(len(page) == 3 for page in found[:-1])  # every page but the last is full
    assert len(found[-1]) <= 3
    ids = {e["fullUrl"].rsplit("/", 1)[-1] for e in entries}
    assert set(mine) <= ids and not ids & set(theirs)
    deletions = [e for e in entries if e["request"]["method"] == "DELETE"]
    # the deletion of its own Observation is there, the other patient's is not
    assert [e["fullUrl"].rsplit("/", 1)[-1] for e in deletions] == [mine[0]]
    keys = [entry_key(e) for e in entries]
    assert len(keys) == len(set(keys))  # no entry twice across pages

    # system level, from before this test: its own data (and shared definitions) only
    found = pages(http, f"{world.fhir}/_history", {"_count": "4", "_since": since_of(since)}, token)
    entries = [e for page in found for e in page]
    assert all(len(page) == 4 for page in found[:-1])
    ids = {e["fullUrl"].rsplit("/", 1)[-1] for e in entries}
    assert set(mine) | {mine_patient} <= ids
    assert not ids & ({theirs_patient} | set(theirs))


def since_of(value: str) -> str:
    """An instant a little before ``value`` (the server's own clock), for ``_since``."""
    moment = datetime.fromisoformat(value.replace("Z", "+00:00")) - timedelta(seconds=1)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- revocation on withdrawal -----------------------------------------------------------------------


def introspect(world: World, token: str) -> dict[str, Any]:
    clinician = world.smart.apps["clinician"]
    assert clinician.secret is not None
    response = httpx.post(
        world.smart.url + "/auth/introspect",
        data={"token": token},
        auth=(clinician.client_id, clinician.secret),
    )
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


@pytest.mark.parametrize("withdrawal", ["inactive", "entered-in-error", "later deny", "deleted"])
def test_withdrawing_consent_revokes_the_clinicians_tokens(
    world: World, http: httpx.Client, withdrawal: str
) -> None:
    patient = world.smart.new_patient("Withdraws")
    obs = world.create(body_for("Observation", patient))
    doctor = world.create({"resourceType": "Practitioner", "name": [{"family": "Revoked"}]})
    world.create(care_team(patient, f"Practitioner/{doctor}"))
    granted = consent(patient, f"Practitioner/{doctor}")
    cid = world.create(granted)
    clinician = world.mint(
        "user/*.rs", role="practitioner", fhir_user=f"Practitioner/{doctor}", app="clinician"
    )
    # a grant launched for another patient with patient/ scopes only is not this patient's
    elsewhere = world.mint(
        "patient/*.rs",
        role="practitioner",
        fhir_user=f"Practitioner/{doctor}",
        patient=world.b,
        app="clinician",
    )
    url = f"{world.fhir}/Observation/{obs}"
    assert http.get(url, headers=bearer(clinician)).status_code == 200
    assert introspect(world, clinician)["active"] is True

    # the patient withdraws, with their own app's token
    own = bearer(world.mint("patient/*.cruds", role="patient", patient=patient))
    if withdrawal == "deleted":
        answer = http.delete(f"{world.fhir}/Consent/{cid}", headers=own)
        assert answer.status_code == 204
    elif withdrawal == "later deny":
        refusal = consent(
            patient, f"Practitioner/{doctor}", kind="deny", when="2026-03-01T00:00:00Z"
        )
        assert http.post(f"{world.fhir}/Consent", json=refusal, headers=own).status_code == 201
    else:
        changed = granted | {"id": cid, "status": withdrawal}
        answer = http.put(f"{world.fhir}/Consent/{cid}", json=changed, headers=own)
        assert answer.status_code == 200, answer.text

    assert introspect(world, clinician) == {"active": False}
    assert http.get(url, headers=bearer(clinician)).status_code == 401
    assert introspect(world, elsewhere)["active"] is True


def test_a_change_that_leaves_the_permit_revokes_nothing(world: World, http: httpx.Client) -> None:
    patient = world.smart.new_patient("Keeps")
    obs = world.create(body_for("Observation", patient))
    doctor, token = doctor_of(world, patient, "Kept")
    world.create(consent(patient, f"Practitioner/{doctor}"))
    other = world.create(consent(patient, f"Practitioner/{doctor}", when="2026-02-01T00:00:00Z"))
    # one of two permits withdrawn: the other still permits, the token lives on
    withdrawn = consent(patient, f"Practitioner/{doctor}", status="inactive", when="2025-01-01")
    assert world.put(withdrawn | {"id": other}).status_code == 200
    assert http.get(f"{world.fhir}/Observation/{obs}", headers=token).status_code == 200
