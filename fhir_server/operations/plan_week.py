"""Patient/{id}/$plan-week and Patient/{id}/$plan-week-dry-run: run the plan engine now.

Our operations (OperationDefinitions ``Patient-plan-week`` and ``Patient-plan-week-dry-run``
under http://selfback.example.org/fhir/OperationDefinition/, published with the content):

- ``POST Patient/{id}/$plan-week`` makes the week's plan and stores it exactly as the
  outbox does (fhir_server.planning.store: one transaction, ids from the decision key,
  last week's plan completed). Running it twice on the same data writes nothing new.
- ``GET|POST Patient/{id}/$plan-week-dry-run`` makes the same decision and saves nothing.

Parameter ``asOf`` (date): the first day of the plan week; absent, the next week to plan
(the same rule as a check-in arriving today). Both answer a ``collection`` Bundle holding
every resource of the decision: CarePlan, Goal, the GuidanceResponse (its contained
Parameters carries each element's reasons, the retrieved cases and the diff against last
week), Provenance, and any Flag, DetectedIssue and Communication. ``$plan-week`` returns
the stored versions (with ``meta``), so they can be read again by id.
"""

from __future__ import annotations

from typing import Any

import orjson

from fhir_server.operations import Operation, OperationCall, OperationResult
from fhir_server.planning.operation_support import as_of_parameter, reading, today, unplannable
from fhir_server.planning.run import decide_week, plan_and_store
from fhir_server.planning.snapshot import PlanningInputError
from fhir_server.storage.repository import Repository, WriteSession
from fhir_server.versioning import new_id

DEFINITION_BASE = "http://selfback.example.org/fhir/OperationDefinition"


def _bundle(call: OperationCall, resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "id": new_id(),
        "type": "collection",
        "entry": [
            {"fullUrl": f"{call.base_url}/{r['resourceType']}/{r['id']}", "resource": r}
            for r in resources
        ],
    }


def plan_week(repo: Repository, call: OperationCall) -> OperationResult:
    assert call.id is not None
    as_of = as_of_parameter(call)
    patient_id = call.id

    def work(session: WriteSession) -> list[dict[str, Any]]:
        run = plan_and_store(session, patient_id, as_of=as_of, today=today(call), now=call.now)
        stored = []
        for resource in run.decision.resources:
            current = session.read(resource["resourceType"], resource["id"])
            assert current is not None
            stored.append(orjson.loads(current.body))
        return stored

    try:
        resources = repo.write(work)
    except PlanningInputError as exc:
        raise unplannable(exc) from exc
    return OperationResult(200, _bundle(call, resources))


def plan_week_dry_run(repo: Repository, call: OperationCall) -> OperationResult:
    assert call.id is not None
    as_of = as_of_parameter(call)
    try:
        with reading(repo) as source:
            run = decide_week(source, call.id, as_of=as_of, today=today(call))
    except PlanningInputError as exc:
        raise unplannable(exc) from exc
    return OperationResult(200, _bundle(call, list(run.decision.resources)))


PLAN_WEEK = Operation(
    name="plan-week",
    levels=frozenset({"instance"}),
    run=plan_week,
    definition=f"{DEFINITION_BASE}/Patient-plan-week",
    types=frozenset({"Patient"}),
    changes_state=True,
    # The plan is the engine's: a patient or a clinician who may read the Patient and
    # write CarePlans asks for it; what is stored is the server's (issue 11 item 4).
    server_writes=("c", "CarePlan"),
)

PLAN_WEEK_DRY_RUN = Operation(
    name="plan-week-dry-run",
    levels=frozenset({"instance"}),
    run=plan_week_dry_run,
    definition=f"{DEFINITION_BASE}/Patient-plan-week-dry-run",
    types=frozenset({"Patient"}),
    changes_state=False,
)
