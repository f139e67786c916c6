"""The access decision extracts only a type's patient-compartment reference parameters
(``extract_index_rows(..., only=...)``, docs/AUTH.md "Cost"). The subset must give exactly
the full extraction's rows of those parameters, or the decision would change: checked on
every R4 example resource available and on the enforcement tests' own bodies."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from fhir_server.access.compartment import PATIENT_COMPARTMENT
from fhir_server.access.decision import compartment_patients
from fhir_server.search import extract_index_rows
from tests.auth.access_world import REPRESENTATIVE, body_for

R4_EXAMPLES = Path("/work/shared/fhir-r4/examples/json")


def _resources(node: Any) -> Iterator[dict[str, Any]]:
    """A resource and, for Bundles and contained resources, the resources inside it."""
    if not isinstance(node, dict) or not isinstance(node.get("resourceType"), str):
        return
    yield node
    for entry in node.get("entry") or []:
        if isinstance(entry, dict):
            yield from _resources(entry.get("resource"))
    for contained in node.get("contained") or []:
        yield from _resources(contained)


def _examples() -> list[dict[str, Any]]:
    found = [body_for(rtype, "p1") | {"id": "x1"} for rtype in REPRESENTATIVE]
    if R4_EXAMPLES.is_dir():
        for path in sorted(R4_EXAMPLES.glob("*.json")):
            found.extend(_resources(orjson.loads(path.read_bytes())))
    return found


def _rows_of(rows: dict[str, list[dict[str, Any]]], params: frozenset[str]) -> list[Any]:
    """Every row of ``params``, in every table: a reference parameter also indexes its
    ``Reference.identifier`` as a token row named ``<param>:identifier``."""
    return sorted(
        (table, tuple(sorted((k, str(v)) for k, v in row.items())))
        for table, table_rows in rows.items()
        for row in table_rows
        if row["param"].partition(":")[0] in params
    )


def test_subset_extraction_equals_the_full_extractions_compartment_rows() -> None:
    compared = 0
    for resource in _examples():
        params = PATIENT_COMPARTMENT.get(resource["resourceType"])
        if not params:
            continue
        only = frozenset(params)
        full = extract_index_rows(resource)
        subset = extract_index_rows(resource, only=only)
        assert _rows_of(subset, only) == _rows_of(full, only), resource.get("id")
        # and the subset holds nothing else
        assert sum(len(rows) for rows in subset.values()) == len(_rows_of(subset, only))
        compared += 1
    assert compared >= len([t for t in REPRESENTATIVE if t in PATIENT_COMPARTMENT])
    if R4_EXAMPLES.is_dir():
        assert compared > 50  # the curated R4 subset has well over 50 compartment resources


def test_compartment_patients_finds_the_patient_references() -> None:
    observation = body_for("Observation", "p1") | {"id": "o1"}
    observation["performer"] = [{"reference": "Patient/p2"}, {"reference": "Practitioner/d"}]
    assert compartment_patients(observation) == {"p1", "p2"}
    # an absolute reference names another server's patient, not ours
    observation["subject"] = {"reference": "https://elsewhere.example/fhir/Patient/p1"}
    assert compartment_patients(observation) == {"p2"}


@pytest.mark.skipif(not R4_EXAMPLES.is_dir(), reason="the R4 examples are not present")
def test_compartment_patients_of_the_r4_observation_example() -> None:
    path = R4_EXAMPLES / "Observation-example.json"
    if not path.exists():
        pytest.skip("Observation-example.json is not in the curated subset")
    assert compartment_patients(orjson.loads(path.read_bytes())) == {"example"}
