"""$validate-code on ValueSet and CodeSystem (FHIR R4 valueset-operation-validate-code,
codesystem-operation-validate-code): is this code in the ValueSet / CodeSystem, with a
right display?

ValueSet: the instance, ``url`` (+ ``valueSetVersion``) or ``valueSet``; the code as
``code`` + ``system`` (+ ``systemVersion``, ``display``), ``coding`` or
``codeableConcept`` (valid when one of its codings is). CodeSystem: the instance, ``url``
(+ ``version``), ``codeSystem``, or else the code's own system; the code as ``code``
(+ ``display``), ``coding`` or ``codeableConcept``. The answer is Parameters ``result``,
``message`` (why not) and ``display`` (the recommended display); a code that is not valid
is a 200 with ``result`` false, not an error. Errors: terminology_parameters.
"""

from __future__ import annotations

from fhir_server.errors import bad_request
from fhir_server.operations import Operation, OperationCall, OperationResult
from fhir_server.operations.terminology_parameters import (
    acted_on,
    codings_to_check,
    failure,
    terminology,
    text,
    value_set_acted_on,
)
from fhir_server.storage.repository import Repository
from terminology import TerminologyError


def validate_code(repo: Repository, call: OperationCall) -> OperationResult:
    if call.rtype == "CodeSystem":
        return _in_code_system(repo, call)
    return _in_value_set(repo, call)


def _in_value_set(repo: Repository, call: OperationCall) -> OperationResult:
    with terminology(repo) as (service, stored):
        found = value_set_acted_on(call, service, stored, "validate-code")
        codings = codings_to_check(call, version_name="systemVersion")
        try:
            answer = service.validate_in_value_set(
                found.resource,
                codings,
                marker=found.marker,
                display_language=text(call, "displayLanguage") or None,
            )
        except TerminologyError as exc:
            raise failure(exc, missing_is=422) from exc
    return OperationResult(200, answer.as_parameters())


def _in_code_system(repo: Repository, call: OperationCall) -> OperationResult:
    with terminology(repo) as (service, stored):
        codings = codings_to_check(call)
        if len(codings) != 1 and call.id is None and text(call, "url") is None:
            systems = {c.system for c in codings}
            if len(systems) != 1:
                raise bad_request("Name the CodeSystem (url) to check a codeableConcept against")
        found = acted_on(
            call,
            service,
            stored,
            "CodeSystem",
            resource_name="codeSystem",
            version_name="version",
            fallback_url=codings[0].system,
        )
        if found is None:
            raise bad_request("$validate-code needs a CodeSystem: the instance, url or system")
        url = found.resource.get("url")
        relevant = [c for c in codings if c.system in (None, url)] or codings
        answer = None
        for given in relevant:
            answer = service.validate_in_code_system(found, given)
            if answer.result:
                break
    assert answer is not None
    return OperationResult(200, answer.as_parameters())


VALIDATE_CODE = Operation(
    name="validate-code",
    levels=frozenset({"type", "instance"}),
    run=validate_code,
    definition="http://hl7.org/fhir/OperationDefinition/ValueSet-validate-code",
    types=frozenset({"ValueSet", "CodeSystem"}),
    changes_state=False,
    definitions_by_type=(
        ("ValueSet", "http://hl7.org/fhir/OperationDefinition/ValueSet-validate-code"),
        ("CodeSystem", "http://hl7.org/fhir/OperationDefinition/CodeSystem-validate-code"),
    ),
)
