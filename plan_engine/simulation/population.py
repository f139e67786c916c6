"""Synthetic patients: baselines shaped like the selfBACK trial population, plus the hidden
traits that drive their weeks (engagement, step habits, exercise capability, flares) and
the red flags injected at known weeks.

Sources of the baseline shape (docs/SIMULATION.md, "Population", has the full table):

- entry criteria: adults, RMDQ >= 6 (research/selfback-domain.md section 1, [V]);
- mean age about 47.5 and about 55 % women (section 3, [R]: recalled from the RCT paper);
- STarT Back strata: not measured in selfBACK (section 1 says so). The proportions come from
  a Danish general-practice LBP cohort, 304 patients with STarT Back and 8-week RMDQ:
  93 low, 122 medium, 89 high (BMC Musculoskelet Disord 2017, doi 10.1186/s12891-017-1727-6).
- everything else (score means by stratum, step habits, engagement) is this project's
  assumption, tagged [D] in docs/SIMULATION.md.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TypeVar

from plan_engine import codes
from plan_engine.simulation.spec import CohortSpec
from plan_engine.snapshot import BaselineScores, StartBackRisk

T = TypeVar("T")

AGE_MEAN = 47.5  # domain note section 3 [R]
AGE_SD = 13.0  # [D]
AGE_MIN, AGE_MAX = 18, 85
FEMALE_SHARE = 0.55  # domain note section 3 [R]
RMDQ_ENTRY_MIN = 6  # domain note section 1 [V]: RMDQ >= 6 to enter the trial
START_BACK_COUNTS: tuple[tuple[StartBackRisk, int], ...] = (
    ("low", 93),
    ("medium", 122),
    ("high", 89),
)  # Danish GP cohort, BMC Musculoskelet Disord 2017 (see module docstring)

# Baseline score means by STarT Back stratum [D]: higher risk, more pain, disability, fear,
# distress, less self-efficacy. (mean, sd, low, high)
_BY_STRATUM: dict[str, dict[str, tuple[float, float, int, int]]] = {
    "low": {
        "rmdq": (9.0, 3.0, RMDQ_ENTRY_MIN, 24),
        "pain": (4.0, 1.5, 1, 10),
        "pseq": (42.0, 9.0, 0, 60),
        "fabq": (9.0, 5.0, 0, 24),
        "phq8": (3.5, 3.0, 0, 24),
        "pss10": (11.0, 5.0, 0, 40),
        "wai": (8.0, 1.5, 0, 10),
    },
    "medium": {
        "rmdq": (11.5, 3.5, RMDQ_ENTRY_MIN, 24),
        "pain": (5.2, 1.5, 1, 10),
        "pseq": (35.0, 10.0, 0, 60),
        "fabq": (13.0, 5.0, 0, 24),
        "phq8": (6.0, 4.0, 0, 24),
        "pss10": (14.5, 6.0, 0, 40),
        "wai": (6.5, 2.0, 0, 10),
    },
    "high": {
        "rmdq": (14.5, 4.0, RMDQ_ENTRY_MIN, 24),
        "pain": (6.3, 1.5, 1, 10),
        "pseq": (26.0, 10.0, 0, 60),
        "fabq": (17.0, 4.5, 0, 24),
        "phq8": (10.0, 5.0, 0, 24),
        "pss10": (19.0, 6.0, 0, 40),
        "wai": (5.0, 2.0, 0, 10),
    },
}
_EPISODE: dict[str, tuple[tuple[str, float], ...]] = {
    "low": (("<1w", 0.15), ("1-4w", 0.35), ("5-12w", 0.25), (">12w", 0.25)),
    "medium": (("<1w", 0.08), ("1-4w", 0.27), ("5-12w", 0.25), (">12w", 0.40)),
    "high": (("<1w", 0.05), ("1-4w", 0.20), ("5-12w", 0.20), (">12w", 0.55)),
}
_SALTIN_GRIMBY = ((1, 0.15), (2, 0.50), (3, 0.30), (4, 0.05))  # [D]
# Comorbidity checklist items the engine reacts to (contraindications, cancer history).
_COMORBIDITIES = (
    ("knee-problems", 0.10),
    ("hip-problems", 0.05),
    ("shoulder-problems", 0.08),
    ("diabetes", 0.06),
    ("cardiovascular", 0.07),
)  # [D]
_EXERCISE_MINUTES = ((10, 0.20), (15, 0.40), (20, 0.20), (25, 0.10), (30, 0.10))  # [D]
STRENGTH_TYPES = tuple(t for t in codes.EXERCISE_TYPES if t != codes.EXERCISE_TYPE_PAIN_RELIEF)

# Urgent red flags the simulator injects, with the answers that report them. The finding id
# is what docs/PLAN_ENGINE.md ("Safety layer") says must stop the plan.
RED_FLAG_KINDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("RF-BLADDER-BOWEL", ("bladder_bowel_dysfunction",)),
    ("RF-SADDLE-NUMBNESS", ("saddle_numbness",)),
    ("RF-PROGRESSIVE-WEAKNESS", ("progressive_leg_weakness",)),
    ("RF-SEXUAL-DYSFUNCTION", ("sexual_dysfunction",)),
    ("RF-BILATERAL-LEG-SYMPTOMS", ("bilateral_leg_symptoms",)),
    ("RF-FEVER", ("fever",)),
    ("RF-WEIGHT-LOSS", ("unexplained_weight_loss",)),
    ("RF-CANCER-HISTORY-NEW-PAIN", ("cancer_history", "new_pain")),
    ("RF-CANCER-HISTORY-NIGHT-PAIN", ("cancer_history", "night_pain")),
    ("RF-IMMUNOSUPPRESSION-NEW-PAIN", ("steroid_or_immunosuppression", "new_pain")),
    ("RF-SIGNIFICANT-TRAUMA", ("significant_trauma",)),
    ("RF-SELF-HARM", ("self_harm_thoughts",)),
)
# Answers that alone must NOT stop the plan: each is a clinician review (not harder) and
# stops the plan only with a standing answer (cancer history, steroids, onset age).
NEAR_MISS_ANSWERS = ("night_pain", "thoracic_pain", "new_pain")


@dataclass(frozen=True, slots=True)
class RedFlagEvent:
    """An injected red flag: reported in the week before plan ``week``, which must stop."""

    week: int
    finding_id: str
    answers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SyntheticPatient:
    index: int
    patient_id: str
    baseline: BaselineScores
    exercise_minutes: int
    language: str
    engagement: float  # 0-1, drives check-ins, reading, sessions and walking to the goal
    report_probability: float  # weekly check-in answered
    read_probability: float  # one education message read on its day
    session_probability: float  # one prescribed exercise session done
    invalid_day_probability: float  # a day without enough wear time
    step_response: float  # share of the gap between habit and goal walked on a day
    habitual_steps: float  # steps/day before the programme
    capability: tuple[tuple[str, float], ...]  # exercise type -> level managed comfortably
    improvement_weeks: float  # time constant of the natural course of pain
    pain_floor: float  # where pain settles without flares
    flare_weekly_hazard: float
    silent_weeks: frozenset[int]  # weeks (by plan week) with no data reaching the app
    red_flag: RedFlagEvent | None

    @property
    def age_band(self) -> str:
        return age_band(self.baseline.age or 0)


def age_band(age: int) -> str:
    if age < 40:
        return "18-39"
    if age < 55:
        return "40-54"
    if age < 65:
        return "55-64"
    return "65+"


def _weighted(rng: random.Random, options: tuple[tuple[T, float], ...]) -> T:
    values = [v for v, _ in options]
    weights = [w for _, w in options]
    return rng.choices(values, weights=weights, k=1)[0]


def _score(rng: random.Random, shape: tuple[float, float, int, int]) -> int:
    mean, sd, low, high = shape
    return max(low, min(high, round(rng.gauss(mean, sd))))


def draw_patient(spec: CohortSpec, index: int) -> SyntheticPatient:
    """Patient ``index`` of the cohort; independent of every other patient."""
    rng = random.Random(spec.stream(index, "baseline"))
    age = max(AGE_MIN, min(AGE_MAX, round(rng.gauss(AGE_MEAN, AGE_SD))))
    sex = "female" if rng.random() < FEMALE_SHARE else "male"
    risk: StartBackRisk = rng.choices(
        [r for r, _ in START_BACK_COUNTS], weights=[n for _, n in START_BACK_COUNTS], k=1
    )[0]
    shape = _BY_STRATUM[risk]
    pain = _score(rng, shape["pain"])
    pseq = _score(rng, shape["pseq"])
    phq8 = _score(rng, shape["phq8"])

    comorbidities = {name for name, p in _COMORBIDITIES if rng.random() < p}
    if rng.random() < (0.12 if sex == "female" and age >= 55 else 0.02):
        comorbidities.add("osteoporosis")
    if rng.random() < (0.05 if age >= 50 else 0.01):
        comorbidities.add("cancer")
    if phq8 >= 10:
        comorbidities.add("depression")

    completed = spec.start - timedelta(days=rng.randint(0, 6))
    baseline = BaselineScores(
        completed_on=completed,
        age=age,
        sex=sex,  # type: ignore[arg-type]
        pain_average=pain,
        pain_worst=min(10, pain + rng.randint(1, 3)),
        rmdq=_score(rng, shape["rmdq"]),
        pseq=pseq,
        pseq2=max(0, min(12, round(pseq / 5 + rng.gauss(0, 1)))),
        fabq_pa=_score(rng, shape["fabq"]),
        phq8=phq8,
        pss10=_score(rng, shape["pss10"]),
        wai=_score(rng, shape["wai"]),
        saltin_grimby=_weighted(rng, _SALTIN_GRIMBY),
        episode_duration=_weighted(rng, _EPISODE[risk]),  # type: ignore[arg-type]
        start_back_risk=risk,
        start_back_assessed_on=completed,
        comorbidities=frozenset(comorbidities),
        source=f"QuestionnaireResponse/sim-{spec.seed}-{index:05d}-baseline",
    )

    engagement = rng.betavariate(4.0, 2.0)
    saltin = baseline.saltin_grimby or 2
    # Habitual steps fall with age and rise with leisure activity [D].
    habitual = (
        rng.lognormvariate(0.0, 0.35) * 6500 * (1 - 0.008 * (age - 45)) * (0.8 + 0.12 * saltin)
    )
    capability = tuple(
        (t, max(1.0, min(6.0, rng.gauss(1.6 + 0.4 * saltin - 0.015 * (age - 45), 0.6))))
        for t in STRENGTH_TYPES
    )

    silent: frozenset[int] = frozenset()
    if spec.weeks >= 4 and rng.random() < 0.15:
        first = rng.randint(2, spec.weeks - 2)
        silent = frozenset(range(first, first + rng.randint(2, 3)))

    red_flag = None
    if spec.weeks >= 2 and rng.random() < spec.red_flag_rate:
        finding_id, answers = RED_FLAG_KINDS[rng.randrange(len(RED_FLAG_KINDS))]
        if "cancer_history" in answers and "cancer" in comorbidities:
            # the engine counts a cancer comorbidity as the history
            answers = tuple(a for a in answers if a != "cancer_history")
        red_flag = RedFlagEvent(rng.randint(2, spec.weeks), finding_id, answers)

    return SyntheticPatient(
        index=index,
        patient_id=f"sim-{spec.seed}-{index:05d}",
        baseline=baseline,
        exercise_minutes=_weighted(rng, _EXERCISE_MINUTES),
        language="da" if rng.random() < 0.5 else "en",
        engagement=engagement,
        report_probability=0.55 + 0.4 * engagement,
        read_probability=0.3 + 0.6 * engagement,
        session_probability=0.3 + 0.6 * engagement,
        invalid_day_probability=rng.betavariate(2.0, 10.0),
        step_response=0.15 + 0.6 * engagement,
        habitual_steps=max(1500.0, min(16000.0, habitual)),
        capability=capability,
        improvement_weeks=rng.uniform(6.0, 20.0),
        pain_floor=pain * rng.uniform(0.3, 0.8),
        flare_weekly_hazard=0.05 + (0.04 if risk == "high" else 0.0),
        silent_weeks=silent,
        red_flag=red_flag,
    )


def programme_week_start(start: date, week: int) -> date:
    """``as_of`` of plan week ``week`` (1-based)."""
    return start + timedelta(days=7 * (week - 1))
