"""CodeSystem/$subsumes (FHIR R4 codesystem-operation-subsumes): how two codes relate.

``CodeSystem/$subsumes?system=...&codeA=...&codeB=...`` (+ ``version``),
``codingA``/``codingB`` in a Parameters body, or ``CodeSystem/[id]/$subsumes``. The answer
is Parameters ``outcome``: ``equivalent``, ``subsumes`` (A is an ancestor of B),
``subsumed-by`` or ``not-subsumed``, over the code system's is-a hierarchy (concept
nesting and parent/child properties; terminology.codesystem). A code system whose
hierarchy is not is-a (grouped-by, as the programme's grouped code systems) is a 422; an
unknown code a 400; an unknown code system a 404.
"""

from __future__ import annotations

from fhir_server.errors import bad_request
from fhir_server.operations import Operation, OperationCall, OperationResult
from fhir_server.operations.terminology_parameters import (
    code_system_instance,
    coding,
    terminology,
    text,
)
from fhir_server.storage.repository import Repository


def subsumes(repo: Repository, call: OperationCall) -> OperationResult:
    with terminology(repo) as (service, stored):
        system, version = text(call, "system"), text(call, "version")
        found = code_system_instance(call, stored, system)
        if found is not None:
            system, version = found.resource.get("url"), found.resource.get("version")
        codes: list[str] = []
        for side in ("A", "B"):
            plain, given = text(call, f"code{side}"), coding(call, f"coding{side}")
            if (plain is None) == (given is None):
                raise bad_request(f"$subsumes needs exactly one of code{side} and coding{side}")
            if given is not None:
                if system is not None and given.system not in (None, system):
                    raise bad_request(f"coding{side} is from {given.system}, not {system}")
                system = system or given.system
                codes.append(given.code)
            else:
                assert plain is not None
                codes.append(plain)
        if not system:
            raise bad_request("$subsumes needs the code system (system, or the codings')")
        outcome = service.subsumes(system, codes[0], codes[1], version)
    return OperationResult(
        200,
        {"resourceType": "Parameters", "parameter": [{"name": "outcome", "valueCode": outcome}]},
    )


SUBSUMES = Operation(
    name="subsumes",
    levels=frozenset({"type", "instance"}),
    run=subsumes,
    definition="http://hl7.org/fhir/OperationDefinition/CodeSystem-subsumes",
    types=frozenset({"CodeSystem"}),
    changes_state=False,
)
