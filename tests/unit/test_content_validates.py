"""Issue 5: all the programme's content validates against R4 and its own profiles."""

from __future__ import annotations

import pytest

import profiles
from fhir_server.content import programme_content
from fhir_server.validation import validate_resource

CONTENT = programme_content()


def test_there_is_content() -> None:
    kinds = {r["resourceType"] for r in CONTENT}
    assert {"CodeSystem", "ValueSet", "ConceptMap", "Questionnaire", "ActivityDefinition", "PlanDefinition"} <= kinds


@pytest.mark.parametrize("resource", CONTENT, ids=lambda r: f"{r['resourceType']}/{r['id']}")
def test_content_resource_is_valid(resource: dict[str, object]) -> None:
    validate_resource(resource)  # structural, as every write is checked
    errors = [i for i in profiles.validate(resource) if i.severity in ("error", "fatal")]
    assert errors == []
