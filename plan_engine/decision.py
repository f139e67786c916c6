"""The engine's output: a plan decision whose every element says why it is there."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

ReasonSource = Literal["rule", "case", "safety", "override"]
FindingSeverity = Literal["emergency", "urgent", "review", "info"]
PlanStatus = Literal["active", "on-hold", "not-permitted"]


@dataclass(frozen=True, slots=True)
class Reason:
    """Why an element is in the plan: a rule id or a case id, its weight and a plain text."""

    source: ReasonSource
    ref: str
    weight: float
    text: str


@dataclass(frozen=True, slots=True)
class StepGoalDecision:
    steps_per_day: int
    band_low: int
    band_high: int
    previous: int | None
    reasons: tuple[Reason, ...]


@dataclass(frozen=True, slots=True)
class ExerciseDecision:
    exercise_id: str
    type: str
    level: int
    previous_level: int | None
    definition_id: str
    canonical: str
    reasons: tuple[Reason, ...]


@dataclass(frozen=True, slots=True)
class EducationDecision:
    item_id: str
    theme: str
    day: date
    as_quiz: bool
    canonical: str
    reasons: tuple[Reason, ...]


@dataclass(frozen=True, slots=True)
class SafetyFinding:
    """One safety trigger; each becomes a Flag, a DetectedIssue and a Communication."""

    id: str
    severity: FindingSeverity
    issue_severity: Literal["high", "moderate", "low"]
    text: str
    evidence: tuple[str, ...]
    reasons: tuple[Reason, ...]
    # The red-flag answers (RedFlagAnswers field names) the finding was raised from: the
    # DetectedIssue cites them by their red-flag code.
    answers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ClinicianMessage:
    recipient: str
    priority: Literal["stat", "asap", "urgent", "routine"]
    text: str
    finding_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AttributeContribution:
    attribute: str
    similarity: float
    weight: float


@dataclass(frozen=True, slots=True)
class RetrievedCase:
    case_id: str
    component: Literal["exercise", "education"]
    similarity: float
    case_weight: float
    contributions: tuple[AttributeContribution, ...]


@dataclass(frozen=True, slots=True)
class DiffEntry:
    element: Literal["goal", "exercise", "education", "mode"]
    change: str
    before: str | None
    after: str | None
    reasons: tuple[Reason, ...]


@dataclass(frozen=True, slots=True)
class Versions:
    engine: str
    rules: str
    similarity: str
    case_base: str
    catalogue: str


@dataclass(frozen=True, slots=True)
class PlanDecision:
    """The next weekly plan, its explanation and the FHIR resources that carry it."""

    decision_id: str
    patient_id: str
    as_of: date
    week_number: int
    week_start: date
    week_end: date
    status: PlanStatus
    mode: str
    mode_reasons: tuple[Reason, ...]
    step_goal: StepGoalDecision | None
    exercises: tuple[ExerciseDecision, ...]
    education: tuple[EducationDecision, ...]
    findings: tuple[SafetyFinding, ...]
    patient_message: str | None
    clinician_messages: tuple[ClinicianMessage, ...]
    retrieved_cases: tuple[RetrievedCase, ...]
    diff: tuple[DiffEntry, ...]
    versions: Versions
    previous_plan_id: str | None
    resources: tuple[dict[str, Any], ...] = field(default=(), compare=False)

    def resources_of(self, resource_type: str) -> tuple[dict[str, Any], ...]:
        return tuple(r for r in self.resources if r["resourceType"] == resource_type)

    def to_json(self) -> str:
        """Canonical JSON of the FHIR resources: byte-identical for the same snapshot."""
        return json.dumps(
            list(self.resources), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )
