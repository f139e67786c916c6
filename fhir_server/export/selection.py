"""Which stored resources one type of an export holds, read page by page. Storage only.

A page is the current, not deleted versions of one type (``resource`` holds only the
current version of each resource, export.html: "the latest version"), changed after
``_since`` and no later than the job's ``transactionTime``, matching the parsed criteria
(the type filters and the access restriction, as search nodes the search SQL generator
turns into conditions), and -- for Patient and Group exports -- in the compartment of the
patients exported. Pages follow (last_updated, pk), so a page never repeats or skips a
row however long the export takes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, bindparam, exists, false, or_, select, true

from fhir_server.access.compartment import PATIENT_COMPARTMENT
from fhir_server.search.query import Node, SearchQuery
from fhir_server.storage.schema import resource, sp_reference
from fhir_server.storage.search_sql import match_pks


@dataclass(frozen=True, slots=True)
class TypeSelection:
    rtype: str
    criteria: tuple[Node, ...] = ()
    since_us: int | None = None
    until_us: int | None = None
    # ``compartment``: only resources in patients' compartments (Patient and Group
    # level) -- every stored Patient's (``all_patients``) or those of ``patient_ids``.
    compartment: bool = False
    patient_ids: tuple[str, ...] = ()
    all_patients: bool = False


# Where a type's pages start: before every (last_updated, pk).
START = (-1, 0)


def page(
    conn: Connection, selection: TypeSelection, *, after: tuple[int, int], limit: int
) -> Sequence[Any]:
    """Up to ``limit`` rows (pk, last_updated, body) after ``after``, a (last_updated, pk)
    position, in that order: the order of the (rtype, last_updated, pk) index, so a page
    of a type is a range of that index whatever else the table holds. A resource changed
    while the export runs gets a last_updated after ``until_us`` and leaves the selection,
    so no row moves behind a page already read."""
    lu, pk = after
    conditions: list[Any] = [
        or_(
            resource.c.last_updated > lu,
            and_(resource.c.last_updated == lu, resource.c.pk > pk),
        )
    ]
    if selection.since_us is not None:
        # export.html _since: "resources ... whose lastUpdated is later than" the instant.
        conditions.append(resource.c.last_updated > selection.since_us)
    if selection.until_us is not None:
        conditions.append(resource.c.last_updated <= selection.until_us)
    if selection.compartment:
        conditions.append(_in_patient_compartments(selection))
    statement = (
        match_pks(SearchQuery(selection.rtype, criteria=selection.criteria))
        .with_only_columns(resource.c.pk, resource.c.last_updated, resource.c.body)
        .where(*conditions)
        .order_by(resource.c.last_updated, resource.c.pk)
        .limit(limit)
    )
    return conn.execute(statement).all()


def _in_patient_compartments(selection: TypeSelection) -> Any:
    """compartmentdefinition.html (CompartmentDefinition/patient): a resource is in
    Patient/p's compartment when one of its type's listed parameters refers to Patient/p
    -- read from the reference index, local references only -- and a Patient is in its
    own. With every patient (a Patient-level export), the referred Patient must exist."""
    rtype = selection.rtype
    ref = sp_reference.alias("export_ref")
    params = PATIENT_COMPARTMENT.get(rtype, ())
    referring: list[Any] = [
        ref.c.rtype == rtype,
        ref.c.target_type == "Patient",
        ref.c.url.is_(None),
    ]
    if selection.all_patients:
        patient = resource.alias("export_patient")
        referring.append(
            exists().where(
                patient.c.rtype == "Patient",
                patient.c.id == ref.c.target_id,
                patient.c.deleted == false(),
            )
        )
    else:
        if not selection.patient_ids:
            return false()
        referring.append(
            ref.c.target_id.in_(
                bindparam("export_patients", list(selection.patient_ids), expanding=True)
            )
        )
    alternatives: list[Any] = []
    if params:
        alternatives.append(
            resource.c.pk.in_(select(ref.c.res_pk).where(ref.c.param.in_(params), *referring))
        )
    if rtype == "Patient":
        if selection.all_patients:
            return true()
        alternatives.append(
            resource.c.id.in_(bindparam("export_own", list(selection.patient_ids), expanding=True))
        )
    return or_(*alternatives) if alternatives else and_(false())
