"""$validate (FHIR R4 resource-operation-validate): would this resource be accepted here?

``POST [type]/$validate`` or ``[type]/[id]/$validate`` with the resource as the body (or a
Parameters ``resource``), an optional ``mode`` (create | update | delete | profile, the
required binding resource-validation-mode) and ``profile``. GET works for the forms that
need no body (``[type]/[id]/$validate?mode=delete``, ``mode=profile``).

The answer is an OperationOutcome with **200 whether or not the resource is valid**
(operation-resource-validate: "This operation returns a 200 OK whether or not the resource
is valid. A 4xx or 5xx error means that the validation itself could not be performed").
HAPI answered 412 for invalid resources until hapi-fhir#3611 / PR #4662 moved it to 200 for
this reason. A 4xx is kept for a request that cannot be validated: an unknown mode, update,
delete or profile mode without an id ("Modes update and delete can only be used when the
operation is invoked at the resource instance level"; profile: "must be nominated by id"),
no resource, an instance that does not exist (404/410).

What is checked is what a write would check, by the same code:

- the structural rules every write passes first (``fhir_server.validation``, a 400 there);
- ``fhir_server.conformance.check``: the profiles in ``meta.profile``, our profile for a
  programme resource, a QuestionnaireResponse against its Questionnaire, with stored
  StructureDefinitions, Questionnaires and ValueSets read through one read connection
  (the errors here are the write's 422s, the warnings its ``X-FHIR-Request-Validation``
  headers);
- and, beyond a write, the R4 base rules for every resource ("[mode not provided]: the
  server checks the content of the resource against any schema, constraint rules, and
  other general terminology rules"), and the nominated ``profile`` (which must be known:
  "If a profile is nominated, and the server cannot validate against the nominated
  profile, it SHALL return an error").

Modes: ``create`` -- the content as above (any id in it is ignored, as by create,
http.html#create). ``update`` -- the body's id must be the URL's (a PUT answers 400
otherwise), and an AuditEvent cannot be updated while access control is on (the policy
in ``fhir_server.access.decision``: append-only). ``delete`` -- the content is ignored; this
server enforces no referential integrity on delete, so the answer is OK unless the
resource is an AuditEvent under access control (an instance that does not exist is a
404 or 410 before the operation runs, as for every instance-level operation here). ``profile`` -- the stored resource against the nominated profile.

Nothing is written: the checks read through a read connection only.
"""

from __future__ import annotations

from typing import Any

import orjson

import profiles
from fhir_server import conformance
from fhir_server.errors import FhirError, Issue, bad_request, operation_outcome
from fhir_server.interactions.access import current_access
from fhir_server.interactions.read import read
from fhir_server.operations import Operation, OperationCall, OperationResult
from fhir_server.storage.repository import Repository
from fhir_server.validation import validate_resource

MODES = ("create", "update", "delete", "profile")
INSTANCE_MODES = ("update", "delete", "profile")
# The resource type the access policy keeps append-only (fhir_server/access/decision.py).
APPEND_ONLY = "AuditEvent"


def validate(repo: Repository, call: OperationCall) -> OperationResult:
    mode = _text(call.value("mode")) or None
    if mode is not None and mode not in MODES:
        raise bad_request(f"mode must be one of {', '.join(MODES)}", "mode")
    if mode in INSTANCE_MODES and call.id is None:
        raise bad_request(
            f"mode={mode} needs the instance: [type]/[id]/$validate (operation-resource-validate)",
            "mode",
        )
    profile = _text(call.value("profile")) or None
    if mode == "profile" and profile is None:
        raise bad_request("mode=profile needs the profile parameter", "profile")
    if mode == "delete":
        return _outcome(_delete_issues(repo, call))
    resource = _resource(repo, call, mode)
    issues: list[Issue] = []
    try:
        validate_resource(resource, expected_type=call.rtype)
    except FhirError as exc:
        issues += exc.issues
    if mode == "update":
        issues += _update_issues(call, resource)
    with repo.reading() as conn:
        definitions = conformance.Definitions(lambda: conn)
        issues += conformance.check(resource, definitions, profile=profile)
        options = conformance.validation_options(definitions)
        base = profiles.validate(resource, [], options=options)
    issues += [_base_issue(i) for i in base]
    return _outcome(_unique(issues))


def _update_issues(call: OperationCall, resource: dict[str, Any]) -> list[Issue]:
    """What a PUT of this body onto [type]/[id] would refuse before storing it."""
    rtype, id = str(call.rtype), str(call.id)
    issues = []
    body_id = resource.get("id")
    if body_id != id:
        # http.html#update: the body's id must match the URL's (400 on a PUT).
        message = (
            f"The {rtype} in an update must carry id '{id}'"
            if body_id is None
            else f"The body's id '{body_id}' does not match the URL's id '{id}'"
        )
        issues.append(Issue("invalid", message, "error", (f"{rtype}.id",)))
    if rtype == APPEND_ONLY and current_access() is not None:
        issues.append(Issue("forbidden", f"{APPEND_ONLY} is append-only", "error", (rtype,)))
    return issues


def _delete_issues(repo: Repository, call: OperationCall) -> list[Issue]:
    """mode=delete: "checks that the nominated resource is allowed to be deleted". The
    content is ignored; the server keeps no referential-integrity rule on delete."""
    rtype, id = str(call.rtype), str(call.id)
    stored = repo.read(rtype, id)
    if stored is None or stored.deleted:
        state = "not known" if stored is None else "already deleted"
        return [
            Issue(
                "informational",
                f"{rtype}/{id} is {state}: a DELETE would answer 204 and write nothing",
                "information",
            )
        ]
    if rtype == APPEND_ONLY and current_access() is not None:
        return [Issue("forbidden", f"{APPEND_ONLY} is append-only", "error", (rtype,))]
    return []


def _resource(repo: Repository, call: OperationCall, mode: str | None) -> dict[str, Any]:
    given = call.resource
    if given is None:
        parameter = call.value("resource")
        given = parameter.get("resource") if isinstance(parameter, dict) else None
    if mode == "profile":
        # resource-validation-mode#profile: "an existing resource (must be nominated by id,
        # not provided as a parameter)".
        given = None
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


def _base_issue(found: profiles.Issue) -> Issue:
    # Best-practice invariants (dom-6) are hints: information, as HAPI reports them at its
    # default BestPracticeWarningLevel; a write leaves them out altogether.
    severity = "information" if found.rule in conformance.BEST_PRACTICE else found.severity
    return Issue(found.code, found.diagnostics, severity, tuple(found.expression))


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
