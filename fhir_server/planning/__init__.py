"""The plan engine in the server: snapshot assembly, storing decisions, triggers, schedule.

- ``snapshot.build_snapshot(record, as_of)``: stored FHIR resources -> PatientSnapshot (pure)
- ``record.read_plans`` / ``record.read_history(source, plans, as_of)``: those resources,
  read through search, only the history window the engine plans from (``window``: its
  dates and counts, pure); ``record.read_record``: everything (the tests' reference)
- ``store.store_decision(session, decision, record, now=...)``: one transaction
- ``run.decide_week`` / ``run.plan_and_store``: one planning run
- ``schedule``: the weekly ``weekly-plan`` outbox events
- ``weeks``: which week a run plans (pure)

The handlers live in ``fhir_server.events.handlers.weekly_planning``, the operations in
``fhir_server.operations.plan_apply`` and ``plan_week``. docs/PLAN_ENGINE.md, "In the
server", describes the whole.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

_DEFINITIONS = Path(__file__).with_name("definitions")


def operation_definitions() -> list[dict[str, Any]]:
    """The OperationDefinitions of our planning operations (loaded with the content)."""
    return [
        json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(_DEFINITIONS.glob("OperationDefinition-*.json"))
    ]
