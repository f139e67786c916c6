"""Clinical thresholds and similarity weights, read from the JSON files beside this module.

Every value in ``rules.json`` carries its sources and a ``sign_off`` state; rule code reads
values only through :func:`load_rules` and :func:`load_similarity`, never as literals.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, Literal

Condition = tuple[str, str, float]


@dataclass(frozen=True, slots=True)
class StepGoalRules:
    start_default_steps: int
    start_min_valid_days: int
    baseline_window_days: int
    lower_bound_steps: int
    upper_bound_steps: int
    rounding_steps: int
    attainment_window_days: int
    min_valid_days_for_change: int
    days_met_for_increase: int
    days_met_for_hold: int
    increase_fraction: float
    max_increase_steps: int
    max_decrease_steps: int
    band: tuple[tuple[int, float], ...]
    override_min_steps: int
    override_max_steps: int


@dataclass(frozen=True, slots=True)
class ExerciseRules:
    minutes_per_exercise: int
    minimum_count: int
    minimum_count_up_to_minutes: int
    time_budget_min_minutes: int
    time_budget_max_minutes: int
    level_min: int
    level_max: int
    start_level: int
    max_level_step_per_week: int
    mastery_sessions: int
    mastery_rep_fraction: float
    sessions_per_week: int
    first_types: tuple[str, ...]
    feedback_easy_sessions_for_rise: int
    comorbidity_contraindications: tuple[tuple[str, frozenset[str]], ...]


@dataclass(frozen=True, slots=True)
class PainReliefRules:
    enter_pain_at_or_above: int
    moderate_pain_min: int
    moderate_pain_max: int
    moderate_pain_rise_at_least: int
    max_weeks: int
    window_weeks: int
    graded_return_level_drop: int


@dataclass(frozen=True, slots=True)
class WorseningRules:
    pain_rise_at_least: int
    rmdq_rise_at_least: int


@dataclass(frozen=True, slots=True)
class EducationTrigger:
    id: str
    any_of: tuple[Condition, ...]
    all_of: tuple[Condition, ...]
    themes: tuple[str, ...]
    suppress_tags: frozenset[str]
    text: str


@dataclass(frozen=True, slots=True)
class EducationRules:
    items_per_week: int
    warning_signs_item: str
    case_neighbours: int
    barrier_themes: tuple[tuple[str, tuple[str, ...]], ...]
    triggers: tuple[EducationTrigger, ...]


Urgency = Literal["emergency", "urgent", "review"]
URGENCY_RANK: dict[str, int] = {"info": 0, "review": 1, "urgent": 2, "emergency": 3}


@dataclass(frozen=True, slots=True)
class RedFlagRule:
    """One red-flag rule: fires when every answer in ``all_of`` is yes (NICE CKS red flags;
    the guideline section is in ``source``)."""

    id: str
    urgency: Urgency
    all_of: tuple[str, ...]
    text: str
    text_da: str
    source: str


@dataclass(frozen=True, slots=True)
class MoodBand:
    at_or_above: int
    id: str
    severity: str


@dataclass(frozen=True, slots=True)
class SafetyRules:
    red_flag_rules: tuple[RedFlagRule, ...]
    standing_answers: frozenset[str]
    review_pain_very_high: int
    review_pain_rise: int
    review_rmdq_worsening: int
    review_start_back_risk: str
    mood_bands: tuple[MoodBand, ...]
    new_data_window_days: int
    nudge_after_days_without_data: int


@dataclass(frozen=True, slots=True)
class HistoryRules:
    """How much history the engine plans from (plan_engine.history; engine finding 6)."""

    plan_weeks: int
    weekly_values_kept: int


@dataclass(frozen=True, slots=True)
class PatientMessages:
    emergency: tuple[tuple[str, str], ...]
    urgent: tuple[tuple[str, str], ...]
    review: tuple[tuple[str, str], ...]
    nudge: tuple[tuple[str, str], ...]

    def text(self, kind: str, language: str) -> str:
        texts: dict[str, str] = dict(getattr(self, kind))
        return texts.get(language, texts["en"])


@dataclass(frozen=True, slots=True)
class CaseOutcomeRules:
    success_rmdq_drop_fraction: float
    success_nrs_drop: float


@dataclass(frozen=True, slots=True)
class Rules:
    version: str
    sources: tuple[tuple[str, str], ...]
    step_goal: StepGoalRules
    exercise: ExerciseRules
    pain_relief: PainReliefRules
    worsening: WorseningRules
    education: EducationRules
    safety: SafetyRules
    patient_messages: PatientMessages
    case_outcome: CaseOutcomeRules
    history: HistoryRules


@dataclass(frozen=True, slots=True)
class AttributeSpec:
    name: str
    kind: str  # numeric | ordinal | categorical | sequence
    minimum: float = 0.0
    maximum: float = 1.0
    order: tuple[str, ...] = ()
    table: tuple[tuple[str, float], ...] = ()
    max_diff: float = 1.0
    length: int = 0


@dataclass(frozen=True, slots=True)
class SimilarityConfig:
    version: str
    attributes: tuple[AttributeSpec, ...]
    amalgamations: tuple[tuple[str, tuple[tuple[str, float], ...]], ...]
    k: int
    threshold: float
    min_attribute_weight_present: float
    _by_name: dict[str, AttributeSpec] = field(
        default_factory=dict, compare=False, hash=False, repr=False
    )

    def __post_init__(self) -> None:
        self._by_name.update({spec.name: spec for spec in self.attributes})

    def weights(self, component: str) -> tuple[tuple[str, float], ...]:
        return dict(self.amalgamations)[component]

    def attribute(self, name: str) -> AttributeSpec:
        return self._by_name[name]


def read_json(name: str) -> dict[str, Any]:
    """The raw JSON of one configuration file (for tests and documentation)."""
    text = resources.files(__name__).joinpath(name).read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def _values(section: dict[str, Any]) -> dict[str, Any]:
    return {key: entry["value"] for key, entry in section.items()}


def _conditions(raw: list[list[Any]]) -> tuple[Condition, ...]:
    return tuple((str(feature), str(op), float(value)) for feature, op, value in raw)


def _pairs(raw: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(raw.items()))


@cache
def load_rules() -> Rules:
    raw = read_json("rules.json")
    step = _values(raw["step_goal"])
    exercise = _values(raw["exercise"])
    education = _values(raw["education"])
    safety = _values(raw["safety"])
    messages = _values(raw["patient_messages"])
    outcome = _values(raw["case_outcome"])
    return Rules(
        version=raw["version"],
        sources=_pairs(raw["sources"]),
        step_goal=StepGoalRules(
            **{k: v for k, v in step.items() if k != "band"},
            band=tuple((int(a), float(b)) for a, b in step["band"]),
        ),
        exercise=ExerciseRules(
            **{
                k: v
                for k, v in exercise.items()
                if k not in ("first_types", "comorbidity_contraindications")
            },
            first_types=tuple(exercise["first_types"]),
            comorbidity_contraindications=tuple(
                (name, frozenset(tags))
                for name, tags in sorted(exercise["comorbidity_contraindications"].items())
            ),
        ),
        pain_relief=PainReliefRules(**_values(raw["pain_relief_mode"])),
        worsening=WorseningRules(**_values(raw["worsening"])),
        education=EducationRules(
            items_per_week=education["items_per_week"],
            warning_signs_item=education["warning_signs_item"],
            case_neighbours=education["case_neighbours"],
            barrier_themes=tuple(
                (name, tuple(themes))
                for name, themes in sorted(education["barrier_themes"].items())
            ),
            triggers=tuple(
                EducationTrigger(
                    id=t["id"],
                    any_of=_conditions(t["when"].get("any", [])),
                    all_of=_conditions(t["when"].get("all", [])),
                    themes=tuple(t["themes"]),
                    suppress_tags=frozenset(t["suppress_tags"]),
                    text=t["text"],
                )
                for t in education["triggers"]
            ),
        ),
        safety=SafetyRules(
            red_flag_rules=tuple(
                RedFlagRule(
                    id=f["id"],
                    urgency=f["urgency"],
                    all_of=tuple(f["all"]),
                    text=f["text"],
                    text_da=f["text_da"],
                    source=f["source"],
                )
                for f in safety["red_flag_rules"]
            ),
            standing_answers=frozenset(safety["standing_answers"]),
            review_pain_very_high=safety["review_pain_very_high"],
            review_pain_rise=safety["review_pain_rise"],
            review_rmdq_worsening=safety["review_rmdq_worsening"],
            review_start_back_risk=safety["review_start_back_risk"],
            mood_bands=tuple(
                MoodBand(at_or_above=int(a), id=str(i), severity=str(s))
                for a, i, s in safety["mood_bands"]
            ),
            new_data_window_days=safety["new_data_window_days"],
            nudge_after_days_without_data=safety["nudge_after_days_without_data"],
        ),
        patient_messages=PatientMessages(
            emergency=_pairs(messages["emergency"]),
            urgent=_pairs(messages["urgent"]),
            review=_pairs(messages["review"]),
            nudge=_pairs(messages["nudge"]),
        ),
        case_outcome=CaseOutcomeRules(**outcome),
        history=HistoryRules(**_values(raw["history"])),
    )


@cache
def load_similarity() -> SimilarityConfig:
    raw = read_json("similarity.json")
    attributes = []
    for name, spec in raw["attributes"].items():
        attributes.append(
            AttributeSpec(
                name=name,
                kind=spec["kind"],
                minimum=float(spec.get("min", 0.0)),
                maximum=float(spec.get("max", 1.0)),
                order=tuple(str(v) for v in spec.get("order", ())),
                table=tuple(sorted((k, float(v)) for k, v in spec.get("table", {}).items())),
                max_diff=float(spec.get("max_diff", 1.0)),
                length=int(spec.get("length", 0)),
            )
        )
    retrieval = raw["retrieval"]
    return SimilarityConfig(
        version=raw["version"],
        attributes=tuple(attributes),
        amalgamations=tuple(
            (component, tuple(sorted((k, float(w)) for k, w in spec["weights"].items())))
            for component, spec in sorted(raw["amalgamations"].items())
        ),
        k=int(retrieval["k"]["value"]),
        threshold=float(retrieval["threshold"]["value"]),
        min_attribute_weight_present=float(retrieval["min_attribute_weight_present"]["value"]),
    )
