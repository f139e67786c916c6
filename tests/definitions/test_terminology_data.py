"""The shipped R4 core terminology (terminology/data) is what the generator makes from the
FHIR 4.0.1 definitions, holds facts only, and stays small."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from fhir_server.definitions.generate_terminology import OUTPUT, build

ROOT = Path(__file__).resolve().parents[2]
R4_DEFINITIONS = (ROOT / ".." / "shared" / "fhir-r4" / "definitions").resolve()

# Prose the generator must leave out (FHIR narrative and descriptive elements).
PROSE = ("text", "description", "definition", "purpose", "copyright", "comment", "contact")


def _committed() -> dict:
    with gzip.open(OUTPUT, "rb") as fh:
        data: dict = json.load(fh)
    return data


def test_data_file_is_small_and_free_of_prose() -> None:
    assert OUTPUT.stat().st_size < 1_000_000

    def walk(node: object) -> None:
        if isinstance(node, dict):
            assert not set(node) & set(PROSE), sorted(set(node) & set(PROSE))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(_committed()["resources"])


@pytest.mark.conformance
@pytest.mark.skipif(not R4_DEFINITIONS.exists(), reason="../shared reference data is absent")
def test_committed_terminology_matches_a_fresh_generation() -> None:
    assert _committed() == build(R4_DEFINITIONS)
