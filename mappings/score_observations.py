"""FHIR R4 Observations (one per Score) and one Provenance for a scored QuestionnaireResponse.

Observation ids are UUIDv5 of (response reference, score id, algorithm version), so scoring the
same response twice gives the same resources and a server can store them with update-as-create.
"""

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from mappings._packaged import packaged_json
from mappings.score import Score, ScoringError
from terminology import LOINC, SCORE_BAND, SCORING_ALGORITHM, UCUM, lookup

# Namespace for our deterministic ids: uuid5(NAMESPACE_URL, canonical base).
ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "http://selfback.example.org/fhir")
SOFTWARE_ID_SYSTEM = "http://selfback.example.org/fhir/sid/software"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
PARTICIPANT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"


def _response_reference(response: Mapping[str, Any]) -> str:
    rid = response.get("id")
    if not rid:
        raise ScoringError(
            "QuestionnaireResponse.id is needed for Observation.derivedFrom", "required"
        )
    return f"QuestionnaireResponse/{rid}"


def _band_coding(band: str) -> dict[str, str]:
    concept = lookup(SCORE_BAND, band)
    coding = {"system": SCORE_BAND, "code": band}
    if concept is not None and concept.display:
        coding["display"] = concept.display
    return coding


def _value(score: Score) -> dict[str, Any]:
    if score.value_kind == "integer":
        return {"valueInteger": score.value}
    if score.value_kind == "decimal":
        return {
            "valueQuantity": {
                "value": score.value,
                "unit": "score",
                "system": UCUM,
                "code": "{score}",
            }
        }
    if score.value_kind == "string":
        return {"valueString": score.value}
    band = str(score.value)
    codings: list[dict[str, str]] = []
    # LOINC answers for bands that have one (STarT Back 91352-5, list LL3578-3), from scoring.json
    band_loinc: Mapping[str, str] = packaged_json("data", "scoring.json")["bandLoinc"]
    if band in band_loinc:
        display = lookup(LOINC, band_loinc[band])
        loinc = {"system": LOINC, "code": band_loinc[band]}
        if display is not None and display.display:
            loinc["display"] = display.display
        codings.append(loinc)
    codings.append(_band_coding(band))
    return {"valueCodeableConcept": {"coding": codings}}


def _observation(
    response: Mapping[str, Any], score: Score, as_of: datetime, response_ref: str
) -> dict[str, Any]:
    obs_id = str(
        uuid.uuid5(ID_NAMESPACE, f"{response_ref}|{score.score_id}|{score.algorithm_version}")
    )
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": obs_id,
        "status": "amended" if response.get("status") == "amended" else "final",
        "category": [
            {"coding": [{"system": OBSERVATION_CATEGORY, "code": "survey", "display": "Survey"}]}
        ],
        "code": {
            "coding": [
                {"system": c.system, "code": c.code, "display": c.display} for c in score.codes
            ],
            "text": score.display,
        },
        "subject": dict(response["subject"]),
    }
    if "encounter" in response:
        obs["encounter"] = dict(response["encounter"])
    obs["effectiveDateTime"] = score.effective
    obs["issued"] = as_of.isoformat()
    if "source" in response:
        obs["performer"] = [dict(response["source"])]
    obs.update(_value(score))
    if score.band is not None and score.value_kind != "band":
        obs["interpretation"] = [{"coding": [_band_coding(score.band)]}]
    if score.prorated:
        obs["note"] = [
            {
                "text": f"Prorated from {len(score.items_answered)} of "
                f"{len(score.items_answered) + len(score.items_missing)} items; missing: "
                + ", ".join(score.items_missing)
            }
        ]
    obs["method"] = {
        "coding": [
            {
                "system": SCORING_ALGORITHM,
                "version": score.algorithm_version,
                "code": score.score_id,
                "display": f"Scoring of {score.display}",
            }
        ],
        "text": f"SelfBACK scoring {score.score_id} v{score.algorithm_version}",
    }
    obs["derivedFrom"] = [{"reference": response_ref}]
    return obs


def _provenance(
    response_ref: str, observations: Sequence[Mapping[str, Any]], as_of: datetime, version: str
) -> dict[str, Any]:
    return {
        "resourceType": "Provenance",
        "id": str(uuid.uuid5(ID_NAMESPACE, f"{response_ref}|provenance|{version}")),
        "target": [{"reference": f"Observation/{o['id']}"} for o in observations],
        "recorded": as_of.isoformat(),
        "policy": [f"{SCORING_ALGORITHM}|{version}"],
        "activity": {"coding": [{"system": DATA_OPERATION, "code": "CREATE", "display": "create"}]},
        "agent": [
            {
                "type": {
                    "coding": [
                        {"system": PARTICIPANT_TYPE, "code": "assembler", "display": "Assembler"}
                    ]
                },
                "who": {
                    "identifier": {
                        "system": SOFTWARE_ID_SYSTEM,
                        "value": f"mappings.scoring/{version}",
                    },
                    "display": f"SelfBACK questionnaire scoring {version}",
                },
            }
        ],
        "entity": [{"role": "source", "what": {"reference": response_ref}}],
    }


def score_observations(
    questionnaire_response: Mapping[str, Any], scores: Sequence[Score], as_of: datetime
) -> list[dict[str, Any]]:
    """One Observation per score, then one Provenance covering them all ([] when no scores).

    The response must have an ``id`` (for derivedFrom) and a ``subject``; ``as_of`` (with time
    zone) becomes Observation.issued and Provenance.recorded.
    """
    if not scores:
        return []
    if as_of.tzinfo is None:
        raise ScoringError("as_of must carry a time zone", "invalid")
    if "subject" not in questionnaire_response:
        raise ScoringError(
            "QuestionnaireResponse.subject is needed for Observation.subject", "required"
        )
    response_ref = _response_reference(questionnaire_response)
    observations = [_observation(questionnaire_response, s, as_of, response_ref) for s in scores]
    versions = {s.algorithm_version for s in scores}
    if len(versions) != 1:
        raise ScoringError(
            "scores from different algorithm versions cannot share a Provenance", "invalid"
        )
    return [*observations, _provenance(response_ref, observations, as_of, versions.pop())]
