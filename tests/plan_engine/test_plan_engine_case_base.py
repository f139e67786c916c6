"""Case base and similarity: local measures, renormalisation, retrieval and fallback."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, replace
from unittest import mock

import pytest
from pe_personas import AS_OF, baseline, new_starter

from plan_engine import decide_plan, load_case_base, load_catalogue
from plan_engine.casebase import CaseOutcome, is_success
from plan_engine.config import load_rules, load_similarity
from plan_engine.retrieval import retrieve
from plan_engine.similarity import (
    categorical_similarity,
    global_similarity,
    numeric_similarity,
    ordinal_similarity,
    sequence_similarity,
)

CONFIG = load_similarity()
CASES = load_case_base()
RULES = load_rules()


@pytest.mark.parametrize(
    ("a", "b", "expected"), [(5, 5, 1.0), (0, 10, 0.0), (3, 8, 0.5), (10, 7, 0.7)]
)
def test_numeric_similarity_over_the_instrument_range(a: float, b: float, expected: float) -> None:
    assert numeric_similarity(a, b, 0, 10) == pytest.approx(expected)


def test_ordinal_similarity_on_ranks() -> None:
    order = ("low", "medium", "high")
    assert ordinal_similarity("low", "low", order) == 1.0
    assert ordinal_similarity("low", "medium", order) == 0.5
    assert ordinal_similarity("low", "high", order) == 0.0
    assert ordinal_similarity("low", "unknown", order) == 0.0


def test_categorical_similarity_from_the_table() -> None:
    table = CONFIG.attribute("sex").table
    assert categorical_similarity("female", "female", table) == 1.0
    assert categorical_similarity("female", "male", table) == 0.7


def test_sequence_similarity_aligns_on_the_most_recent_points() -> None:
    assert sequence_similarity((1, 2, 5, 6), (5, 6), 10, 4) == 1.0
    assert sequence_similarity((4, 4), (6, 2), 10, 4) == pytest.approx(0.8)
    assert sequence_similarity((), (1,), 10, 4) is None
    assert sequence_similarity((0,), (5000,), 3000, 2) == 0.0


def test_missing_attributes_drop_out_and_weights_renormalise() -> None:
    weights = (("age", 1.0), ("pain_average", 1.0), ("rmdq", 2.0))
    config = replace(CONFIG, min_attribute_weight_present=0.0)
    full, _ = global_similarity(
        {"age": 50.0, "pain_average": 5.0, "rmdq": 10.0},
        {"age": 50.0, "pain_average": 5.0, "rmdq": 10.0},
        weights,
        config,
    )
    partial, contributions = global_similarity(
        {"age": 50.0, "rmdq": 10.0},
        {"age": 50.0, "pain_average": 0.0, "rmdq": 10.0},
        weights,
        config,
    )
    assert full == partial == 1.0
    assert [c.attribute for c in contributions] == ["age", "rmdq"]


def test_too_little_known_means_not_similar() -> None:
    score, _ = global_similarity(
        {"sex": "female"}, {"sex": "female"}, CONFIG.weights("exercise"), CONFIG
    )
    assert score == 0.0


def test_retrieval_returns_only_successful_cases_above_the_threshold_best_first() -> None:
    problem = {
        "age": 45.0,
        "sex": "female",
        "pain_average": 5.0,
        "rmdq": 10.0,
        "pseq": 35.0,
        "fabq_pa": 12.0,
    }
    found = retrieve(problem, CASES, CONFIG, (("exercise", 5), ("education", 3)))
    assert len(found["exercise"]) == 5 and len(found["education"]) == 3
    for neighbours in found.values():
        sims = [n.retrieved.similarity for n in neighbours]
        assert sims == sorted(sims, reverse=True)
        assert all(
            n.case.success and s >= CONFIG.threshold for n, s in zip(neighbours, sims, strict=True)
        )


def test_failed_cases_are_never_retrieved() -> None:
    failure = next(c for c in CASES.cases if c.id == "clin-011")
    assert not failure.success
    problem = dict(failure.problem)
    found = retrieve(problem, CASES, CONFIG, (("exercise", 59),))
    assert "clin-011" not in [n.case.id for n in found["exercise"]]


def test_rule_fallback_when_no_case_is_similar_enough() -> None:
    snapshot = replace(new_starter(), baseline=baseline(completed_on=AS_OF, start_back_risk="low"))
    strict = replace(CONFIG, threshold=1.01)
    found = retrieve({"age": 40.0}, CASES, strict, (("exercise", 5),))
    assert found["exercise"] == ()
    with mock.patch("plan_engine.engine.load_similarity", return_value=strict):
        decision = decide_plan(snapshot, AS_OF)
    assert "CBR-FALLBACK" in [r.ref for r in decision.mode_reasons]
    assert decision.retrieved_cases == ()
    assert len(decision.exercises) == 4
    assert all(r.source == "rule" for e in decision.exercises for r in e.reasons)


@pytest.mark.parametrize(
    ("rmdq", "delta_rmdq", "delta_nrs", "success"),
    [
        (10, -3, 0, True),
        (10, -2, 0, False),
        (10, 0, -2, True),
        (10, 0, -1, False),
        (0, -1, 0, False),
    ],
)
def test_success_is_a_30_percent_rmdq_drop_or_two_nrs_points(
    rmdq: int, delta_rmdq: float, delta_nrs: float, success: bool
) -> None:
    outcome = CaseOutcome(weeks=12, delta_rmdq=delta_rmdq, delta_nrs=delta_nrs, adherence=0.5)
    assert is_success({"rmdq": rmdq}, outcome, RULES) is success


def test_case_base_is_versioned_immutable_and_seeded_from_two_origins() -> None:
    assert CASES.version and len(CASES.content_hash) == 16
    assert {c.origin for c in CASES.cases} == {"clinician", "simulated"}
    assert len({c.id for c in CASES.cases}) == len(CASES.cases)
    with pytest.raises(FrozenInstanceError):
        CASES.cases[0].weight = 2.0  # type: ignore[misc]
    catalogue_items = {e.definition_id for e in load_catalogue().education}
    for case in CASES.cases:
        assert set(case.solution.education) <= catalogue_items
        assert 0 < case.weight <= 1
