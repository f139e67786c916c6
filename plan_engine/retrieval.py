"""Retrieve: the k most similar successful cases per plan component, and their votes."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Literal

from plan_engine.casebase import AttributeValue, Case, CaseBase
from plan_engine.config import SimilarityConfig
from plan_engine.decision import RetrievedCase
from plan_engine.features import Features
from plan_engine.similarity import amalgamate, local_similarities
from plan_engine.snapshot import PatientSnapshot

Component = Literal["exercise", "education"]


@dataclass(frozen=True, slots=True)
class Neighbour:
    case: Case
    retrieved: RetrievedCase

    @property
    def vote(self) -> float:
        return self.retrieved.similarity * self.case.weight


def problem_of(snapshot: PatientSnapshot, features: Features) -> dict[str, AttributeValue]:
    """The patient's problem description in case-base attributes (unknowns left out)."""
    baseline = snapshot.baseline
    raw: dict[str, float | str | None] = {
        "age": baseline.age,
        "sex": baseline.sex,
        "pain_average": features.pain_latest,
        "rmdq": features.rmdq_latest,
        "pseq": baseline.pseq,
        "fabq_pa": baseline.fabq_pa,
        "phq8": features.phq8_latest,
        "start_back_risk": baseline.start_back_risk,
        "saltin_grimby": baseline.saltin_grimby,
        "episode_duration": baseline.episode_duration,
    }
    problem: dict[str, AttributeValue] = {
        k: (float(v) if isinstance(v, int | float) else v) for k, v in raw.items() if v is not None
    }
    if features.pain_series:
        problem["pain_series"] = features.pain_series
    if features.step_series:
        problem["step_series"] = features.step_series
    return problem


def retrieve(
    problem: dict[str, AttributeValue],
    case_base: CaseBase,
    config: SimilarityConfig,
    wanted: tuple[tuple[Component, int], ...],
) -> dict[Component, tuple[Neighbour, ...]]:
    """Per component, the k most similar successful cases at or above the threshold.

    Best first, ties broken by case id. Local similarities are computed once per case and
    shared by the components' amalgamation functions.
    """
    local = {
        case.id: local_similarities(problem, case_base.problems[case.id], config)
        for case in case_base.successful()
    }
    result: dict[Component, tuple[Neighbour, ...]] = {}
    for component, k in wanted:
        weights = config.weights(component)
        scored = []
        for case in case_base.successful():
            score, contributions = amalgamate(local[case.id], weights, config)
            if score >= config.threshold:
                scored.append((round(score, 4), case, contributions))
        scored.sort(key=lambda item: (-item[0], item[1].id))
        result[component] = tuple(
            Neighbour(case, RetrievedCase(case.id, component, score, case.weight, contributions))
            for score, case, contributions in scored[:k]
        )
    return result


def votes(neighbours: tuple[Neighbour, ...], keys: dict[str, list[str]]) -> dict[str, float]:
    """Similarity-weighted votes: ``keys[case_id]`` lists what that case votes for."""
    tally: dict[str, float] = defaultdict(float)
    for n in neighbours:
        for key in dict.fromkeys(keys[n.case.id]):
            tally[key] += n.vote
    return dict(tally)
