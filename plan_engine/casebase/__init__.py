"""The case base: versioned, immutable cases (problem, solution, outcome, origin, weight).

Cases are read once from ``cases.json`` beside this module. A new case-base version is a new
file; nothing here ever changes a case. ``success`` is derived from the outcome with the
thresholds in ``config/rules.json`` (``case_outcome``), so the definition is reviewable data.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from plan_engine.config import Rules, load_rules

AttributeValue = float | str | tuple[float, ...]


@dataclass(frozen=True, slots=True)
class CaseSolution:
    step_goal: int
    exercises: tuple[tuple[str, int], ...]  # (exercise id, level)
    education: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CaseOutcome:
    weeks: int
    delta_rmdq: float
    delta_nrs: float
    adherence: float


@dataclass(frozen=True, slots=True)
class Case:
    id: str
    origin: str  # clinician | simulated | real
    weight: float
    problem: tuple[tuple[str, AttributeValue], ...]
    solution: CaseSolution
    outcome: CaseOutcome
    success: bool

    def attribute(self, name: str) -> AttributeValue | None:
        return dict(self.problem).get(name)


@dataclass(frozen=True, slots=True)
class CaseBase:
    version: str
    content_hash: str
    cases: tuple[Case, ...]
    problems: dict[str, dict[str, AttributeValue]] = field(
        default_factory=dict, compare=False, hash=False, repr=False
    )

    def __post_init__(self) -> None:
        self.problems.update({c.id: dict(c.problem) for c in self.cases})

    def successful(self) -> tuple[Case, ...]:
        return tuple(c for c in self.cases if c.success)


def _value(raw: Any) -> AttributeValue:
    if isinstance(raw, list):
        return tuple(float(v) for v in raw)
    if isinstance(raw, str):
        return raw
    return float(raw)


def is_success(problem: dict[str, Any], outcome: CaseOutcome, rules: Rules) -> bool:
    """Responder definition: RMDQ down by the configured fraction, or pain down by N points."""
    thresholds = rules.case_outcome
    rmdq = float(problem.get("rmdq") or 0)
    rmdq_ok = rmdq > 0 and -outcome.delta_rmdq / rmdq >= thresholds.success_rmdq_drop_fraction
    return rmdq_ok or -outcome.delta_nrs >= thresholds.success_nrs_drop


def parse_case_base(raw: dict[str, Any], rules: Rules, content_hash: str) -> CaseBase:
    cases = []
    for entry in raw["cases"]:
        outcome = CaseOutcome(**entry["outcome"])
        cases.append(
            Case(
                id=entry["id"],
                origin=entry["origin"],
                weight=float(entry["weight"]),
                problem=tuple(sorted((k, _value(v)) for k, v in entry["problem"].items())),
                solution=CaseSolution(
                    step_goal=int(entry["solution"]["step_goal"]),
                    exercises=tuple(
                        (e["exercise_id"], int(e["level"])) for e in entry["solution"]["exercises"]
                    ),
                    education=tuple(entry["solution"]["education"]),
                ),
                outcome=outcome,
                success=is_success(entry["problem"], outcome, rules),
            )
        )
    cases.sort(key=lambda c: c.id)
    return CaseBase(version=raw["version"], content_hash=content_hash, cases=tuple(cases))


@cache
def load_case_base() -> CaseBase:
    text = resources.files(__name__).joinpath("cases.json").read_text(encoding="utf-8")
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return parse_case_base(json.loads(text), load_rules(), digest)
