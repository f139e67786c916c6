"""CodeSystem/$lookup (FHIR R4 codesystem-operation-lookup): what is known of a code.

``CodeSystem/$lookup?system=...&code=...`` (+ ``version``), a ``coding`` in a Parameters
body, or ``CodeSystem/[id]/$lookup?code=...``. ``property`` (repeatable) limits the
properties returned; ``displayLanguage`` picks the display from the designations. The
answer is Parameters ``name`` (the code system's), ``version``, ``display``,
``designation`` (language, use, value) and ``property`` (code, value), including the
hierarchy as ``parent`` and ``child``. An unknown code system or code is a 404.
"""

from __future__ import annotations

from dataclasses import replace

from fhir_server.errors import bad_request
from fhir_server.operations import Operation, OperationCall, OperationResult
from fhir_server.operations.terminology_parameters import (
    code_system_instance,
    codings_to_check,
    terminology,
    text,
    texts,
)
from fhir_server.storage.repository import Repository


def lookup(repo: Repository, call: OperationCall) -> OperationResult:
    if call.value("codeableConcept") is not None:
        raise bad_request("$lookup takes code (with system) or coding, not codeableConcept")
    with terminology(repo) as (service, stored):
        coding = codings_to_check(call)[0]
        found = code_system_instance(call, stored, coding.system)
        if found is not None:
            coding = replace(
                coding, system=found.resource.get("url"), version=found.resource.get("version")
            )
        if coding.system is None:
            raise bad_request("$lookup needs the code's system")
        answer = service.lookup(
            coding,
            properties=texts(call, "property"),
            display_language=text(call, "displayLanguage") or None,
        )
    return OperationResult(200, answer.as_parameters())


LOOKUP = Operation(
    name="lookup",
    levels=frozenset({"type", "instance"}),
    run=lookup,
    definition="http://hl7.org/fhir/OperationDefinition/CodeSystem-lookup",
    types=frozenset({"CodeSystem"}),
    changes_state=False,
)
