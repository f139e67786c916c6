"""The programme's content, loaded into the server on start-up.

The content lives in the pure libraries (terminology: CodeSystems, ValueSets, ConceptMaps;
mappings: Questionnaires; plan_engine: the exercise and education catalogue and the weekly
PlanDefinition). It is written with PUT under its own ids in one transaction, so loading
is repeatable: unchanged resources are no-op updates and create no new versions.
"""

from __future__ import annotations

from typing import Any

import orjson

from fhir_server.interactions.transaction import BundleOptions, process_bundle
from fhir_server.loading import as_transaction
from fhir_server.storage.repository import Repository
from fhir_server.versioning import instant, now_us


def programme_content() -> list[dict[str, Any]]:
    import mappings
    import terminology
    from fhir_server.planning import operation_definitions
    from plan_engine import catalogue

    return [
        *terminology.load_content(),
        *mappings.load_questionnaires(),
        *catalogue.load_catalogue().all_definitions(),
        *operation_definitions(),  # the plan engine's operations ($plan-week, dry run)
    ]


def load_programme_content(
    repo: Repository, base_url: str = "http://localhost/fhir"
) -> dict[str, int]:
    """Write the content; answers how many resources were created, updated or unchanged."""
    now = now_us()
    options = BundleOptions(base_url=base_url, now=now, return_minimal=True)
    response = orjson.loads(process_bundle(repo, as_transaction(programme_content()), options))
    counts = {"created": 0, "updated": 0, "unchanged": 0}
    for entry in response.get("entry", []):
        answer = entry["response"]
        if answer["status"].startswith("201"):
            counts["created"] += 1
        elif answer.get("lastModified") == instant(now):  # a version written just now
            counts["updated"] += 1
        else:
            counts["unchanged"] += 1
    return counts
