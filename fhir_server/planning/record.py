"""Reading one patient's stored data for planning, through the search engine.

The thin I/O half of snapshot assembly: every read is a parsed FHIR search run by the
repository's search SQL (``WriteSession.find``), so this module builds no SQL. The pure
half, :func:`fhir_server.planning.snapshot.build_snapshot`, decides what counts, and
:mod:`fhir_server.planning.window` which dates and counts the plan of a week needs.

- :func:`read_plans`: the patient, the programme CarePlan and its weekly plans (which week to
  plan, whether it is planned);
- :func:`read_history`: with those, the rest of what the plan of the week of ``as_of``
  reads, each kind of record searched within the engine's history window (date prefixes
  ``ge``/``lt`` on ``authored``, ``date``; the Goals by ``_id``), so the cost of a weekly
  run does not grow with the weeks a patient has been in the programme;
- :func:`read_record`: everything stored about the patient (what the window is checked
  against in the tests, and the benchmark's baseline).

Read in full still: the weekly plans (the education every earlier plan delivered is folded
into the snapshot, and no search parameter indexes a plan's activities), the education
read reports (the newest read and quiz result per item, of any age), the DetectedIssues
(a review is a ``mitigation`` with its own date, which nothing indexes; they exist only where
a finding was raised) and the Consents.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import date
from typing import Any, Protocol

import orjson

from fhir_server.errors import not_found
from fhir_server.planning import conventions as fc
from fhir_server.planning import window
from fhir_server.planning.snapshot import (
    PatientRecord,
    PlanningInputError,
    ResponseInputs,
    day_of,
    response_inputs,
)
from fhir_server.search import SearchQuery, parse_search
from fhir_server.storage.repository import StoredResource
from plan_engine import codes

# Enough for years of daily data; a patient past it is planned from the newest rows the
# search returns (the step window is 28 days, so only very old data could be missed).
LIMIT = 10_000


class ResourceSource(Protocol):
    """What the reader needs: the current version by id and a parsed search.
    ``fhir_server.storage.repository.WriteSession`` is one (inside a write transaction,
    seeing that transaction's own writes)."""

    def read(self, rtype: str, id: str) -> StoredResource | None: ...

    def find(self, query: SearchQuery, limit: int) -> list[StoredResource]: ...


def _search(
    source: ResourceSource, rtype: str, params: list[tuple[str, str]]
) -> list[dict[str, Any]]:
    query = parse_search(rtype, params, strict=True)
    return [orjson.loads(r.body) for r in source.find(query, LIMIT) if not r.deleted]


def read_patient(source: ResourceSource, patient_id: str) -> dict[str, Any]:
    stored = source.read("Patient", patient_id)
    if stored is None or stored.deleted:
        raise not_found(f"Patient/{patient_id} is not known")
    return orjson.loads(stored.body)  # type: ignore[no-any-return]


def programme_plans(source: ResourceSource, patient_id: str) -> list[dict[str, Any]]:
    """The patient's active programme CarePlans, newest start first."""
    plans = _search(
        source,
        "CarePlan",
        [
            ("subject", f"Patient/{patient_id}"),
            ("category", f"{fc.CAREPLAN_KIND}|{fc.PROGRAMME}"),
            ("status", "active"),
        ],
    )
    return sorted(
        plans,
        key=lambda p: (str(day_of((p.get("period") or {}).get("start")) or ""), p["id"]),
        reverse=True,
    )


def read_plans(source: ResourceSource, patient_id: str) -> PatientRecord:
    """The patient, the newest active programme CarePlan and the weekly plans based on it."""
    patient = read_patient(source, patient_id)
    plans = programme_plans(source, patient_id)
    if not plans:
        raise PlanningInputError(
            f"Patient/{patient_id} is not enrolled: no active programme CarePlan "
            f"(category {fc.CAREPLAN_KIND}|{fc.PROGRAMME})"
        )
    programme = plans[0]
    return PatientRecord(
        patient=patient,
        programme_plan=programme,
        weekly_plans=tuple(
            _search(source, "CarePlan", [("based-on", f"CarePlan/{programme['id']}")])
        ),
    )


def read_record(source: ResourceSource, patient_id: str) -> PatientRecord:
    """Everything stored about the patient that planning looks at, whatever its age."""
    record = read_plans(source, patient_id)
    subject = ("subject", f"Patient/{patient_id}")
    return replace(
        record,
        responses=tuple(_search(source, "QuestionnaireResponse", [subject])),
        observations=tuple(_search(source, "Observation", [subject])),
        goals=tuple(_search(source, "Goal", [subject])),
        **_read_in_full(source, patient_id),
    )


def _read_in_full(source: ResourceSource, patient_id: str) -> dict[str, Any]:
    subject = ("subject", f"Patient/{patient_id}")
    patient = ("patient", f"Patient/{patient_id}")
    return {
        "communications": tuple(
            _search(source, "Communication", [subject, ("status", "completed")])
        ),
        "consents": tuple(_search(source, "Consent", [patient])),
        "detected_issues": tuple(_search(source, "DetectedIssue", [patient])),
    }


class _History:
    """The responses read so far and their score Observations, each read once. Scores are
    read in one search for all responses read since the last time they were needed."""

    def __init__(self, source: ResourceSource, patient_id: str) -> None:
        self.source = source
        self.subject = ("subject", f"Patient/{patient_id}")
        self.responses: dict[str, dict[str, Any]] = {}
        self.scores: dict[str, dict[str, Any]] = {}
        self.scored: set[str] = set()  # responses whose score Observations were read
        self._given: tuple[int, ResponseInputs] | None = None

    def add_responses(self, params: list[tuple[str, str]]) -> None:
        for response in _search(self.source, "QuestionnaireResponse", [self.subject, *params]):
            self.responses[response["id"]] = response

    def add_responses_by_id(self, ids: Iterable[str]) -> None:
        for chunk in _chunks(sorted(set(ids) - set(self.responses))):
            self.add_responses([("_id", chunk)])

    def _read_scores(self) -> None:
        # snapshot.py joins the scores to their response through derivedFrom.
        unscored = sorted(set(self.responses) - self.scored)
        for chunk in _chunks([f"QuestionnaireResponse/{i}" for i in unscored]):
            for observation in _search(
                self.source, "Observation", [self.subject, ("derived-from", chunk)]
            ):
                self.scores[observation["id"]] = observation
        self.scored.update(unscored)

    def given(self, base: PatientRecord, as_of: date) -> ResponseInputs:
        """What the responses read so far give (computed again only after new reads)."""
        if self._given is None or self._given[0] != len(self.responses):
            self._given = (len(self.responses), response_inputs(self.record(base), as_of))
        return self._given[1]

    def record(self, base: PatientRecord, *, scored: bool = True, **more: Any) -> PatientRecord:
        if scored:
            self._read_scores()
        return replace(
            base,
            responses=tuple(self.responses.values()),
            observations=tuple(self.scores.values()) + tuple(more.pop("steps", ())),
            **more,
        )


def _chunks(values: list[str], size: int = 100) -> Iterable[str]:
    for index in range(0, len(values), size):
        yield ",".join(values[index : index + size])


def _between(name: str, lo: date | None, hi: date) -> list[tuple[str, str]]:
    bounds = [(name, f"lt{hi.isoformat()}")]
    return bounds if lo is None else [(name, f"ge{lo.isoformat()}"), *bounds]


def _back_in_time(
    read_slice: Callable[[date | None, date], None],
    enough: Callable[[date | None], bool],
    *,
    read_from: date,
    floor: date,
) -> None:
    """Read older slices ``[lo, hi)`` of one kind of record, newest first, each twice as
    wide as the one before, until ``enough(lo)``; a slice reaching below ``floor`` goes to
    the beginning (``lo`` None). Everything dated from ``read_from`` on is read already."""
    hi, width = read_from, window.FIRST_SLICE
    lo: date | None = read_from
    while lo is not None and not enough(lo):
        lo = window.days_before(hi, width)
        if lo <= floor:
            lo = None
        read_slice(lo, hi)
        if lo is not None:
            hi, width = lo, width * 2


def read_history(source: ResourceSource, plans: PatientRecord, as_of: date) -> PatientRecord:
    """What the plan of the week starting ``as_of`` is made from: ``plans`` (from
    :func:`read_plans`) with the responses, scores, steps and Goals of the history window.
    The snapshot built from it is the snapshot built from :func:`read_record`."""
    patient_id = plans.patient["id"]
    history = _History(source, patient_id)
    until = window.read_until(as_of)
    recent = window.recent_from(as_of)

    # The baseline: every baseline response (the first gives the baseline; later ones are
    # follow-ups), and every response of the baseline period (the oldest score of each),
    # read with the recent ones when the two periods meet.
    history.add_responses([("questionnaire", fc.BASELINE_QUESTIONNAIRE)])
    # The goal-setting answers: the newest before as_of counts, of any age (there are few).
    history.add_responses(
        [("questionnaire", fc.GOAL_SETTING_QUESTIONNAIRE), *_between("authored", None, until)]
    )
    span = window.baseline_span(history.record(plans, scored=False))  # needs no scores
    if span is not None and span[1] >= recent and span[0] < until:
        history.add_responses(_between("authored", min(span[0], recent), max(span[1], until)))
    else:
        if span is not None:
            history.add_responses(_between("authored", *span))
        history.add_responses(_between("authored", recent, until))
    # Responses without ``authored`` are dated by their last update (snapshot.py), which no
    # date search sees; there should be none.
    history.add_responses([("authored:missing", "true")])

    if span is not None:  # without a baseline, nothing can be planned (snapshot.py says so)
        floor = window.history_floor(history.record(plans), as_of)

        def weekly(lo: date | None, hi: date) -> None:
            history.add_responses(
                [("questionnaire", fc.WEEKLY_QUESTIONNAIRE), *_between("authored", lo, hi)]
            )

        def any_response(lo: date | None, hi: date) -> None:
            history.add_responses(_between("authored", lo, hi))

        _back_in_time(
            weekly,
            lambda lo: window.weekly_answers_read(history.given(plans, as_of), lo),
            read_from=recent,
            floor=floor,
        )
        _read_follow_ups(history, plans, as_of, recent)
        _back_in_time(
            any_response,
            lambda lo: window.last_use_read(history.given(plans, as_of), lo),
            read_from=recent,
            floor=floor,
        )

    steps = _search(
        source,
        "Observation",
        [
            history.subject,
            ("code", f"{codes.LOINC}|{fc.LOINC_STEPS}"),
            *_between("date", recent, until),
        ],
    )
    goals = _goals(source, patient_id, window.goal_ids(plans, as_of))
    return history.record(plans, steps=steps, goals=goals, **_read_in_full(source, patient_id))


def _read_follow_ups(history: _History, plans: PatientRecord, as_of: date, recent: date) -> None:
    """The responses of the newest follow-up scores (RMDQ, PHQ-8): their score Observations
    are few (one per follow-up questionnaire), so one search finds them all, and only the
    responses of the newest are read (more when some of those do not count, e.g. a response
    that is not completed)."""
    if not window.follow_ups_missing(history.given(plans, as_of), recent):
        return
    # One search per score, without a date bound (the recent ones come too, harmlessly):
    # with two methods or a date the search scanned every Observation of the patient
    # (41 ms instead of 2 at 52 weeks on SQLite).
    found = [
        observation
        for score in window.FOLLOW_UP_SCORES.values()
        for observation in _search(
            history.source,
            "Observation",
            [history.subject, ("method", f"{fc.SCORING_ALGORITHM}|{score}")],
        )
    ]
    newest = window.newest_follow_ups(found)
    count = window.reports_kept()
    while True:
        ids, sure = window.follow_up_responses(newest, count)
        history.add_responses_by_id(ids)
        if not window.follow_ups_missing_from(history.given(plans, as_of), sure):
            return
        count *= 2


def _goals(source: ResourceSource, patient_id: str, plan_goals: list[str]) -> tuple[Any, ...]:
    """The Goals of the plans the window keeps, and the active ones (a clinician's fixed
    goal is an active Goal; snapshot.py reads no other)."""
    subject = ("subject", f"Patient/{patient_id}")
    found = {g["id"]: g for g in _search(source, "Goal", [subject, ("lifecycle-status", "active")])}
    for chunk in _chunks(sorted(set(plan_goals) - set(found))):
        found.update((g["id"], g) for g in _search(source, "Goal", [subject, ("_id", chunk)]))
    return tuple(found.values())
