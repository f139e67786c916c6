"""Against the reference data (../shared): the generated registry is up to date, and every
Synthea resource indexes without error."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from fhir_server.search import extract_index_rows
from fhir_server.search.generate import OUTPUT, build

SHARED = (Path(__file__).resolve().parents[2] / ".." / "shared").resolve()
DEFINITIONS = SHARED / "fhir-r4" / "definitions"
SYNTHEA = SHARED / "synthea-r4"

pytestmark = [
    pytest.mark.conformance,
    pytest.mark.skipif(not SHARED.exists(), reason="../shared reference data is absent"),
]


def test_generated_registry_is_current() -> None:
    with open(OUTPUT, encoding="utf-8") as fh:
        shipped = json.load(fh)
    assert build(DEFINITIONS) == shipped


def _synthea_resources() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for path in sorted(SYNTHEA.glob("*.json")):
        if path.name == "index.json":
            continue
        with open(path, encoding="utf-8") as fh:
            found.extend(e["resource"] for e in json.load(fh)["entry"])
    return found


def test_synthea_resources_index() -> None:
    resources = _synthea_resources()
    by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in resources:
        by_type[r["resourceType"]].append(r)
    observations = by_type["Observation"]
    assert observations
    for obs in observations:
        found = extract_index_rows(obs)
        params = {row["param"] for rows in found.values() for row in rows}
        assert {"code", "subject", "status"} <= params
    # Every resource indexes without error. Its cost is measured in bench/, not asserted
    # here (house rule: no timing assertions in tests).
    for r in resources:
        extract_index_rows(r)
