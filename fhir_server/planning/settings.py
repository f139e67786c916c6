"""The server-side planning values a clinician signs off (planning.json, with sources).

The engine's own thresholds live in plan_engine/config/rules.json; these only say how
stored answers become snapshot inputs. The source keys are those of docs/PLAN_ENGINE.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path


@dataclass(frozen=True, slots=True)
class PlanningSettings:
    version: str
    sleep_problem_at_or_below: int
    default_exercise_minutes: int


@cache
def planning_settings() -> PlanningSettings:
    raw = json.loads((Path(__file__).with_name("planning.json")).read_text(encoding="utf-8"))
    return PlanningSettings(
        version=raw["version"],
        sleep_problem_at_or_below=int(raw["sleep_problem_at_or_below"]["value"]),
        default_exercise_minutes=int(raw["default_exercise_minutes"]["value"]),
    )
