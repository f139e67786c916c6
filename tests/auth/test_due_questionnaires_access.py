"""``Patient/{id}/$due-questionnaires`` with real tokens (issue 11, item 5): the patient app
reads its own schedule of questions; another patient's answers as a read of that Patient
would (the access Gate, docs/AUTH.md); a clinician with the patient's Consent reads it, one
without does not; a backend client with system scopes does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.auth.access_world import KINDS, World, expected_read
from tests.planning.enrolment import (
    baseline_response,
    practitioner_role,
    programme_plan,
    transaction,
)


def _enrol(world: World, pid: str) -> None:
    """A programme for an existing Patient: clinician role, programme CarePlan (started a
    week ago) and the baseline, written with the set-up client."""
    today = datetime.now(UTC).date()
    start = today - timedelta(days=7)
    role = f"{pid}-physio"
    resources = [
        practitioner_role(role),
        programme_plan(f"{pid}-programme", pid, role, start),
        baseline_response(f"{pid}-baseline", pid, start),
    ]
    answer = httpx.post(
        f"{world.fhir}/", json=transaction(resources), headers=world.admin(), timeout=60
    )
    assert answer.status_code == 200, answer.text


@pytest.fixture(scope="module")
def enrolled(world: World) -> World:
    _enrol(world, world.a)
    _enrol(world, world.b)
    return world


def _due(world: World, kind: str, pid: str) -> httpx.Response:
    return httpx.get(
        f"{world.fhir}/Patient/{pid}/$due-questionnaires", headers=world.as_(kind), timeout=60
    )


def _canonicals(body: dict[str, Any]) -> set[str]:
    return {
        part["valueCanonical"].split("|")[0].rsplit("/", 1)[1]
        for p in body["parameter"]
        if p["name"] == "questionnaire"
        for part in p["part"]
        if part["name"] == "canonical"
    }


@pytest.mark.parametrize(
    "kind",
    [
        "patient-v2-cruds",
        "patient-v1-read",
        "user-v2-consented",
        "user-v1-read-stranger",
        "system-v1-read",
    ],
)
@pytest.mark.parametrize("owner", ["a", "b"])
def test_the_schedule_is_read_as_the_patient_is(enrolled: World, kind: str, owner: str) -> None:
    pid = enrolled.a if owner == "a" else enrolled.b
    answer = _due(enrolled, kind, pid)
    expected = expected_read(KINDS[kind], "Patient", owner)
    assert answer.status_code == expected, answer.text
    if expected == 200:
        assert {"selfback-goal-setting", "selfback-weekly"} == _canonicals(answer.json())
    else:
        assert answer.json()["resourceType"] == "OperationOutcome"


def test_the_patient_app_reads_its_own_schedule(enrolled: World) -> None:
    answer = _due(enrolled, "patient-v2-cruds", enrolled.a)
    assert answer.status_code == 200, answer.text
    weekly = next(
        part["resource"]
        for p in answer.json()["parameter"]
        if p["name"] == "questionnaire"
        for part in p["part"]
        if part["name"] == "resource" and part["resource"]["url"].endswith("weekly")
    )
    assert [i["linkId"] for i in weekly["item"]][:2] == ["weekly-red-flags", "weekly-pain"]
    no_token = httpx.get(f"{enrolled.fhir}/Patient/{enrolled.a}/$due-questionnaires", timeout=60)
    assert no_token.status_code == 401
