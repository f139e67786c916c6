"""The exercise and education catalogue: FHIR R4 ActivityDefinitions and the weekly PlanDefinition.

The JSON files beside this module are the source of truth (one ActivityDefinition per exercise
and level, one per education message). This module reads them once into frozen entries the
rules can use, keyed by the ids the engine plans with.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from plan_engine import codes

CATALOGUE_VERSION = "1.0.0"


@dataclass(frozen=True, slots=True)
class ExerciseEntry:
    """One exercise at one level (one ActivityDefinition)."""

    definition_id: str
    exercise_id: str  # the exercise without level, e.g. "ab-curl"
    type: str
    level: int
    title: tuple[tuple[str, str], ...]
    sets: int
    repetitions: int | None
    hold_seconds: int | None
    minutes: int
    contraindications: frozenset[str]
    canonical: str

    def title_in(self, language: str) -> str:
        return dict(self.title).get(language, dict(self.title)["en"])


@dataclass(frozen=True, slots=True)
class EducationEntry:
    """One education message (one ActivityDefinition)."""

    definition_id: str
    theme: str
    order: int
    quiz: bool
    tags: frozenset[str]
    title: tuple[tuple[str, str], ...]
    canonical: str

    def title_in(self, language: str) -> str:
        return dict(self.title).get(language, dict(self.title)["en"])


@dataclass(frozen=True, slots=True)
class Catalogue:
    version: str
    content_hash: str
    exercises: tuple[ExerciseEntry, ...]
    education: tuple[EducationEntry, ...]
    plan_definition: dict[str, Any] = field(compare=False, hash=False, repr=False)
    themes: tuple[str, ...] = ()  # education themes in catalogue order
    _exercise_index: dict[tuple[str, int], ExerciseEntry] = field(
        default_factory=dict, compare=False, hash=False, repr=False
    )
    _education_index: dict[str, EducationEntry] = field(
        default_factory=dict, compare=False, hash=False, repr=False
    )

    def __post_init__(self) -> None:
        self._exercise_index.update({(e.exercise_id, e.level): e for e in self.exercises})
        self._education_index.update({e.definition_id: e for e in self.education})

    def exercise(self, exercise_id: str, level: int) -> ExerciseEntry:
        return self._exercise_index[(exercise_id, level)]

    def has_exercise(self, exercise_id: str, level: int) -> bool:
        return (exercise_id, level) in self._exercise_index

    def exercise_ids(self, exercise_type: str) -> tuple[str, ...]:
        """Exercises of one type, in a stable (alphabetical) order."""
        return tuple(sorted({e.exercise_id for e in self.exercises if e.type == exercise_type}))

    def exercise_type(self, exercise_id: str) -> str:
        for entry in self.exercises:
            if entry.exercise_id == exercise_id:
                return entry.type
        raise KeyError(exercise_id)

    def levels(self, exercise_id: str) -> tuple[int, ...]:
        return tuple(sorted(e.level for e in self.exercises if e.exercise_id == exercise_id))

    def education_item(self, item_id: str) -> EducationEntry:
        return self._education_index[item_id]

    def definition(self, definition_id: str) -> dict[str, Any]:
        """A copy of one ActivityDefinition as stored."""
        return json.loads(_raw_files()[f"ActivityDefinition-{definition_id}.json"])  # type: ignore[no-any-return]

    def all_definitions(self) -> tuple[dict[str, Any], ...]:
        return tuple(json.loads(text) for _, text in sorted(_raw_files().items()))


@cache
def _raw_files() -> dict[str, str]:
    folder = resources.files(__name__)
    return {
        item.name: item.read_text(encoding="utf-8")
        for item in folder.iterdir()
        if item.name.endswith(".json")
    }


def _translations(element: dict[str, Any] | None) -> dict[str, str]:
    found: dict[str, str] = {}
    for ext in (element or {}).get("extension", []):
        if ext.get("url") != codes.EXT_TRANSLATION:
            continue
        parts = {p["url"]: p for p in ext["extension"]}
        found[parts["lang"]["valueCode"]] = parts["content"]["valueString"]
    return found


def _texts(resource: dict[str, Any], name: str) -> tuple[tuple[str, str], ...]:
    texts = {"en": str(resource[name])} | _translations(resource.get(f"_{name}"))
    return tuple(sorted(texts.items()))


def _extensions(resource: dict[str, Any], url: str) -> list[dict[str, Any]]:
    return [ext for ext in resource.get("extension", []) if ext["url"] == url]


def _exercise_entry(resource: dict[str, Any]) -> ExerciseEntry:
    dosage = {
        p["url"]: p["valueInteger"]
        for p in _extensions(resource, codes.EXT_EXERCISE_DOSAGE)[0]["extension"]
    }
    return ExerciseEntry(
        definition_id=resource["id"],
        exercise_id=resource["identifier"][0]["value"],
        type=resource["topic"][0]["coding"][0]["code"],
        level=_extensions(resource, codes.EXT_EXERCISE_LEVEL)[0]["valueInteger"],
        title=_texts(resource, "title"),
        sets=dosage["sets"],
        repetitions=dosage.get("repetitions"),
        hold_seconds=dosage.get("holdSeconds"),
        minutes=int(resource["timingDuration"]["value"]),
        contraindications=frozenset(
            ext["valueCode"] for ext in _extensions(resource, codes.EXT_CONTRAINDICATION)
        ),
        canonical=f"{resource['url']}|{resource['version']}",
    )


def _education_entry(resource: dict[str, Any]) -> EducationEntry:
    return EducationEntry(
        definition_id=resource["id"],
        theme=resource["topic"][0]["coding"][0]["code"],
        order=_extensions(resource, codes.EXT_EDUCATION_ORDER)[0]["valueInteger"],
        quiz=_extensions(resource, codes.EXT_EDUCATION_QUIZ)[0]["valueBoolean"],
        tags=frozenset(ext["valueCode"] for ext in _extensions(resource, codes.EXT_EDUCATION_TAG)),
        title=_texts(resource, "title"),
        canonical=f"{resource['url']}|{resource['version']}",
    )


@cache
def load_catalogue() -> Catalogue:
    raw = _raw_files()
    digest = hashlib.sha256()
    exercises: list[ExerciseEntry] = []
    education: list[EducationEntry] = []
    plan_definition: dict[str, Any] = {}
    for name, text in sorted(raw.items()):
        digest.update(name.encode())
        digest.update(text.encode())
        resource = json.loads(text)
        if resource["resourceType"] == "PlanDefinition":
            plan_definition = resource
        elif resource["kind"] == "CommunicationRequest":
            education.append(_education_entry(resource))
        else:
            exercises.append(_exercise_entry(resource))
    education.sort(key=lambda e: e.order)
    exercises.sort(key=lambda e: (e.exercise_id, e.level))
    themes = tuple(dict.fromkeys(e.theme for e in education))
    return Catalogue(
        version=CATALOGUE_VERSION,
        content_hash=digest.hexdigest()[:16],
        exercises=tuple(exercises),
        education=tuple(education),
        plan_definition=plan_definition,
        themes=themes,
    )
