"""The planning reader reads only the history window the engine plans from
(fhir_server/planning/record.py ``read_history``, window.py; docs/PLAN_ENGINE.md "In the
server"), and the engine's decision is byte-identical to the decision from everything stored.

One patient goes through 34 weeks of the programme through the real write path (transaction
Bundles and updates, scored and planned by the outbox worker with a hand-moved clock): weekly
check-ins that skip some answers in some weeks, exercise feedback, education reads with quiz
results, daily steps, RMDQ and PHQ-8 follow-ups, a red flag with the safety hold until the
clinician's review, and six weeks of pain-relief mode. On SQLite and PostgreSQL (``-m db``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import pytest

from fhir_server.events.handlers import HANDLERS, TOPIC_HANDLERS
from fhir_server.events.worker import OutboxWorker
from fhir_server.interactions.transaction import BundleOptions, process_bundle
from fhir_server.interactions.update import update
from fhir_server.planning import conventions as fc
from fhir_server.planning import window
from fhir_server.planning.operation_support import reading
from fhir_server.planning.record import read_history, read_plans, read_record
from fhir_server.planning.run import decide_week
from fhir_server.planning.snapshot import build_snapshot, day_of, plan_weeks
from fhir_server.planning.weeks import start_of_day_us
from fhir_server.search import SearchQuery
from fhir_server.storage.database import Database, open_database
from fhir_server.storage.migrate import upgrade
from fhir_server.storage.repository import Repository, StoredResource, WriteSession
from plan_engine import codes, decide_plan
from tests.conftest import drop_database, fresh_database_url
from tests.mappings.qr_builder import build_response
from tests.planning.enrolment import (
    NO_RED_FLAGS,
    baseline_response,
    enrolment,
    exercise_feedback,
    step_observation,
    transaction,
)

START = date(2026, 3, 2)  # a Monday; plan week k starts START + 7(k - 1)
WEEKS = 34
HOUR = 3_600_000_000
PID = "hw"
RED_FLAG_WEEK = 12  # the check-in of week 12 stops week 13; reviewed during week 14
PAIN_RELIEF_WEEKS = range(18, 24)  # pain 7: pain-relief mode for the weeks after


def week_start(week: int) -> date:
    return START + timedelta(days=7 * (week - 1))


def at(day: date, hours: int = 10) -> int:
    return start_of_day_us(day) + hours * HOUR


@pytest.fixture(scope="module")
def own_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = fresh_database_url(tmp_path_factory.mktemp("window"), "window")
    yield url
    drop_database(url)


@pytest.fixture(scope="module")
def repo(own_database: str) -> Iterator[Repository]:
    database: Database = open_database(own_database)
    upgrade(database)
    repository = Repository(database, event_types=frozenset(HANDLERS))
    _programme(repository)
    yield repository
    database.dispose()


def _drain(repo: Repository, now: int) -> None:
    work = OutboxWorker(repo, HANDLERS, topic_handlers=TOPIC_HANDLERS)
    for offset in range(50):
        if work.run_once(now=now + offset) == 0:
            return
    raise AssertionError("events kept coming")


def _write(repo: Repository, resources: list[dict[str, Any]], now: int) -> None:
    process_bundle(repo, transaction(resources), BundleOptions(base_url="http://t/fhir", now=now))
    _drain(repo, now)


def _response(qid: str, rid: str, day: date, answers: dict[str, Any]) -> dict[str, Any]:
    response = build_response(qid, answers, rid=rid)
    response["subject"] = response["source"] = {"reference": f"Patient/{PID}"}
    response["authored"] = f"{day.isoformat()}T08:00:00Z"
    return response


def _check_in(week: int, day: date) -> dict[str, Any]:
    """The weekly check-in; not every group every week (selfBACK: not every item every
    week), so some answers are a few weeks old when a plan is made."""
    pain = 7 if week in PAIN_RELIEF_WEEKS else 3 + week % 3
    answers: dict[str, Any] = {**NO_RED_FLAGS, "nrs-pain-average": pain}
    if week == RED_FLAG_WEEK:
        answers["rf-leg-weakness"] = True
    if week % 2 == 0:
        answers |= {"pain-interference": 4 + week % 3, "fear-avoidance-item": 3}
    if week % 3 == 0:
        answers |= {"pseq-5": 4, "pseq-9": 3, "wai-1": 6}
    if week % 4 == 1:
        answers |= {"pss-2": 1, "pss-4": 2, "pss-5": 1, "pss-10": 2, "phq-1": 1, "phq-2": 0}
    if week % 5 == 2:
        answers |= {"sleep-weekly": 2 + week % 4, "barriers": "time"}
    return _response("selfback-weekly", f"{PID}-week-{week}", day, answers)


def _mental_health(rid: str, day: date, level: int) -> dict[str, Any]:
    answers = {f"phq-{i}": level if i <= 3 else 0 for i in range(1, 9)}
    answers |= {f"pss-{i}": 2 for i in range(1, 11)}
    return _response("selfback-mental-health", rid, day, answers)


def _education_read(rid: str, canonical: str, day: date, passed: bool | None) -> dict[str, Any]:
    message: dict[str, Any] = {
        "resourceType": "Communication",
        "id": rid,
        "status": "completed",
        "instantiatesCanonical": [canonical],
        "subject": {"reference": f"Patient/{PID}"},
        "received": f"{day.isoformat()}T19:00:00Z",
    }
    if passed is not None:
        message["extension"] = [{"url": fc.EXT_QUIZ_PASSED, "valueBoolean": passed}]
    return message


def _plan_of(repo: Repository, start: date) -> dict[str, Any]:
    with reading(repo) as source:
        return plan_weeks(read_plans(source, PID))[start]


def _activities(plan: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [
        a["detail"]
        for a in plan.get("activity", [])
        if any(c.get("code") == kind for c in a["detail"].get("code", {}).get("coding", []))
    ]


def _programme(repo: Repository) -> None:
    # Enrolment on START; a mental-health response within the baseline period adds the
    # baseline PHQ-8 (the baseline takes the oldest score of each).
    _write(repo, enrolment(PID, START, START), at(START, 8))
    _write(repo, [_mental_health(f"{PID}-mh-0", START + timedelta(days=3), 1)], at(START, 9))
    for week in range(1, WEEKS + 1):
        monday = week_start(week)
        plan = _plan_of(repo, monday)
        tuesday, thursday, saturday = (monday + timedelta(days=n) for n in (1, 3, 5))
        steps = [
            step_observation(f"{PID}-steps-{week}-{n}", PID, monday + timedelta(days=n),
                             4000 + 300 * ((week + n) % 9), valid=n != 2)
            for n in range(7)
        ]  # fmt: skip
        _write(repo, steps, at(monday, 7))
        exercises = _activities(plan, codes.ACTIVITY_KIND_EXERCISE) + _activities(
            plan, codes.ACTIVITY_KIND_PAIN_RELIEF_EXERCISE
        )
        messages = _activities(plan, codes.ACTIVITY_KIND_EDUCATION) + _activities(
            plan, codes.ACTIVITY_KIND_QUIZ
        )
        if exercises:
            exercise, level = exercises[week % len(exercises)]["description"].split(", level ")
            reason = ("easy", "difficult", "pain", "instruction-unclear")[week % 4]
            feedback = exercise_feedback(
                f"{PID}-fb-{week}", PID, tuesday, exercise, int(level), reason
            )
            _write(repo, [feedback], at(tuesday, 18))
        reads = [
            _education_read(
                f"{PID}-read-{week}-{n}",
                detail["instantiatesCanonical"][0],
                thursday,
                (week + n) % 3 != 0 if "(quiz)" in detail["description"] else None,
            )
            for n, detail in enumerate(messages[:3])
        ]
        if reads:
            _write(repo, reads, at(thursday, 19))
        if week in (8, 20):  # RMDQ follow-ups: the baseline questionnaire again
            changes = {f"rmdq-{i}": i <= 10 - week // 4 for i in range(1, 25)}
            follow_up = baseline_response(f"{PID}-follow-up-{week}", PID, thursday, **changes)
            _write(repo, [follow_up], at(thursday, 20))
        if week in (9, 21):
            _write(repo, [_mental_health(f"{PID}-mh-{week}", thursday, 1)], at(thursday, 20))
        if week == RED_FLAG_WEEK + 2:  # the clinician's review of the stop-and-refer
            _review(repo, monday + timedelta(days=2))
        _write(repo, [_check_in(week, saturday)], at(saturday, 8))
        _drain(repo, at(week_start(week + 1), 0))  # the boundary: planned already


def _review(repo: Repository, day: date) -> None:
    with reading(repo) as source:
        issue = read_record(source, PID).detected_issues[0]
    issue = {k: v for k, v in issue.items() if k != "meta"}
    issue["mitigation"] = [
        {
            "action": {"text": "Seen in clinic, no cauda equina signs"},
            "date": day.isoformat(),
            "author": {"reference": f"PractitionerRole/{PID}-physio"},
        }
    ]
    repo.write(lambda s: update(s, "DetectedIssue", issue["id"], issue, now=at(day, 12)))


class _Counting:
    """The repository's read session, counting what the reader's searches return."""

    def __init__(self, session: WriteSession) -> None:
        self.session = session
        self.returned: Counter[str] = Counter()
        self.searches = 0

    def read(self, rtype: str, id: str) -> StoredResource | None:
        return self.session.read(rtype, id)

    def find(self, query: SearchQuery, limit: int) -> list[StoredResource]:
        found = self.session.find(query, limit)
        self.searches += 1
        self.returned.update(r.rtype for r in found)
        return found


def test_the_history_spans_the_programme(repo: Repository) -> None:
    """The scenario happened as designed: a plan per week, a hold until the review, then
    pain-relief mode for weeks after pain 7."""
    with reading(repo) as source:
        weeks = plan_weeks(read_plans(source, PID))
    assert sorted(weeks) == [week_start(w) for w in range(1, WEEKS + 2)]
    modes = {
        w: weeks[week_start(w)]["category"][0]["coding"][0]["code"] for w in range(1, WEEKS + 2)
    }
    assert modes[RED_FLAG_WEEK + 1] == modes[RED_FLAG_WEEK + 2] == "safety-hold"
    assert modes[RED_FLAG_WEEK + 3] == "standard"
    # Pain 7 for six weeks: pain-relief mode at most 2 of any 4 weeks (PR-MAX-WEEKS), the
    # weeks between a graded return at standard (docs/PLAN_ENGINE.md, pain-relief mode).
    assert [modes[w + 1] for w in PAIN_RELIEF_WEEKS] == [
        "pain-relief",
        "pain-relief",
        "standard",
        "standard",
        "standard",
        "pain-relief",
    ]
    assert modes[WEEKS + 1] == "standard"


@pytest.mark.parametrize("week", range(2, WEEKS + 3))
def test_the_window_gives_the_snapshot_of_the_whole_history(repo: Repository, week: int) -> None:
    """For every plan week (and one past the data), what read_history reads builds the same
    snapshot as everything stored: the same facts, the same inputs, the same decision key."""
    as_of = week_start(week)
    with reading(repo) as source:
        everything = read_record(source, PID)
        windowed = read_history(source, read_plans(source, PID), as_of)
    assert build_snapshot(windowed, as_of) == build_snapshot(everything, as_of)


@pytest.mark.parametrize(
    "week",
    [RED_FLAG_WEEK + 1, RED_FLAG_WEEK + 2, RED_FLAG_WEEK + 3, 22, 26, WEEKS + 1],
    ids=["stopped", "held-until-review", "resumed", "pain-relief", "after-pain-relief", "last"],
)
def test_the_decision_is_byte_identical(repo: Repository, week: int) -> None:
    as_of = week_start(week)
    with reading(repo) as source:
        everything = decide_plan(build_snapshot(read_record(source, PID), as_of), as_of)
        run = decide_week(source, PID, as_of=as_of, today=as_of)
    assert run.decision.to_json() == everything.to_json()


def test_the_stored_plan_of_the_last_week_is_the_whole_history_decision(
    repo: Repository,
) -> None:
    """The worker planned each week through the window; the plan it stored for the last
    week is the one the whole history gives."""
    as_of = week_start(WEEKS + 1)
    with reading(repo) as source:
        everything = decide_plan(build_snapshot(read_record(source, PID), as_of), as_of)
    stored = _plan_of(repo, as_of)
    expected = everything.resources_of("CarePlan")[0]
    assert stored["id"] == expected["id"]
    assert {k: v for k, v in stored.items() if k != "meta"} == expected


def test_a_weekly_run_reads_the_window_not_the_history(repo: Repository) -> None:
    """The last week's run fetches a fraction of what is stored: steps of the last 31 days,
    the Goals of the plans the window keeps, and of the older responses only the baseline
    period, the follow-ups and the weekly check-ins back to the fourth newest holding the
    sparsest answer (sleep, every fifth week: weeks 32, 27, 22 and 17) -- never an older
    exercise feedback, nor the check-ins of weeks 3 to 5 (the slices reach back to week 6)."""
    as_of = week_start(WEEKS + 1)
    with reading(repo) as session:
        whole = _Counting(session)
        read_record(whole, PID)
        windowed = _Counting(session)
        run = decide_week(windowed, PID, as_of=as_of, today=as_of)
    assert windowed.returned["Observation"] * 2 < whole.returned["Observation"]
    assert windowed.returned["QuestionnaireResponse"] < whole.returned["QuestionnaireResponse"]
    assert windowed.returned["Goal"] * 4 < whole.returned["Goal"]
    record = run.record
    recent = window.recent_from(as_of)
    baseline_period_end = START + timedelta(days=17)
    old = {
        r["id"]
        for r in record.responses
        if (d := day_of(r.get("authored"))) is not None and baseline_period_end <= d < recent
    }
    follow_ups = {f"{PID}-follow-up-8", f"{PID}-follow-up-20", f"{PID}-mh-9", f"{PID}-mh-21"}
    check_ins = {f"{PID}-week-{w}" for w in range(1, WEEKS + 1)}
    assert follow_ups <= old <= follow_ups | check_ins
    assert {f"{PID}-week-{w}" for w in range(17, 30)} <= old
    assert not {f"{PID}-week-{w}" for w in range(3, 6)} & old
    steps = [o for o in record.observations if o["code"]["coding"][0]["code"] == fc.LOINC_STEPS]
    assert {day_of(o["effectiveDateTime"]) for o in steps} == {
        as_of - timedelta(days=n) for n in range(1, 32)
    }


def test_days_before_and_read_until_stay_in_the_calendar() -> None:
    assert window.days_before(date(1, 1, 5), timedelta(days=30)) == date.min
    assert window.read_until(date(9999, 12, 30)) == date.max
    assert window.read_until(date(9000, 1, 1)) == date(9000, 1, 4)
    assert window.days_after(date(9999, 12, 20), timedelta(days=14)) == date.max
