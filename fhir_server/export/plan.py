"""What an export job reads, type by type, and what it must report instead. Pure code.

The types come from the request (``_type``) or the level: every type at system level; at
Patient and Group level the Patient and every type of the R4 Patient compartment
(export.html#endpoint---all-patients, #endpoint---group-of-patients). Each type is then
decided by the one access decision (``fhir_server.access.decision.decide``, interaction
``export``) under the job's system/ scopes:

- ``Allow``: every resource of the type;
- ``Filter`` (a query scope, ``system/Observation.rs?category=...``): only the resources
  matching it, as a search restriction in the page's SQL;
- ``Deny``: the type is left out. When the client named it in ``_type``, one
  OperationOutcome in the error file says why (export.html#response---complete-status:
  partial success is still a success).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from fhir_server.access.claims import Claims
from fhir_server.access.compartment import PATIENT_COMPARTMENT
from fhir_server.access.decision import Deny, Filter, decide
from fhir_server.access.scopes import ResourceScope, Scopes
from fhir_server.access.scopes import parse as parse_scopes
from fhir_server.export.kickoff import type_filter_nodes
from fhir_server.export.selection import TypeSelection
from fhir_server.search.query import Node, Permitted
from fhir_server.search.registry import Registry
from fhir_server.search.restriction import permitted

# The Patient compartment's members plus Patient itself (compartmentdefinition.html).
COMPARTMENT_TYPES = frozenset({"Patient", *PATIENT_COMPARTMENT})


def system_scopes(scopes: Scopes) -> tuple[ResourceScope, ...]:
    return scopes.of_context("system")


def export_claims(client_id: str, scopes: Scopes | str) -> Claims:
    """The claims a job runs under: its client and system/ scopes only. [D] Bulk export
    is for SMART Backend Services (export.html#bulk-data-kick-off-request: the client is
    authorised with system/ scopes); patient/ and user/ scopes never reach it, so a job
    needs no consent lookups and no launch context, and may run after the token expired."""
    parsed = parse_scopes(scopes) if isinstance(scopes, str) else scopes
    return Claims(client_id=client_id, scopes=Scopes(system_scopes(parsed)))


def level_types(level: str, all_types: Iterable[str]) -> tuple[str, ...]:
    if level == "system":
        return tuple(sorted(all_types))
    return tuple(sorted(COMPARTMENT_TYPES & set(all_types)))


def refusals(claims: Claims, level: str, requested: Iterable[str]) -> dict[str, str]:
    """The named types this job leaves out, each with the reason."""
    out: dict[str, str] = {}
    for rtype in requested:
        if level != "system" and rtype not in COMPARTMENT_TYPES:
            out[rtype] = (
                f"{rtype} is in no patient's compartment: a {level}-level export "
                "does not include it (export.html)"
            )
            continue
        decision = decide(claims, "export", rtype)
        if isinstance(decision, Deny):
            out[rtype] = f"{rtype} is left out: {decision.reason}"
    return out


def export_plan(
    claims: Claims,
    level: str,
    parameters: Mapping[str, Any],
    *,
    transaction_time: int,
    all_types: Iterable[str],
    reg: Registry,
    now_us: int,
) -> tuple[list[TypeSelection], dict[str, str]]:
    """(the selections to read, in order; the types refused with their reasons).
    ``parameters``: the job's stored request (types, since, type_filters, patients)."""
    requested: list[str] = list(parameters.get("types") or [])
    types = requested or [t for t in level_types(level, all_types) if reg.knows_type(t)]
    refused = refusals(claims, level, requested)
    filters = type_filter_nodes(
        [tuple(f) for f in parameters.get("type_filters") or []], reg=reg, now_us=now_us
    )
    selections = []
    for rtype in types:
        if rtype in refused or (level != "system" and rtype not in COMPARTMENT_TYPES):
            continue
        decision = decide(claims, "export", rtype)
        if isinstance(decision, Deny):
            continue
        criteria: list[Node] = []
        if rtype in filters:
            criteria.append(Permitted(((rtype, filters[rtype]),)))
        if isinstance(decision, Filter):
            criteria.append(
                permitted(
                    {rtype: decision.alternatives(rtype)}, reg=reg, now_us=now_us, base_url=None
                )
            )
        selections.append(
            TypeSelection(
                rtype,
                tuple(criteria),
                since_us=parameters.get("since"),
                until_us=transaction_time,
                compartment=level != "system",
                patient_ids=tuple(parameters.get("patients") or ()),
                all_patients=level == "patient",
            )
        )
    return selections, refused


def group_patients(group: Mapping[str, Any]) -> tuple[str, ...]:
    """The ids of a Group's Patient members (Group.member.entity, local references).
    [D] A member marked ``inactive`` is no longer in the group and is left out."""
    ids: list[str] = []
    for member in group.get("member") or []:
        if not isinstance(member, Mapping) or member.get("inactive") is True:
            continue
        entity = member.get("entity")
        reference = entity.get("reference") if isinstance(entity, Mapping) else None
        if isinstance(reference, str) and reference.startswith("Patient/"):
            patient = reference.split("/")[1]
            if patient and patient not in ids:
                ids.append(patient)
    return tuple(ids)
