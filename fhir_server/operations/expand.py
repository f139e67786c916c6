"""ValueSet/$expand (FHIR R4 valueset-operation-expand): the codes of a ValueSet.

``GET|POST ValueSet/[id]/$expand`` or ``ValueSet/$expand`` with ``url`` (and
``valueSetVersion``) or a ``valueSet`` resource in a Parameters body (or the ValueSet as
the body). Optional: ``filter`` (every word must occur in the code or a display),
``count`` and ``offset`` (a page of ``contains``; ``total`` counts them all),
``displayLanguage`` (displays from the designations in that language),
``includeDesignations``, ``activeOnly``, ``excludeNotForUI``. The answer is the ValueSet
with an ``expansion`` (``identifier``, ``timestamp``, ``total``, ``offset``, ``parameter``,
``contains`` with system, version, code, display). Errors: terminology_parameters.
"""

from __future__ import annotations

from fhir_server.operations import Operation, OperationCall, OperationResult
from fhir_server.operations.terminology_parameters import (
    boolean,
    failure,
    integer,
    terminology,
    text,
    value_set_acted_on,
)
from fhir_server.storage.repository import Repository
from fhir_server.versioning import instant
from terminology import TerminologyError


def expand(repo: Repository, call: OperationCall) -> OperationResult:
    with terminology(repo) as (service, stored):
        found = value_set_acted_on(call, service, stored, "expand")
        try:
            expanded = service.expand(
                found.resource,
                marker=found.marker,
                filter=text(call, "filter") or None,
                count=integer(call, "count"),
                offset=integer(call, "offset") or 0,
                display_language=text(call, "displayLanguage") or None,
                include_designations=boolean(call, "includeDesignations"),
                active_only=boolean(call, "activeOnly"),
                exclude_not_for_ui=boolean(call, "excludeNotForUI"),
                timestamp=instant(call.now),
            )
        except TerminologyError as exc:
            # The ValueSet itself was found: what it needs and we lack is not a 404.
            raise failure(exc, missing_is=422) from exc
    return OperationResult(200, expanded)


EXPAND = Operation(
    name="expand",
    levels=frozenset({"type", "instance"}),
    run=expand,
    definition="http://hl7.org/fhir/OperationDefinition/ValueSet-expand",
    types=frozenset({"ValueSet"}),
    changes_state=False,
)
