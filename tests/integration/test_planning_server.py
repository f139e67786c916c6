"""The plan engine in the running server, over HTTP (issue 6, "In the server").

An enrolled patient (Patient, clinician role, programme CarePlan, baseline response, 14 days
of steps) gets a plan for the current week from the outbox worker; a weekly check-in posted
through the API makes next week's plan, which ``replaces`` this week's (now completed), with
its Goal, Provenance and GuidanceResponse; a red flag stops the plan; re-delivering the
event changes nothing; ``$apply`` and the dry run save nothing; clinician overrides win;
the weekly schedule starts when the programme CarePlan is written.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, select, update

from fhir_server.config import normalise_database_url
from fhir_server.events.tables import outbox
from plan_engine import codes
from tests.conftest import RunningServer
from tests.planning.enrolment import (
    baseline_response,
    clinician_goal,
    enrolment,
    patient,
    practitioner_role,
    programme_plan,
    steps_before,
    transaction,
    weekly_response,
)

T = TypeVar("T")
PD = "http://selfback.example.org/fhir/PlanDefinition/weekly-lbp-self-management"


def wait_for(probe: Callable[[], T | None], what: str, seconds: float = 60) -> T:
    """Poll until ``probe`` answers something; fail with ``what`` after the deadline."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def today() -> date:
    return datetime.now(UTC).date()


def search(fhir: httpx.Client, rtype: str, **params: Any) -> list[dict[str, Any]]:
    answer = fhir.get(f"/{rtype}", params={**params, "_count": 500})
    assert answer.status_code == 200, answer.text
    return [e["resource"] for e in answer.json().get("entry", []) if e["search"]["mode"] == "match"]


def weekly_plans(fhir: httpx.Client, pid: str) -> dict[str, dict[str, Any]]:
    """The engine's plans for the patient, by week start."""
    return {
        p["period"]["start"]: p
        for p in search(fhir, "CarePlan", **{"based-on": f"CarePlan/{pid}-programme"})
    }


def plan_for(fhir: httpx.Client, pid: str, start: date) -> dict[str, Any]:
    return wait_for(
        lambda: weekly_plans(fhir, pid).get(start.isoformat()), f"the plan of week {start}"
    )


def enrol(fhir: httpx.Client, **plan: Any) -> tuple[str, date]:
    """A patient whose programme began a week ago: the current week is plan week 2."""
    pid = f"pt-{uuid.uuid4().hex[:10]}"
    start = today() - timedelta(days=7)
    answer = fhir.post("/", json=transaction(enrolment(pid, start, today(), **plan)))
    assert answer.status_code == 200, answer.text
    return pid, start


def post_check_in(fhir: httpx.Client, pid: str, **answers: Any) -> dict[str, Any]:
    response = weekly_response("ignored", pid, today(), **answers)
    response.pop("id")
    answer = fhir.post("/QuestionnaireResponse", json=response)
    assert answer.status_code == 201, answer.text
    return answer.json()  # type: ignore[no-any-return]


def history_counts(fhir: httpx.Client) -> dict[str, int]:
    counts = {}
    for rtype in ("CarePlan", "Goal", "GuidanceResponse", "Provenance", "Flag", "Communication"):
        bundle = fhir.get(f"/{rtype}/_history", params={"_count": 1000}).json()
        counts[rtype] = len(bundle.get("entry", []))
    return counts


def reasons_of(guidance: dict[str, Any]) -> set[str]:
    return {c["code"] for concept in guidance.get("reasonCode", []) for c in concept["coding"]}


def test_check_in_makes_next_weeks_plan_replacing_this_weeks(fhir: httpx.Client) -> None:
    pid, _ = enrol(fhir)
    this_week = plan_for(fhir, pid, today())
    assert this_week["status"] == "active"

    response = post_check_in(fhir, pid, pain=4)
    next_week = plan_for(fhir, pid, today() + timedelta(days=7))

    assert next_week["status"] == "active"
    assert next_week["replaces"] == [{"reference": f"CarePlan/{this_week['id']}"}]
    assert next_week["basedOn"] == [{"reference": f"CarePlan/{pid}-programme"}]
    assert next_week["instantiatesCanonical"][0].startswith(PD)
    assert {"reference": f"QuestionnaireResponse/{response['id']}"} in next_week["supportingInfo"]
    closed = wait_for(
        lambda: (
            fhir.get(f"/CarePlan/{this_week['id']}").json()["status"] == "completed"
            and fhir.get(f"/CarePlan/{this_week['id']}").json()
        ),
        "last week's plan completed",
    )
    assert closed["meta"]["versionId"] == "2"

    goal = fhir.get("/" + next_week["goal"][0]["reference"]).json()
    assert goal["lifecycleStatus"] == "active"
    assert goal["target"][0]["measure"]["coding"][0]["code"] == "41950-7"
    provenance = search(fhir, "Provenance", target=f"CarePlan/{next_week['id']}")
    assert len(provenance) == 1
    entities = {e["what"]["reference"]: e["role"] for e in provenance[0]["entity"]}
    assert entities[f"CarePlan/{this_week['id']}"] == "revision"
    assert entities[f"QuestionnaireResponse/{response['id']}"] == "source"
    guidance = [
        g
        for g in search(fhir, "GuidanceResponse", subject=f"Patient/{pid}")
        if g.get("result", {}).get("reference") == f"CarePlan/{next_week['id']}"
    ]
    assert len(guidance) == 1
    assert guidance[0]["status"] == "success"
    assert any(p["name"] == "diff" for p in guidance[0]["contained"][0]["parameter"])


def test_red_flag_stops_the_plan_and_tells_the_clinician(fhir: httpx.Client) -> None:
    pid, _ = enrol(fhir)
    this_week = plan_for(fhir, pid, today())
    post_check_in(fhir, pid, pain=5, red_flags={"rf-saddle-numbness": True})
    stopped = plan_for(fhir, pid, today() + timedelta(days=7))

    assert stopped["status"] == "on-hold"
    assert stopped["category"][0]["coding"][0]["code"] == "safety-hold"
    kinds = {c["code"] for a in stopped["activity"] for c in a["detail"]["code"]["coding"]}
    assert kinds == {"safety-message"}  # no exercises, no education: nothing harder
    wait_for(
        lambda: fhir.get(f"/CarePlan/{this_week['id']}").json()["status"] == "revoked",
        "this week's plan revoked",
    )
    flags = search(fhir, "Flag", subject=f"Patient/{pid}")
    assert [f["status"] for f in flags] == ["active"]
    codes_ = {c["code"] for c in flags[0]["code"]["coding"]}
    assert {"saddle-numbness", "RF-SADDLE-NUMBNESS"} <= codes_
    assert flags[0]["category"][0]["coding"][0]["code"] == "safety"
    issues = search(fhir, "DetectedIssue", patient=f"Patient/{pid}")
    assert len(issues) == 1 and issues[0]["severity"] == "high"
    messages = search(fhir, "Communication", subject=f"Patient/{pid}")
    assert len(messages) == 1
    assert messages[0]["priority"] == "stat"
    assert messages[0]["recipient"] == [{"reference": f"PractitionerRole/{pid}-physio"}]
    goal = fhir.get("/" + stopped["goal"][0]["reference"]).json()
    before = fhir.get("/" + this_week["goal"][0]["reference"]).json()
    value = goal["target"][0]["detailQuantity"]["value"]
    assert value <= before["target"][0]["detailQuantity"]["value"]
    assert goal["lifecycleStatus"] == "on-hold"


@pytest.fixture
def outbox_table(database_url: str) -> Iterator[Any]:
    engine = create_engine(normalise_database_url(database_url))
    yield engine
    engine.dispose()


def test_redelivered_event_changes_nothing(fhir: httpx.Client, outbox_table: Any) -> None:
    pid, _ = enrol(fhir)
    plan_for(fhir, pid, today())
    response = post_check_in(fhir, pid, pain=4)
    plan_for(fhir, pid, today() + timedelta(days=7))
    trigger = outbox.c.topic == "plan-trigger"
    mine = outbox.c.res_id == response["id"]
    with outbox_table.connect() as conn:
        row = wait_for(
            lambda: conn.execute(
                select(outbox).where(trigger, mine, outbox.c.done_at.isnot(None))
            ).first(),
            "the planning event done",
        )
    before = history_counts(fhir)
    with outbox_table.begin() as conn:  # deliver the same event again
        conn.execute(
            update(outbox)
            .where(outbox.c.id == row.id)
            .values(done_at=None, available_at=0, claimed_until=None, last_error=None)
        )
    with outbox_table.connect() as conn:
        again = wait_for(
            lambda: conn.execute(
                select(outbox).where(outbox.c.id == row.id, outbox.c.done_at.isnot(None))
            ).first(),
            "the re-delivered event handled",
        )
    assert again.last_error.endswith("0 versions written"), again.last_error
    assert history_counts(fhir) == before


def test_apply_and_dry_run_answer_per_spec_and_write_nothing(fhir: httpx.Client) -> None:
    pid, _ = enrol(fhir)
    this_week = plan_for(fhir, pid, today())
    before = history_counts(fhir)

    applied = fhir.post(
        "/PlanDefinition/$apply",
        json={
            "resourceType": "Parameters",
            "parameter": [
                {"name": "planDefinition", "valueCanonical": PD},
                {"name": "subject", "valueString": f"Patient/{pid}"},
                {"name": "practitioner", "valueString": f"PractitionerRole/{pid}-physio"},
            ],
        },
    )
    assert applied.status_code == 200, applied.text
    plan = applied.json()
    assert plan["resourceType"] == "CarePlan" and "meta" not in plan
    assert (
        plan["intent"] == "plan"
        and plan["period"]["start"] == (today() + timedelta(days=7)).isoformat()
    )
    assert plan["replaces"] == [{"reference": f"CarePlan/{this_week['id']}"}]
    contained = {r["resourceType"] for r in plan["contained"]}
    assert {"Goal", "GuidanceResponse", "Parameters"} <= contained
    assert plan["goal"][0]["reference"].startswith("#")
    guidance = next(r for r in plan["contained"] if r["resourceType"] == "GuidanceResponse")
    assert guidance["result"] == {"reference": "#"}
    assert guidance["outputParameters"]["reference"].startswith("#")
    assert plan["contributor"] == [{"reference": f"PractitionerRole/{pid}-physio"}]
    assert fhir.get(f"/CarePlan/{plan['id']}").status_code == 404

    instance = fhir.get(
        "/PlanDefinition/weekly-lbp-self-management/$apply", params={"subject": f"Patient/{pid}"}
    )
    assert instance.status_code == 200, instance.text
    assert instance.json()["id"] == plan["id"]  # same data, same decision

    dry = fhir.get(f"/Patient/{pid}/$plan-week-dry-run")
    assert dry.status_code == 200, dry.text
    kinds = [e["resource"]["resourceType"] for e in dry.json()["entry"]]
    assert {"CarePlan", "Goal", "GuidanceResponse", "Provenance"} <= set(kinds)
    explanation = next(
        e["resource"]["contained"][0]
        for e in dry.json()["entry"]
        if e["resource"]["resourceType"] == "GuidanceResponse"
    )
    assert {"diff", "step-goal", "exercise", "education"} <= {
        p["name"] for p in explanation["parameter"]
    }
    assert history_counts(fhir) == before  # neither wrote anything

    saved = fhir.post(f"/Patient/{pid}/$plan-week")
    assert saved.status_code == 200, saved.text
    stored = {e["resource"]["resourceType"]: e["resource"] for e in saved.json()["entry"]}
    assert stored["CarePlan"]["id"] == plan["id"] and stored["CarePlan"]["meta"]["versionId"] == "1"
    assert fhir.get(f"/CarePlan/{plan['id']}").status_code == 200
    after_save = history_counts(fhir)
    assert after_save["CarePlan"] == before["CarePlan"] + 2  # the new plan; last week's completed
    again = fhir.post(f"/Patient/{pid}/$plan-week")
    assert again.status_code == 200
    assert history_counts(fhir) == after_save  # the same decision again: nothing new


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("/PlanDefinition/$apply", {"planDefinition": PD}, 400),  # no subject
        ("/PlanDefinition/$apply", {"planDefinition": PD, "subject": "Group/g"}, 400),
        ("/PlanDefinition/$apply", {"subject": "Patient/x"}, 400),  # no planDefinition
        ("/PlanDefinition/$apply", {"planDefinition": PD + "|9.9", "subject": "Patient/x"}, 404),
        (
            "/PlanDefinition/$apply",
            {"planDefinition": "http://x/PlanDefinition/y", "subject": "Patient/x"},
            404,
        ),
        ("/PlanDefinition/$apply", {"planDefinition": PD, "subject": "Patient/nobody-here"}, 404),
        ("/PlanDefinition/nope/$apply", {"subject": "Patient/x"}, 404),
        ("/Patient/nobody-here/$plan-week-dry-run", {}, 404),
        (
            "/PlanDefinition/$apply",
            {"planDefinition": PD, "subject": "Patient/x", "asOf": "next tuesday"},
            400,
        ),
    ],
)
def test_planning_operations_refuse_bad_requests(
    fhir: httpx.Client, path: str, params: dict[str, str], status: int
) -> None:
    answer = fhir.get(path, params=params)
    assert answer.status_code == status, answer.text
    assert answer.json()["resourceType"] == "OperationOutcome"


def test_unplannable_patients_get_422_and_plan_week_needs_post(fhir: httpx.Client) -> None:
    pid = f"pt-{uuid.uuid4().hex[:10]}"
    assert fhir.put(f"/Patient/{pid}", json=patient(pid)).status_code == 201
    not_enrolled = fhir.get(f"/Patient/{pid}/$plan-week-dry-run")
    assert not_enrolled.status_code == 422
    assert "not enrolled" in not_enrolled.text
    role = practitioner_role(f"{pid}-physio")
    fhir.put(f"/PractitionerRole/{role['id']}", json=role)
    plan = programme_plan(f"{pid}-programme", pid, role["id"], today())
    assert fhir.put(f"/CarePlan/{plan['id']}", json=plan).status_code == 201
    no_baseline = fhir.post(f"/Patient/{pid}/$plan-week")
    assert no_baseline.status_code == 422
    assert "baseline" in no_baseline.text
    assert fhir.get(f"/Patient/{pid}/$plan-week").status_code == 405


def test_clinician_overrides_are_respected_and_recorded(fhir: httpx.Client) -> None:
    pid, start = enrol(fhir)
    this_week = plan_for(fhir, pid, today())
    planned = [
        c.split("|")[0].rsplit("/", 1)[1]
        for a in this_week["activity"]
        for c in a["detail"].get("instantiatesCanonical", [])
        if "/ActivityDefinition/exercise-ab-" in c
    ]
    abdominal = planned[0].removeprefix("exercise-").rsplit("-l", 1)[0]
    role = f"{pid}-physio"
    programme = programme_plan(f"{pid}-programme", pid, role, start, excluded=(abdominal,))
    assert fhir.put(f"/CarePlan/{programme['id']}", json=programme).status_code == 200
    goal = clinician_goal(f"{pid}-fixed-goal", pid, role, 4000, today())
    assert fhir.put(f"/Goal/{goal['id']}", json=goal).status_code == 201

    saved = fhir.post(f"/Patient/{pid}/$plan-week").json()
    resources = {e["resource"]["resourceType"]: e["resource"] for e in saved["entry"]}
    step_goal = resources["Goal"]
    assert step_goal["target"][0]["detailQuantity"]["value"] == 4000
    canonicals = [
        c
        for a in resources["CarePlan"]["activity"]
        for c in a["detail"].get("instantiatesCanonical", [])
    ]
    assert canonicals and not any(f"/exercise-{abdominal}-l" in c for c in canonicals)
    assert {"OVERRIDE-STEP-GOAL", "OVERRIDE-EXCLUDED"} <= reasons_of(resources["GuidanceResponse"])
    sources = {
        p["part"][1]["valueString"]
        for param in resources["GuidanceResponse"]["contained"][0]["parameter"]
        for p in param.get("part", [])
        if p["name"] == "reason" and p["part"][0]["valueCode"] == "override"
    }
    assert sources == {"OVERRIDE-STEP-GOAL", "OVERRIDE-EXCLUDED"}
    entities = {e["what"]["reference"] for e in resources["Provenance"]["entity"]}
    assert {f"Goal/{goal['id']}", f"CarePlan/{programme['id']}"} <= entities


def test_weekly_schedule_starts_with_the_programme_plan(fhir: httpx.Client) -> None:
    """No check-in at all: writing the programme CarePlan schedules its weeks, and the week
    that has begun is planned by the schedule (weeks that begin later are covered by
    tests/planning/test_planning_schedule.py, which moves the worker's clock)."""
    pid = f"pt-{uuid.uuid4().hex[:10]}"
    start = today() - timedelta(days=7)
    role = f"{pid}-physio"
    data = [patient(pid), practitioner_role(role), baseline_response(f"{pid}-baseline", pid, start)]
    data += steps_before(pid, today())
    assert fhir.post("/", json=transaction(data)).status_code == 200
    # Scored, not planned (not enrolled yet): wait until the baseline's scores exist.
    wait_for(
        lambda: search(
            fhir, "Observation", **{"derived-from": f"QuestionnaireResponse/{pid}-baseline"}
        ),
        "baseline scores",
    )
    assert weekly_plans(fhir, pid) == {}
    plan = programme_plan(f"{pid}-programme", pid, role, start)
    assert fhir.put(f"/CarePlan/{plan['id']}", json=plan).status_code == 201
    scheduled = plan_for(fhir, pid, today())
    assert scheduled["status"] == "active"
    assert codes.PLAN_DEFINITION_URL in scheduled["instantiatesCanonical"][0]


def test_a_stopped_plan_stays_on_hold_until_a_clinician_records_a_review(
    fhir: httpx.Client,
) -> None:
    """Engine finding 3 in the server: the week after a stop-and-refer is still on hold;
    once the clinician adds a mitigation (the review) to the DetectedIssue, planning resumes."""
    pid, _ = enrol(fhir)
    plan_for(fhir, pid, today())
    post_check_in(fhir, pid, pain=5, red_flags={"rf-leg-weakness": True})
    plan_for(fhir, pid, today() + timedelta(days=7))
    week_after = (today() + timedelta(days=14)).isoformat()

    def preview() -> dict[str, Any]:
        answer = fhir.get(f"/Patient/{pid}/$plan-week-dry-run", params={"asOf": week_after})
        assert answer.status_code == 200, answer.text
        return next(
            e["resource"]
            for e in answer.json()["entry"]
            if e["resource"]["resourceType"] == "CarePlan"
        )

    held = preview()
    assert held["status"] == "on-hold"
    assert held["category"][0]["coding"][0]["code"] == "safety-hold"
    assert [a["detail"]["code"]["coding"][0]["code"] for a in held["activity"]] == [
        "safety-message"
    ]
    issue = search(fhir, "DetectedIssue", patient=f"Patient/{pid}")[0]
    issue["mitigation"] = [
        {
            "action": {"text": "Phoned the patient; seen in clinic, no cauda equina signs"},
            "date": (today() + timedelta(days=8)).isoformat(),
            "author": {"reference": f"PractitionerRole/{pid}-physio"},
        }
    ]
    assert fhir.put(f"/DetectedIssue/{issue['id']}", json=issue).status_code == 200
    resumed = preview()
    assert resumed["status"] == "active"
    assert any(
        "/ActivityDefinition/exercise-" in c
        for a in resumed["activity"]
        for c in a["detail"].get("instantiatesCanonical", [])
    )


@pytest.fixture(scope="module")
def enrolled(server: RunningServer) -> str:
    """One enrolled patient with a plan, shared by the property test's examples."""
    with httpx.Client(base_url=server.fhir, timeout=60) as client:
        pid, _ = enrol(client)
        plan_for(client, pid, today())
    return pid


_parameter_values = st.one_of(
    st.text(max_size=24),
    st.sampled_from(["Patient/x", "Patient/", "Patient/a/b", "Group/1", PD, PD + "|1.0.0", ""]),
    st.sampled_from(  # asOf: next week, before the programme, far ahead, not a day
        [
            (today() + timedelta(days=7)).isoformat(),
            "1999-01-04",
            "2999-12-30",
            "9999-12-31",
            "2026-02-30",
        ]
    ),
)
_parameter_kinds = st.sampled_from(
    ["valueString", "valueCanonical", "valueDate", "valueReference", "valueInteger", "valueBoolean"]
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    names=st.lists(
        st.sampled_from(["subject", "planDefinition", "asOf", "practitioner", "encounter", "x"]),
        max_size=5,
    ),
    values=st.lists(_parameter_values, min_size=5, max_size=5),
    kinds=st.lists(_parameter_kinds, min_size=5, max_size=5),
    path=st.sampled_from(
        [
            "/PlanDefinition/$apply",
            "/PlanDefinition/weekly-lbp-self-management/$apply",
            "/Patient/nobody/$plan-week-dry-run",
            "/Patient/{enrolled}/$plan-week-dry-run",
            "/Patient/{enrolled}/$plan-week",
        ]
    ),
)
def test_planning_operations_never_answer_500(
    fhir: httpx.Client,
    enrolled: str,
    names: list[str],
    values: list[str],
    kinds: list[str],
    path: str,
) -> None:
    """Any Parameters body gets an OperationOutcome with a 4xx (house rule 3), for unknown
    and enrolled patients alike."""
    path = path.format(enrolled=enrolled)
    values = [v.replace("Patient/x", f"Patient/{enrolled}") for v in values]
    parameters = []
    for name, value, kind in zip(names, values, kinds, strict=False):
        if kind == "valueReference":
            parameters.append({"name": name, kind: {"reference": value}})
        elif kind == "valueInteger":
            parameters.append({"name": name, kind: len(value)})
        elif kind == "valueBoolean":
            parameters.append({"name": name, kind: bool(value)})
        else:
            parameters.append({"name": name, kind: value})
    answer = fhir.post(path, json={"resourceType": "Parameters", "parameter": parameters})
    assert answer.status_code < 500, answer.text
    if answer.status_code >= 400:
        assert answer.json()["resourceType"] == "OperationOutcome"


def test_an_answer_on_a_plans_first_day_stops_one_plan_only(fhir: httpx.Client) -> None:
    """Engine finding 4 in the server: a red-flag answer dated on the first day of the plan
    it stopped is inside the next plan's window too, but it is not raised again (the first
    plan's DetectedIssue carries it as evidence); after the clinician's review planning
    resumes. A new answer stops the plan again."""
    pid, _ = enrol(fhir)
    plan_for(fhir, pid, today())
    first_day = today() + timedelta(days=7)
    answer = weekly_response("ignored", pid, first_day, pain=5, red_flags={"rf-trauma": True})
    answer.pop("id")
    created = fhir.post("/QuestionnaireResponse", json=answer)
    assert created.status_code == 201, created.text
    stopped = plan_for(fhir, pid, first_day)
    assert stopped["status"] == "on-hold"
    (issue,) = search(fhir, "DetectedIssue", patient=f"Patient/{pid}")
    source = f"QuestionnaireResponse/{created.json()['id']}"
    assert issue["evidence"][0]["detail"] == [{"reference": source}]
    week_after = (first_day + timedelta(days=7)).isoformat()

    def preview() -> list[dict[str, Any]]:
        got = fhir.get(f"/Patient/{pid}/$plan-week-dry-run", params={"asOf": week_after})
        assert got.status_code == 200, got.text
        return [e["resource"] for e in got.json()["entry"]]

    held = preview()
    kinds = [r["resourceType"] for r in held]
    assert "Flag" not in kinds and "DetectedIssue" not in kinds and "Communication" not in kinds
    plan = next(r for r in held if r["resourceType"] == "CarePlan")
    assert plan["status"] == "on-hold"  # awaiting the review, not a second stop
    issue["mitigation"] = [
        {
            "action": {"text": "Seen in clinic; no fracture"},
            "date": (first_day + timedelta(days=1)).isoformat(),
            "author": {"reference": f"PractitionerRole/{pid}-physio"},
        }
    ]
    assert fhir.put(f"/DetectedIssue/{issue['id']}", json=issue).status_code == 200
    resumed = preview()
    assert next(r for r in resumed if r["resourceType"] == "CarePlan")["status"] == "active"
    assert "Flag" not in [r["resourceType"] for r in resumed]

    again = weekly_response(
        "ignored", pid, first_day + timedelta(days=2), pain=5, red_flags={"rf-trauma": True}
    )
    again.pop("id")
    assert fhir.post("/QuestionnaireResponse", json=again).status_code == 201
    restopped = preview()
    assert next(r for r in restopped if r["resourceType"] == "CarePlan")["status"] == "on-hold"
    assert [r["resourceType"] for r in restopped].count("Flag") == 1
