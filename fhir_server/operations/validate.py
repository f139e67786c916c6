"""$validate (FHIR R4 resource-operation-validate): is this resource valid, here?

POST [type]/$validate or [type]/[id]/$validate with the resource in the body (or in a
Parameters ``resource``), an optional ``mode`` (create | update | delete | profile) and
``profile``. The answer is always an OperationOutcome with 200 when the operation itself
ran -- the issues say whether the resource is valid (operation-resource-validate: "the
operation returns 200 OK whether the resource is valid or not"). Checks: the structural
rules every write passes (fhir_server.validation) and the profile validator
(profiles.validate: cardinality, bindings, slicing, invariants, our profiles).
"""

from __future__ import annotations

from typing import Any

import orjson

import profiles
from fhir_server.errors import FhirError, Issue, bad_request, operation_outcome
from fhir_server.interactions.read import read
from fhir_server.operations import Operation, OperationCall, OperationResult
from fhir_server.storage.repository import Repository
from fhir_server.validation import validate_resource

MODES = ("create", "update", "delete", "profile")
# The reference validator's defaults for what it cannot know (profiles._validator).
_OPTIONS = profiles.ValidationOptions(unknown_extensions="warning", unknown_profiles="warning")


def validate(repo: Repository, call: OperationCall) -> OperationResult:
    mode = _text(call.value("mode")) or None
    if mode is not None and mode not in MODES:
        raise bad_request(f"mode must be one of {', '.join(MODES)}", "mode")
    profile = _text(call.value("profile")) or None
    resource = _resource(repo, call, mode)
    if mode == "delete":
        return _outcome([])
    issues: list[Issue] = []
    try:
        validate_resource(resource, expected_type=call.rtype)
    except FhirError as exc:
        issues += exc.issues
    if mode == "update" and call.id is not None and resource.get("id") != call.id:
        issues.append(
            Issue(
                "invalid",
                f"An update of {call.rtype}/{call.id} must carry that id",
                "error",
                (f"{call.rtype}.id",),
            )
        )
    for found in profiles.validate(resource, [profile] if profile else None, options=_OPTIONS):
        issues.append(Issue(found.code, found.diagnostics, found.severity, tuple(found.expression)))
    return _outcome(_unique(issues))


def _resource(repo: Repository, call: OperationCall, mode: str | None) -> dict[str, Any]:
    given = call.resource
    if given is None:
        parameter = call.value("resource")
        given = parameter.get("resource") if isinstance(parameter, dict) else None
    if given is None and call.id is not None:
        given = orjson.loads(read(repo, call.rtype or "", call.id).body)
    if given is None:
        raise bad_request("$validate needs a resource (the body, or the 'resource' parameter)")
    if not isinstance(given, dict):
        raise bad_request("The resource to validate must be a JSON object")
    return given


def _text(value: Any) -> str:
    """A parameter from the query (a string) or from Parameters (valueCode/valueUri/...)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        for key in ("valueCode", "valueUri", "valueCanonical", "valueString"):
            if isinstance(value.get(key), str):
                return str(value[key])
    return ""


def _unique(issues: list[Issue]) -> list[Issue]:
    seen: set[tuple[str, str, tuple[str, ...]]] = set()
    out = []
    for issue in issues:
        key = (issue.code, issue.diagnostics, issue.expression)
        if key not in seen:
            seen.add(key)
            out.append(issue)
    return out


def _outcome(issues: list[Issue]) -> OperationResult:
    if not any(i.severity in ("error", "fatal", "warning") for i in issues):
        issues = [*issues, Issue("informational", "No issues found", "information")]
    return OperationResult(200, operation_outcome(issues))


VALIDATE = Operation(
    name="validate",
    levels=frozenset({"type", "instance"}),
    run=validate,
    definition="http://hl7.org/fhir/OperationDefinition/Resource-validate",
    changes_state=False,
)
