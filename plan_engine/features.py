"""Plain numbers the rules look at, derived once from a snapshot and ``as_of``.

"Latest" values are the most recent measurement of any age (education and similarity use
them); "new" values were measured within the safety window before ``as_of`` (safety rules
fire only on new information, so an old baseline score does not re-fire every week).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from statistics import mean

from plan_engine.config import Rules
from plan_engine.snapshot import PatientSnapshot, WeeklyReport


@dataclass(frozen=True, slots=True)
class Features:
    week_number: int
    week_start: date
    pain_latest: int | None
    pain_previous: int | None
    pain_rise: int | None
    pain_new: int | None
    pain_previous_week: int | None  # the weekly report just before the new one, if consecutive
    interference_latest: int | None
    interference_rise: int | None
    fear_latest: int | None
    pseq2_latest: int | None
    pss4_latest: int | None
    phq2_latest: int | None
    phq8_latest: int | None
    phq8_new: int | None
    wai_latest: int | None
    sleep_problem: int | None
    barriers: frozenset[str]
    rmdq_latest: int | None
    rmdq_new: int | None
    rmdq_previous: int | None
    rmdq_baseline: int | None
    comorbidity_count: int
    days_without_data: int
    valid_days_week: int
    daily_mean_week: float | None
    symptoms_worsened: bool
    pain_series: tuple[float, ...]
    step_series: tuple[float, ...]
    phq8_new_source: str | None = None  # the response phq8_new came from (finding evidence)

    def value(self, name: str) -> float | None:
        """A numeric feature by name, for condition rules held in configuration."""
        raw = getattr(self, name)
        if raw is None or isinstance(raw, bool | int | float):
            return None if raw is None else float(raw)
        raise TypeError(f"feature {name} is not numeric")


def _latest(reports: tuple[WeeklyReport, ...], attr: str) -> tuple[int | None, int | None]:
    """The newest and the one-before-newest value of ``attr`` across reports."""
    values = [getattr(r, attr) for r in reports if getattr(r, attr) is not None]
    newest = values[-1] if values else None
    before = values[-2] if len(values) > 1 else None
    return newest, before


def _newest_or(reports: tuple[WeeklyReport, ...], attr: str, fallback: int | None) -> int | None:
    newest = _latest(reports, attr)[0]
    return fallback if newest is None else newest


def _int(flag: bool | None) -> int | None:
    return None if flag is None else int(flag)


def _window_mean(snapshot: PatientSnapshot, start: date, end: date) -> float | None:
    steps = [d.steps for d in snapshot.step_days if d.valid and start <= d.day < end]
    return float(mean(steps)) if steps else None


def derive_features(snapshot: PatientSnapshot, as_of: date, rules: Rules) -> Features:
    window = timedelta(days=rules.safety.new_data_window_days)
    reports = tuple(r for r in snapshot.weekly_reports if r.reported_on < as_of)
    new_reports = tuple(r for r in reports if r.reported_on >= as_of - window)
    current = new_reports[-1] if new_reports else None
    baseline = snapshot.baseline
    baseline_is_new = as_of - window <= baseline.completed_on < as_of + timedelta(days=1)

    pain_values = [r for r in reports if r.pain_average is not None]
    pain_latest = pain_values[-1].pain_average if pain_values else baseline.pain_average
    if len(pain_values) > 1:
        pain_previous = pain_values[-2].pain_average
    elif pain_values:
        pain_previous = baseline.pain_average
    else:
        pain_previous = None
    pain_new = current.pain_average if current is not None else None
    pain_rise = (
        pain_new - pain_previous if pain_new is not None and pain_previous is not None else None
    )
    previous_week = None
    if current is not None and current.pain_average is not None and len(pain_values) > 1:
        before = pain_values[-2]
        if current.reported_on - before.reported_on <= 2 * window:
            previous_week = before.pain_average

    interference, interference_before = _latest(reports, "pain_interference")
    interference_rise = (
        interference - interference_before
        if interference is not None and interference_before is not None
        else None
    )

    rmdq_measures = [(baseline.completed_on, baseline.rmdq)] if baseline.rmdq is not None else []
    rmdq_measures += [(r.reported_on, r.rmdq) for r in reports if r.rmdq is not None]
    rmdq_latest = rmdq_measures[-1][1] if rmdq_measures else None
    rmdq_previous = rmdq_measures[-2][1] if len(rmdq_measures) > 1 else None
    rmdq_new = (
        rmdq_latest
        if rmdq_measures and rmdq_measures[-1][0] >= as_of - window and len(rmdq_measures) > 1
        else None
    )

    phq8_latest = _latest(reports, "phq8")[0]
    # The newest PHQ-8 of the new-data window, whichever response of the window holds it: a
    # mental-health questionnaire answered beside a check-in counts (issue 11, item 5), as
    # the newest RMDQ of the window does above.
    mood = [r for r in new_reports if r.phq8 is not None]
    phq8_new = mood[-1].phq8 if mood else None
    phq8_new_source = mood[-1].source if mood else None
    if phq8_latest is None:
        phq8_latest = baseline.phq8
        if phq8_new is None and baseline_is_new:
            phq8_new = baseline.phq8
            phq8_new_source = baseline.source

    sleep_answers = [r.sleep_problem for r in reports if r.sleep_problem is not None]
    sleep = sleep_answers[-1] if sleep_answers else None

    last_data = [d.day for d in snapshot.step_days if d.valid and d.day < as_of]
    last_data += [r.reported_on for r in reports]
    last_data += [e.day for e in snapshot.exercise_logs if e.day < as_of]
    last_data += [e.read_on for e in snapshot.education if e.read_on and e.read_on < as_of]
    last_data += [r.answered_on for r in snapshot.red_flags if r.answered_on < as_of]
    if snapshot.last_app_use is not None and snapshot.last_app_use < as_of:
        last_data.append(snapshot.last_app_use)
    last_seen = max(last_data) if last_data else snapshot.programme_start
    days_without_data = max(0, (as_of - last_seen).days)

    days = rules.step_goal.attainment_window_days
    week_valid = [
        d for d in snapshot.step_days if d.valid and as_of - timedelta(days=days) <= d.day < as_of
    ]
    step_series = tuple(
        m
        for m in (
            _window_mean(snapshot, as_of - timedelta(days=2 * days), as_of - timedelta(days=days)),
            _window_mean(snapshot, as_of - timedelta(days=days), as_of),
        )
        if m is not None
    )
    pain_series = tuple(
        float(v)
        for v in ([baseline.pain_average] + [r.pain_average for r in pain_values])
        if v is not None
    )

    worsening = rules.worsening
    symptoms_worsened = (pain_rise is not None and pain_rise >= worsening.pain_rise_at_least) or (
        rmdq_new is not None
        and rmdq_previous is not None
        and rmdq_new - rmdq_previous >= worsening.rmdq_rise_at_least
    )

    return Features(
        week_number=max(1, (as_of - snapshot.programme_start).days // 7 + 1),
        week_start=as_of,
        pain_latest=pain_latest,
        pain_previous=pain_previous,
        pain_rise=pain_rise,
        pain_new=pain_new,
        pain_previous_week=previous_week,
        interference_latest=interference,
        interference_rise=interference_rise,
        fear_latest=_latest(reports, "fear_of_movement")[0],
        pseq2_latest=_newest_or(reports, "pseq2", baseline.pseq2),
        pss4_latest=_latest(reports, "pss4")[0],
        phq2_latest=_latest(reports, "phq2")[0],
        phq8_latest=phq8_latest,
        phq8_new=phq8_new,
        wai_latest=_newest_or(reports, "wai", baseline.wai),
        sleep_problem=_int(sleep),
        barriers=current.barriers if current is not None else frozenset(),
        rmdq_latest=rmdq_latest,
        rmdq_new=rmdq_new,
        rmdq_previous=rmdq_previous,
        rmdq_baseline=baseline.rmdq,
        comorbidity_count=len(baseline.comorbidities),
        days_without_data=days_without_data,
        valid_days_week=len(week_valid),
        daily_mean_week=float(mean(d.steps for d in week_valid)) if week_valid else None,
        symptoms_worsened=symptoms_worsened,
        pain_series=pain_series,
        step_series=step_series,
        phq8_new_source=phq8_new_source,
    )
