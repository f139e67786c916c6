"""The hidden course of one patient's back pain, week by week: a natural recovery towards a
floor, flares on top, and a small benefit from the exercise actually done.

All parameters are this project's assumptions [D] (docs/SIMULATION.md, "Symptom course").
The engine never sees this state, only what the patient reports about it.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace

from plan_engine.simulation.population import SyntheticPatient

FLARE_SIZE = (2.0, 4.5)  # NRS points added at the start of a flare [D]
FLARE_WEEKS = (1, 3)
EXERCISE_BENEFIT = 0.8  # full adherence speeds the natural course by up to 80 % [D]


@dataclass(frozen=True, slots=True)
class SymptomState:
    week: int
    base_pain: float  # pain without the flare
    flare: float  # NRS points added by a flare this week
    flare_weeks_left: int

    @property
    def pain(self) -> float:
        return max(0.0, min(10.0, self.base_pain + self.flare))


def start_course(patient: SyntheticPatient) -> SymptomState:
    return SymptomState(1, float(patient.baseline.pain_average or 0), 0.0, 0)


def advance(
    state: SymptomState, patient: SyntheticPatient, adherence: float, rng: random.Random
) -> SymptomState:
    """The next week's state, given the share of prescribed sessions done last week."""
    speed = (1.0 + EXERCISE_BENEFIT * adherence) / patient.improvement_weeks
    floor = patient.pain_floor
    base = floor + (state.base_pain - floor) * math.exp(-speed) + rng.gauss(0.0, 0.3)
    base = max(0.0, min(10.0, base))
    if state.flare_weeks_left > 1:
        flare, left = state.flare * 0.6, state.flare_weeks_left - 1
    elif rng.random() < patient.flare_weekly_hazard:
        flare, left = rng.uniform(*FLARE_SIZE), rng.randint(*FLARE_WEEKS)
    else:
        flare, left = 0.0, 0
    return replace(state, week=state.week + 1, base_pain=base, flare=flare, flare_weeks_left=left)


def true_rmdq(state: SymptomState, patient: SyntheticPatient) -> float:
    """Disability follows pain: part fixed, part moving with the pain ratio, plus flares."""
    start_pain = max(1.0, float(patient.baseline.pain_average or 1))
    start = float(patient.baseline.rmdq or 0)
    value = start * (0.35 + 0.65 * state.base_pain / start_pain) + 1.2 * state.flare
    return max(0.0, min(24.0, value))
