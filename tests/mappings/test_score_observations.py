"""Observations and Provenance built from scores: valid R4, coded from our content, traceable."""

import pytest
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.provenance import Provenance
from qr_builder import AS_OF, build_response

from mappings import ScoringError, score_observations, score_response
from terminology import (
    CANONICAL_BASE,
    SCORE_BAND,
    SCORING_ALGORITHM,
    TerminologyService,
    ValueSetMembership,
)

VS = f"{CANONICAL_BASE}/ValueSet"
in_value_set = ValueSetMembership(TerminologyService())

FULL_RESPONSES = [
    (
        "selfback-baseline",
        {
            **{f"rmdq-{i}": i % 2 == 0 for i in range(1, 25)},
            **{f"sbst-{i}": i % 2 for i in range(1, 9)},
            "sbst-9": 4,
            "nrs-pain-average": 5,
            "nrs-pain-worst": 8,
            "fear-avoidance-item": 3,
            **{f"fabq-{i}": 3 for i in range(1, 6)},
            **{f"pseq-{i}": 4 for i in range(1, 10)},
            "psfs-1-activity": "lifting",
            "psfs-1-score": 4,
        },
    ),
    (
        "selfback-pain-perception",
        {**{f"bipq-{i}": 6 for i in range(1, 9)}, **{f"pcs-{i}": 3 for i in range(1, 14)}},
    ),
    (
        "selfback-mental-health",
        {**{f"phq-{i}": 2 for i in range(1, 9)}, **{f"pss-{i}": 2 for i in range(1, 11)}},
    ),
    (
        "selfback-everyday-health",
        {**{f"eq5d-{i}": 2 for i in range(1, 6)}, "eq5d-vas": 55, "saltin-grimby": 2, "wai-1": 6},
    ),
    (
        "selfback-weekly",
        {
            "nrs-pain-average": 6,
            "pain-interference": 4,
            "pseq-5": 2,
            "pseq-9": 3,
            "pss-2": 1,
            "pss-4": 2,
            "pss-5": 3,
            "pss-10": 1,
            "phq-1": 1,
            "phq-2": 2,
            "wai-1": 5,
        },
    ),
]


def resources_for(qid, answers):
    response = build_response(qid, answers, rid=f"qr-{qid}")
    scores = score_response(response, AS_OF)
    return response, scores, score_observations(response, scores, AS_OF)


ALL = [(qid, r) for qid, answers in FULL_RESPONSES for r in resources_for(qid, answers)[2]]


def test_every_instrument_is_exercised():
    ids = {o["method"]["coding"][0]["code"] for _, o in ALL if o["resourceType"] == "Observation"}
    from mappings import scoring_config

    assert ids == {s["id"] for s in scoring_config()["scores"]}


@pytest.mark.parametrize(
    "qid,resource", ALL, ids=[f"{q}-{r['resourceType']}-{i}" for i, (q, r) in enumerate(ALL)]
)
def test_resources_validate_with_r4b_models(qid, resource):
    model = Observation if resource["resourceType"] == "Observation" else Provenance
    model.model_validate(resource)


OBSERVATIONS = [o for _, o in ALL if o["resourceType"] == "Observation"]


@pytest.mark.parametrize(
    "obs", OBSERVATIONS, ids=[o["method"]["coding"][0]["code"] for o in OBSERVATIONS]
)
def test_observation_is_coded_traceable_and_versioned(obs):
    for coding in obs["code"]["coding"]:
        assert in_value_set(f"{VS}/score-observation-code", coding["system"], coding["code"])
    assert obs["subject"] == {"reference": "Patient/p-1"}
    assert obs["derivedFrom"][0]["reference"].startswith("QuestionnaireResponse/qr-")
    method = obs["method"]["coding"][0]
    assert (method["system"], method["version"]) == (SCORING_ALGORITHM, "1.0.0")
    assert in_value_set(f"{VS}/scoring-algorithm", SCORING_ALGORITHM, method["code"])
    assert obs["issued"] == AS_OF.isoformat()
    assert obs["category"][0]["coding"][0]["code"] == "survey"
    for interpretation in obs.get("interpretation", []):
        coding = interpretation["coding"][0]
        assert in_value_set(f"{VS}/score-band", SCORE_BAND, coding["code"])


def test_provenance_covers_every_observation_of_the_response():
    response, scores, resources = resources_for(*FULL_RESPONSES[0])
    *observations, provenance = resources
    assert provenance["resourceType"] == "Provenance"
    assert [t["reference"] for t in provenance["target"]] == [
        f"Observation/{o['id']}" for o in observations
    ]
    assert provenance["entity"] == [
        {"role": "source", "what": {"reference": "QuestionnaireResponse/qr-selfback-baseline"}}
    ]
    assert provenance["policy"] == [f"{SCORING_ALGORITHM}|1.0.0"]
    assert provenance["recorded"] == AS_OF.isoformat()


def test_ids_are_deterministic_and_unique():
    first = resources_for(*FULL_RESPONSES[0])[2]
    second = resources_for(*FULL_RESPONSES[0])[2]
    assert first == second
    ids = [r["id"] for _, r in ALL]
    assert len(ids) == len(set(ids))


def test_value_types_follow_the_score_kind():
    by_method = {o["method"]["coding"][0]["code"]: o for o in OBSERVATIONS}
    assert by_method["rmdq-total"]["valueInteger"] == 12
    assert by_method["psfs-mean"]["valueQuantity"] == {
        "value": 4.0,
        "unit": "score",
        "system": "http://unitsofmeasure.org",
        "code": "{score}",
    }
    assert by_method["eq5d5l-profile"]["valueString"] == "22222"
    risk = by_method["startback-risk"]["valueCodeableConcept"]["coding"]
    # items 1, 3, 5, 7 agreed and item 9 "extremely": total 5, subscale 3 -> medium
    assert [c["code"] for c in risk] == ["LA8982-6", "sbst-medium"]
    assert (
        by_method["phq8-total"]["interpretation"][0]["coding"][0]["code"] == "phq-moderately-severe"
    )  # 8 x 2 = 16


def test_prorated_score_says_so_in_a_note():
    answers = {f"pseq-{i}": 4 for i in range(1, 10)}
    _, _, resources = resources_for("selfback-baseline", answers)
    pseq = next(
        o
        for o in resources
        if o.get("method", {}).get("coding", [{}])[0].get("code") == "pseq-total"
    )
    assert pseq["valueInteger"] == 40
    assert pseq["note"][0]["text"] == "Prorated from 9 of 10 items; missing: pseq-10"


def test_no_scores_no_resources():
    response = build_response("selfback-sleep", {"sleep-1": "seldom"})
    assert score_observations(response, score_response(response, AS_OF), AS_OF) == []


@pytest.mark.parametrize("drop", ["id", "subject"])
def test_response_without_id_or_subject_cannot_be_referenced(drop):
    response = build_response("selfback-weekly", {"nrs-pain-average": 2})
    scores = score_response(response, AS_OF)
    del response[drop]
    with pytest.raises(ScoringError) as caught:
        score_observations(response, scores, AS_OF)
    assert caught.value.code == "required"
