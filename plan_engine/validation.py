"""Snapshot validation: problems are reported together as one :class:`SnapshotError`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from plan_engine.catalogue import Catalogue
from plan_engine.snapshot import PatientSnapshot

NRS_RANGE = range(0, 11)  # pain and interference are 0-10 numeric rating scales
RMDQ_RANGE = range(0, 25)  # Roland-Morris 24 yes/no items
PHQ8_RANGE = range(0, 25)

# FHIR R4 days-of-week (http://hl7.org/fhir/days-of-week), in week order.
DAYS_OF_WEEK = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class SnapshotError(ValueError):
    """The snapshot cannot be planned from; ``issues`` says why (maps to OperationOutcome)."""

    def __init__(self, issues: tuple[str, ...]) -> None:
        super().__init__("; ".join(issues))
        self.issues = issues


@dataclass(frozen=True, slots=True)
class _Check:
    ok: bool
    message: str


def validate_snapshot(
    snapshot: PatientSnapshot, as_of: date, catalogue: Catalogue
) -> tuple[str, ...]:
    checks = [
        _Check(bool(snapshot.patient_id), "patient_id is empty"),
        _Check(as_of >= snapshot.programme_start, "as_of is before the programme start"),
        _Check(snapshot.exercise_minutes > 0, "exercise_minutes must be positive"),
        _Check(snapshot.language in ("en", "da"), "language must be 'en' or 'da'"),
    ]
    for report in snapshot.weekly_reports:
        for name, allowed in (
            ("pain_average", NRS_RANGE),
            ("pain_interference", NRS_RANGE),
            ("rmdq", RMDQ_RANGE),
            ("phq8", PHQ8_RANGE),
        ):
            value = getattr(report, name)
            checks.append(
                _Check(
                    value is None or value in allowed,
                    f"weekly report {report.reported_on}: {name} {value} out of range",
                )
            )
    days = [d.day for d in snapshot.step_days]
    checks.append(_Check(len(days) == len(set(days)), "step_days holds a day twice"))
    checks += [_Check(d.steps >= 0, f"steps on {d.day} are negative") for d in snapshot.step_days]
    for plan in snapshot.previous_plans:
        for planned in plan.exercises:
            checks.append(
                _Check(
                    catalogue.has_exercise(planned.exercise_id, planned.level),
                    f"plan {plan.plan_id}: unknown exercise {planned.exercise_id} "
                    f"level {planned.level}",
                )
            )
    goals = snapshot.goals
    checks.append(
        _Check(
            goals.step_target is None or goals.step_target >= 0,
            f"the patient's step target {goals.step_target} is negative",
        )
    )
    checks += [
        _Check(day in DAYS_OF_WEEK, f"preferred day {day!r} is not a days-of-week code")
        for day in goals.preferred_days
    ]
    ids = [p.plan_id for p in snapshot.previous_plans]
    checks.append(_Check(len(ids) == len(set(ids)), "previous_plans repeats a plan id"))
    return tuple(c.message for c in checks if not c.ok)
