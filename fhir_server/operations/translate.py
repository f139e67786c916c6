"""ConceptMap/$translate (FHIR R4 conceptmap-operation-translate): a code in another system.

``ConceptMap/$translate?system=...&code=...`` (or ``coding`` / ``codeableConcept`` in a
Parameters body) over every ConceptMap with a group from that system -- stored ones and
the shipped R4 core and programme maps -- optionally narrowed by ``source`` / ``target``
(ValueSet URLs) and ``targetsystem``; or over one map: the instance, ``url`` (+
``conceptMapVersion``) or a ``conceptMap`` in the body. ``reverse=true`` reads the maps
backwards (target to source; wider/narrower and subsumes/specializes swap). The answer
is Parameters ``result`` (true when some match is neither unmatched nor disjoint),
``message`` and one ``match`` per target (``equivalence``, ``concept``, ``source``).
"""

from __future__ import annotations

from dataclasses import replace

from fhir_server.errors import bad_request
from fhir_server.operations import Operation, OperationCall, OperationResult
from fhir_server.operations.terminology_parameters import (
    acted_on,
    boolean,
    codings_to_check,
    terminology,
    text,
)
from fhir_server.storage.repository import Repository


def translate(repo: Repository, call: OperationCall) -> OperationResult:
    with terminology(repo) as (service, stored):
        found = acted_on(
            call,
            service,
            stored,
            "ConceptMap",
            resource_name="conceptMap",
            version_name="conceptMapVersion",
        )
        codings = codings_to_check(call)
        reverse = boolean(call, "reverse")
        answer = None
        for given in codings:
            if given.system is None:
                raise bad_request("$translate needs the code's system")
            answer = service.translate(
                given,
                concept_maps=None if found is None else [found.resource],
                source_vs=text(call, "source"),
                target_vs=text(call, "target"),
                target_system=text(call, "targetsystem"),
                reverse=reverse,
            )
            if answer.result:
                break
        assert answer is not None
        if len(codings) > 1 and not answer.result:
            answer = replace(answer, message="None of the codings has a mapping")
    return OperationResult(200, answer.as_parameters())


TRANSLATE = Operation(
    name="translate",
    levels=frozenset({"type", "instance"}),
    run=translate,
    definition="http://hl7.org/fhir/OperationDefinition/ConceptMap-translate",
    types=frozenset({"ConceptMap"}),
    changes_state=False,
)
