"""Reading one patient's stored data for planning, through the search engine.

The thin I/O half of snapshot assembly: every read is a parsed FHIR search run by the
repository's search SQL (``WriteSession.find``), so this module builds no SQL. The pure
half, :func:`fhir_server.planning.snapshot.build_snapshot`, decides what counts.
"""

from __future__ import annotations

from typing import Any, Protocol

import orjson

from fhir_server.errors import not_found
from fhir_server.planning import conventions as fc
from fhir_server.planning.snapshot import PatientRecord, PlanningInputError, day_of
from fhir_server.search import SearchQuery, parse_search
from fhir_server.storage.repository import StoredResource

# Enough for years of daily data; a patient past it is planned from the newest rows the
# search returns (the step window is 28 days, so only very old data could be missed).
LIMIT = 10_000


class ResourceSource(Protocol):
    """What the reader needs: the current version by id and a parsed search.
    ``fhir_server.storage.repository.WriteSession`` is one (inside a write transaction,
    seeing that transaction's own writes)."""

    def read(self, rtype: str, id: str) -> StoredResource | None: ...

    def find(self, query: SearchQuery, limit: int) -> list[StoredResource]: ...


def _search(
    source: ResourceSource, rtype: str, params: list[tuple[str, str]]
) -> list[dict[str, Any]]:
    query = parse_search(rtype, params, strict=True)
    return [orjson.loads(r.body) for r in source.find(query, LIMIT) if not r.deleted]


def read_patient(source: ResourceSource, patient_id: str) -> dict[str, Any]:
    stored = source.read("Patient", patient_id)
    if stored is None or stored.deleted:
        raise not_found(f"Patient/{patient_id} is not known")
    return orjson.loads(stored.body)  # type: ignore[no-any-return]


def programme_plans(source: ResourceSource, patient_id: str) -> list[dict[str, Any]]:
    """The patient's active programme CarePlans, newest start first."""
    plans = _search(
        source,
        "CarePlan",
        [
            ("subject", f"Patient/{patient_id}"),
            ("category", f"{fc.CAREPLAN_KIND}|{fc.PROGRAMME}"),
            ("status", "active"),
        ],
    )
    return sorted(
        plans,
        key=lambda p: (str(day_of((p.get("period") or {}).get("start")) or ""), p["id"]),
        reverse=True,
    )


def read_record(source: ResourceSource, patient_id: str) -> PatientRecord:
    patient = read_patient(source, patient_id)
    plans = programme_plans(source, patient_id)
    if not plans:
        raise PlanningInputError(
            f"Patient/{patient_id} is not enrolled: no active programme CarePlan "
            f"(category {fc.CAREPLAN_KIND}|{fc.PROGRAMME})"
        )
    programme = plans[0]
    subject = ("subject", f"Patient/{patient_id}")
    return PatientRecord(
        patient=patient,
        programme_plan=programme,
        responses=tuple(_search(source, "QuestionnaireResponse", [subject])),
        observations=tuple(_search(source, "Observation", [subject])),
        weekly_plans=tuple(
            _search(source, "CarePlan", [("based-on", f"CarePlan/{programme['id']}")])
        ),
        goals=tuple(_search(source, "Goal", [subject])),
        communications=tuple(_search(source, "Communication", [subject, ("status", "completed")])),
        consents=tuple(_search(source, "Consent", [("patient", f"Patient/{patient_id}")])),
        detected_issues=tuple(
            _search(source, "DetectedIssue", [("patient", f"Patient/{patient_id}")])
        ),
    )
