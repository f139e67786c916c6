"""A submitted QuestionnaireResponse becomes score Observations and a Provenance.

The scoring itself is pure (mappings.score_response / score_observations); this handler
reads the response version the event names, and writes the results with PUT under the
ids the scoring chose, so handling the same event twice changes nothing. ``as_of`` is the
response version's lastUpdated, not the worker's clock, for the same reason.
"""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from fhir_server.events.outbox import OutboxEvent
from fhir_server.interactions.update import update
from fhir_server.storage.repository import WriteSession
from mappings import ScoringError, score_observations, score_response


def score_questionnaire_response(session: WriteSession, event: OutboxEvent, now: int) -> str | None:
    stored = session.vread(event.rtype, event.res_id, event.version)
    if stored is None or stored.deleted:
        return "response version gone"
    response = orjson.loads(stored.body)
    as_of = datetime.fromtimestamp(stored.last_updated / 1_000_000, UTC)
    try:
        results = score_observations(response, score_response(response, as_of), as_of)
    except ScoringError as exc:
        # The response cannot be scored (not one of ours, answers out of range): a fact
        # about the data, not a failure to retry.
        return f"not scored: {exc}"
    for resource in results:
        update(session, resource["resourceType"], resource["id"], resource, now=now)
    return f"{len(results)} resources written" if results else "nothing to score"
