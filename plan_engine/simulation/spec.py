"""What a simulated cohort looks like: size, length, seed and the injected-event rates."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

MIN_WEEKS = 1
MAX_WEEKS = 52


@dataclass(frozen=True, slots=True)
class CohortSpec:
    """One cohort run. The same spec always gives the same report (seeded randomness only).

    ``red_flag_rate`` is the share of patients who report one urgent red flag at a week drawn
    at baseline (the known week). ``near_miss_rate`` is the chance per patient-week of a
    red-flag answer that must *not* stop the plan on its own (fever, weight loss or new pain
    alone). ``metamorphic_sample`` is the share of patient-weeks re-planned with the newest
    pain one point higher, to check that a worse week never gives a harder plan.
    ``late_review_rate`` is the share of stop-and-refers a clinician reviews only after 8-13
    days (the others within 1-5 days); until the review the plan stays on hold.
    """

    patients: int = 1000
    weeks: int = 12
    seed: int = 7
    start: date = date(2026, 1, 5)  # a Monday; every patient starts the programme that day
    red_flag_rate: float = 0.08
    near_miss_rate: float = 0.01
    metamorphic_sample: float = 0.25
    late_review_rate: float = 0.15

    def __post_init__(self) -> None:
        if self.patients < 1:
            raise ValueError("patients must be at least 1")
        if not MIN_WEEKS <= self.weeks <= MAX_WEEKS:
            raise ValueError(f"weeks must be within {MIN_WEEKS}-{MAX_WEEKS}")
        for name in ("red_flag_rate", "near_miss_rate", "metamorphic_sample", "late_review_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within 0-1")

    def stream(self, patient_index: int, purpose: str, week: int = 0) -> str:
        """Seed text of one random stream. One stream per patient, purpose and week makes
        every patient independent of cohort size, processing order and process count."""
        return f"selfback-sim|{self.seed}|{patient_index}|{purpose}|{week}"
