"""QuestionnaireResponse/$extract: the resources a response yields, not saved.

SDC's $extract (build.fhir.org/ig/HL7/sdc/OperationDefinition-QuestionnaireResponse-extract)
returns what extraction produces; for our programme that is the score Observations and
their Provenance (mappings.score_observations), the same resources the outbox writes when
a response is submitted. They come as a transaction Bundle of PUTs, so a client may post
it as it is. Invoked on a stored response (``QuestionnaireResponse/{id}/$extract``) or on
one sent in the body (``QuestionnaireResponse/$extract`` with the response, or Parameters
with ``questionnaire-response``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from fhir_server.errors import bad_request, unprocessable
from fhir_server.interactions.read import read
from fhir_server.operations import Operation, OperationCall, OperationResult
from fhir_server.storage.repository import Repository
from fhir_server.validation import validate_resource
from fhir_server.versioning import new_id
from mappings import ScoringError, score_observations, score_response


def extract(repo: Repository, call: OperationCall) -> OperationResult:
    response, as_of = _response(repo, call)
    try:
        resources = score_observations(response, score_response(response, as_of), as_of)
    except ScoringError as exc:
        raise unprocessable(
            f"The response cannot be scored: {exc}", "QuestionnaireResponse"
        ) from exc
    entries = [
        {
            "fullUrl": f"{call.base_url}/{r['resourceType']}/{r['id']}",
            "resource": r,
            "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
        }
        for r in resources
    ]
    bundle: dict[str, Any] = {"resourceType": "Bundle", "id": new_id(), "type": "transaction"}
    if entries:
        bundle["entry"] = entries
    return OperationResult(200, bundle)


def _response(repo: Repository, call: OperationCall) -> tuple[dict[str, Any], datetime]:
    if call.id is not None:
        stored = read(repo, "QuestionnaireResponse", call.id)
        return orjson.loads(stored.body), datetime.fromtimestamp(
            stored.last_updated / 1_000_000, UTC
        )
    given = call.resource
    if given is None:
        parameter = call.value("questionnaire-response")
        given = parameter.get("resource") if isinstance(parameter, dict) else None
    if not isinstance(given, dict) or given.get("resourceType") != "QuestionnaireResponse":
        raise bad_request(
            "$extract needs a QuestionnaireResponse (in the body or as questionnaire-response)"
        )
    validate_resource(given, expected_type="QuestionnaireResponse")
    if "id" not in given:
        # derivedFrom needs a reference: an unsaved response gets a contained-style local id.
        given = {**given, "id": new_id()}
    return given, datetime.fromtimestamp(call.now / 1_000_000, UTC)


EXTRACT = Operation(
    name="extract",
    levels=frozenset({"type", "instance"}),
    run=extract,
    definition="http://hl7.org/fhir/uv/sdc/OperationDefinition/QuestionnaireResponse-extract",
    types=frozenset({"QuestionnaireResponse"}),
    changes_state=False,
)
