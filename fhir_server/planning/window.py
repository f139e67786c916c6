"""Which part of a patient's stored history the plan of one week needs: dates and counts.
Pure: the reader (:mod:`fhir_server.planning.record`) turns these into date-bounded searches.

The engine plans from a window of history (:func:`plan_engine.bounded_snapshot`, ``history``
in its rules; docs/SIMULATION.md, engine finding 6), so the reader need not fetch the rest:

- questionnaire responses dated within ``RECENT`` (28 days) before ``as_of``: exercise logs,
  red-flag answers and the 7-day new-data window (snapshot.py bounds these to 28 days);
- the baseline: every baseline response and the responses within ``BASELINE_SPAN`` of the
  first (the baseline takes the oldest score of each);
- per weekly answer, the newest ``reports_kept_per_answer`` reports holding it; the newest
  report; the newest response of any kind (the last day the app was used). These can be of
  any age: the reader reads back slice by slice until the checks below hold. The follow-up
  answers (RMDQ, PHQ-8) are found through their score Observations instead, which are few;
- steps of the 28 days before ``as_of``; the Goals of the plans the window keeps.

A date search compares instants, but the snapshot counts a response on the calendar day it
was written in its own time zone (FHIR R4 datatypes.html#dateTime: an offset from -12:00 to
+14:00). So every slice is read ``MARGIN`` wider than the days it must cover, and a check
only trusts days at least ``MARGIN`` inside what was read: what a wider read adds, the pure
snapshot builder leaves out again, as it would from the whole history.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta
from typing import Any

from fhir_server.planning import conventions as fc
from fhir_server.planning.snapshot import (
    BASELINE_SPAN,
    LOG_WINDOW,
    STEP_WINDOW,
    PatientRecord,
    ResponseInputs,
    day_of,
    first_baseline_day,
    window_goal_ids,
)
from plan_engine.history import ANSWER_FIELDS, reports_kept_per_answer

MARGIN = timedelta(days=3)
RECENT = max(LOG_WINDOW, STEP_WINDOW)
# Answers only the weekly check-in gives; the others (RMDQ, PHQ-8) come from the follow-up
# questionnaires and are looked up through their score Observations (Observation.method, a
# scoring-algorithm code), which stay few however long the programme runs.
FOLLOW_UP_SCORES = {"rmdq": "rmdq-total", "phq8": "phq8-total"}
WEEKLY_ANSWERS = tuple(a for a in ANSWER_FIELDS if a not in FOLLOW_UP_SCORES)
# Slices read further back start this wide and double.
FIRST_SLICE = timedelta(weeks=8)


def days_before(day: date, span: timedelta) -> date:
    """``day - span``, or the first day of the calendar when that is earlier."""
    return day - span if day - date.min > span else date.min


def days_after(day: date, span: timedelta) -> date:
    """``day + span``, or the last day of the calendar when that is later."""
    return day + span if date.max - day > span else date.max


def read_until(as_of: date) -> date:
    """The exclusive end of what is read (red-flag answers count up to and on ``as_of``)."""
    return days_after(as_of, MARGIN)


def recent_from(as_of: date) -> date:
    return days_before(as_of, RECENT + MARGIN)


def baseline_span(record: PatientRecord) -> tuple[date, date] | None:
    """The responses of the baseline period are read from the first to the second day
    (exclusive); None: no baseline yet."""
    first = first_baseline_day(record)
    if first is None:
        return None
    return days_before(first, MARGIN), days_after(first, BASELINE_SPAN + MARGIN)


def history_floor(record: PatientRecord, as_of: date) -> date:
    """Below this day a slice is read to the beginning in one go: before the programme and
    the baseline the patient has little or nothing stored."""
    start = (record.programme_plan.get("period") or {}).get("start")
    first = first_baseline_day(record)
    known = [d for d in (first, day_of(start), as_of) if d is not None]
    return days_before(min(known), RECENT)


def _sure(read_from: date | None) -> date:
    """Responses written on this day or later are all among those read."""
    return date.min if read_from is None else read_from + MARGIN


def _missing_answers(given: ResponseInputs, sure: date, answers: tuple[str, ...]) -> list[str]:
    wanted = reports_kept_per_answer()
    reports = [r for r in given.reports if r.reported_on >= sure]
    return [
        name
        for name in answers
        if sum(1 for r in reports if getattr(r, name) is not None) < wanted
    ]


def weekly_answers_read(given: ResponseInputs, read_from: date | None) -> bool:
    """Whether the weekly check-ins read (``given``: all of those from ``read_from`` on)
    hold the newest weekly report and, per weekly answer, the newest reports the window
    keeps."""
    if read_from is None:
        return True
    sure = _sure(read_from)
    newest_read = any(
        r.reported_on >= sure and r.source in given.weekly_sources for r in given.reports
    )
    return newest_read and not _missing_answers(given, sure, WEEKLY_ANSWERS)


def follow_ups_missing(given: ResponseInputs, read_from: date | None) -> bool:
    """Whether the newest follow-up reports (RMDQ, PHQ-8) may lie before ``read_from``."""
    return read_from is not None and follow_ups_missing_from(given, _sure(read_from))


def follow_ups_missing_from(given: ResponseInputs, sure: date | None) -> bool:
    """The same, knowing every follow-up report from ``sure`` on (None: every one)."""
    if sure is None:
        return False
    return bool(_missing_answers(given, sure, tuple(FOLLOW_UP_SCORES)))


def newest_follow_ups(observations: Iterable[dict[str, Any]]) -> dict[str, list[tuple[date, str]]]:
    """Per follow-up score, the (day, response id) of its score Observations, newest first.
    A score Observation is dated as its response was written (``effectiveDateTime`` is the
    response's ``authored``: mappings/scoring.py)."""
    kinds = set(FOLLOW_UP_SCORES.values())
    out: dict[str, list[tuple[date, str]]] = {}
    for observation in observations:
        kind = next(
            (
                str(c.get("code"))
                for c in (observation.get("method") or {}).get("coding") or []
                if c.get("system") == fc.SCORING_ALGORITHM and c.get("code") in kinds
            ),
            None,
        )
        day = day_of(observation.get("effectiveDateTime"))
        for source in observation.get("derivedFrom") or []:
            response = str((source or {}).get("reference") or "")
            if kind and day and response.startswith("QuestionnaireResponse/"):
                out.setdefault(kind, []).append((day, response.split("/", 2)[1]))
    return {kind: sorted(found, reverse=True) for kind, found in out.items()}


def follow_up_responses(
    newest: dict[str, list[tuple[date, str]]], count: int
) -> tuple[set[str], date | None]:
    """The responses of the newest ``count`` score Observations of each follow-up score, and
    the day from which on every follow-up response is among them (None: all are)."""
    ids: set[str] = set()
    sure: date | None = None
    for found in newest.values():
        chosen = found[:count]
        ids.update(rid for _, rid in chosen)
        if len(found) > count:
            # All of a later day are chosen; the oldest chosen day may have more.
            after = days_after(chosen[-1][0], timedelta(days=1))
            sure = after if sure is None else max(sure, after)
    return ids, sure


def last_use_read(given: ResponseInputs, read_from: date | None) -> bool:
    """Whether the newest scored response before ``as_of`` (the last app use) was read."""
    if read_from is None:
        return True
    sure = _sure(read_from)
    return any(day >= sure for day in given.used_days)


def reports_kept() -> int:
    """Per answer, how many of the newest reports holding it the engine keeps."""
    return reports_kept_per_answer()


def goal_ids(record: PatientRecord, as_of: date) -> list[str]:
    """The engine's Goals the plan reads: those of the earlier plans the window keeps."""
    return window_goal_ids(record, as_of)
