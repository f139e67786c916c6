"""PlanDefinition/$apply (FHIR R4 plandefinition-operation-apply): next week's plan for a
patient, returned and not saved.

``POST|GET [base]/PlanDefinition/$apply?planDefinition=<canonical>&subject=Patient/x`` or
``[base]/PlanDefinition/{id}/$apply?subject=Patient/x``; optional ``encounter``,
``practitioner``, ``organization`` (R4 names) and ``asOf`` (ours: the first day of the plan
week; absent, the next week to plan). Only the programme's weekly PlanDefinition
(``weekly-lbp-self-management``) can be applied: it is what the plan engine implements.

R4 says the result is "the CarePlan that is the result of applying the plan definition"
and that $apply does not persist it (plandefinition-operation-apply: "The result of this
operation is ... not persisted"; ``affectsState`` false). So the answer is one CarePlan
with everything else the decision made *contained* (its Goal, the GuidanceResponse with
the reasons and the diff, the explanation Parameters, and per safety finding a Flag,
DetectedIssue and Communication) and every reference between them made local (``#id``):
R4 forbids nested contained resources, so the GuidanceResponse's explanation moves up to
the CarePlan. The Provenance is left out: nothing was recorded. To store the plan, use
``Patient/{id}/$plan-week``.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson

from fhir_server.errors import bad_request, error, unprocessable
from fhir_server.interactions.read import read
from fhir_server.operations import Operation, OperationCall, OperationResult
from fhir_server.planning.operation_support import (
    as_of_parameter,
    reading,
    single,
    today,
    unplannable,
)
from fhir_server.planning.run import decide_week
from fhir_server.planning.snapshot import PlanningInputError
from fhir_server.storage.repository import Repository
from plan_engine import PlanDecision, codes, load_catalogue


def apply(repo: Repository, call: OperationCall) -> OperationResult:
    _check_plan_definition(repo, call)
    patient_id = _subject(call)
    as_of = as_of_parameter(call)
    try:
        with reading(repo) as source:
            run = decide_week(source, patient_id, as_of=as_of, today=today(call))
    except PlanningInputError as exc:
        raise unplannable(exc) from exc
    decision = run.decision
    if decision.status == "not-permitted":
        raise unprocessable(
            "No plan can be made: the patient has no active consent to the programme "
            "(CONSENT-NOT-ACTIVE)"
        )
    return OperationResult(200, care_plan_with_contained(decision, call))


def _check_plan_definition(repo: Repository, call: OperationCall) -> None:
    catalogue = load_catalogue()
    if call.id is not None:
        stored = orjson.loads(read(repo, "PlanDefinition", call.id).body)
        url, version = stored.get("url"), stored.get("version")
        if url != codes.PLAN_DEFINITION_URL:
            raise unprocessable(
                f"PlanDefinition/{call.id} ({url}) cannot be applied here: this server "
                f"applies {codes.PLAN_DEFINITION_URL} only"
            )
        if version != catalogue.version:
            raise unprocessable(
                f"PlanDefinition/{call.id} is version {version}; the engine implements "
                f"version {catalogue.version}"
            )
        return
    canonical = single(call, "planDefinition")
    if canonical is None:
        raise bad_request(
            "PlanDefinition/$apply at type level needs planDefinition (a canonical URL)",
            "planDefinition",
        )
    url, _, version = canonical.partition("|")
    if url != codes.PLAN_DEFINITION_URL or (version and version != catalogue.version):
        raise error(
            404,
            "not-found",
            f"No PlanDefinition {canonical} here; this server applies "
            f"{codes.PLAN_DEFINITION_URL}|{catalogue.version}",
        )


def _subject(call: OperationCall) -> str:
    subject = single(call, "subject")
    if subject is None:
        raise bad_request("$apply needs subject (Patient/[id])", "subject")
    kind, _, patient_id = subject.partition("/")
    if kind != "Patient" or not patient_id or "/" in patient_id:
        raise bad_request(
            f"subject '{subject}' is not a Patient reference (Patient/[id])", "subject"
        )
    return patient_id


def _optional_reference(call: OperationCall, name: str, rtype: tuple[str, ...]) -> str | None:
    value = single(call, name)
    if value is None:
        return None
    if not value.startswith(tuple(f"{t}/" for t in rtype)):
        raise bad_request(f"{name} '{value}' must reference a {' or '.join(rtype)}", name)
    return value


def care_plan_with_contained(decision: PlanDecision, call: OperationCall) -> dict[str, Any]:
    """The decision's CarePlan holding the other resources (Provenance left out)."""
    encounter = _optional_reference(call, "encounter", ("Encounter",))
    contributors = [
        c
        for c in (
            _optional_reference(call, "practitioner", ("Practitioner", "PractitionerRole")),
            _optional_reference(call, "organization", ("Organization",)),
        )
        if c
    ]
    resources = [copy.deepcopy(r) for r in decision.resources if r["resourceType"] != "Provenance"]
    care_plan = next(r for r in resources if r["resourceType"] == "CarePlan")
    others = [r for r in resources if r is not care_plan]
    local = {f"{r['resourceType']}/{r['id']}": f"#{r['id']}" for r in others}
    local[f"CarePlan/{care_plan['id']}"] = "#"  # a contained resource's reference to its container
    contained: list[dict[str, Any]] = []
    for resource in others:
        for inner in resource.pop("contained", []):
            # R4 ref.html#contained: no nesting; lift it, renamed to stay unique.
            new_id = f"{resource['id']}-{inner['id']}"
            _replace_references(resource, {f"#{inner['id']}": f"#{new_id}"})
            contained.append({**inner, "id": new_id})
        contained.append(resource)
    for resource in contained:
        _replace_references(resource, local)
    _replace_references(care_plan, local)
    care_plan["contained"] = contained
    if encounter:
        care_plan["encounter"] = {"reference": encounter}
    if contributors:
        care_plan["contributor"] = [{"reference": c} for c in contributors]
    return care_plan


def _replace_references(value: Any, mapping: dict[str, str]) -> None:
    if isinstance(value, dict):
        reference = value.get("reference")
        if isinstance(reference, str) and reference in mapping:
            value["reference"] = mapping[reference]
        for key, inner in value.items():
            if key != "contained":
                _replace_references(inner, mapping)
    elif isinstance(value, list):
        for inner in value:
            _replace_references(inner, mapping)


APPLY = Operation(
    name="apply",
    levels=frozenset({"type", "instance"}),
    run=apply,
    definition="http://hl7.org/fhir/OperationDefinition/PlanDefinition-apply",
    types=frozenset({"PlanDefinition"}),
    changes_state=False,
)
