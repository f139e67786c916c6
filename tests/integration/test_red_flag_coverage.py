"""Every red-flag answer path of every Questionnaire, through the running server (issue 11,
item 1: "red-flag coverage, provably complete").

The paths are GENERATED, not listed: from each packaged Questionnaire, every item whose
``Questionnaire.item.code`` is a red-flag code (``mappings.red_flag_items``), answered yes
alone; and from the rule table (plan_engine/config/rules.json ``safety.red_flag_rules``)
every rule that combines a standing answer of the baseline safety check (history of cancer,
steroids or immunosuppression, onset age) with an answer of the weekly check-in. A new item
without a rule, or a rule no Questionnaire can reach, fails ``test_every_path_is_covered``.

Each path is one patient on one server: enrolled over HTTP (baseline QuestionnaireResponse
in the enrolment transaction), and for weekly paths a check-in QuestionnaireResponse posted
afterwards; the outbox worker scores and plans. For the plan the answer reaches, the test
asserts: on hold (emergency, urgent) or not harder (review); a Flag and a DetectedIssue
naming the rule, tagged safety-alert, the DetectedIssue citing the response and the item's
red-flag code; a Communication to the responsible clinician (PractitionerRole) about the
Flag with the priority of the urgency (stat / asap / routine); the patient's safety message
in English and Danish on the plan.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import httpx
import pytest

from fhir_server.planning import conventions as fc
from mappings import red_flag_items
from plan_engine import codes
from plan_engine.config import load_rules
from plan_engine.safety import fired_rules
from tests.integration.test_planning_server import search, today, wait_for
from tests.planning.enrolment import baseline_response, enrolment, transaction, weekly_response

RULES = load_rules()
STANDING = RULES.safety.standing_answers
# Asked by no Questionnaire on purpose: the engine's rule serves a PHQ-9 item 9 a deployer
# may add (PHQ-8 has no self-harm item; docs/CONTENT.md, "Red flags").
NOT_ASKED = frozenset({"self_harm_thoughts"})
PRIORITY = codes.URGENCY_PRIORITY
TAG = {"system": codes.SECURITY_TAG, "code": codes.SAFETY_ALERT_TAG}


@dataclass(frozen=True)
class Path:
    """One way to report a red flag: yes to ``baseline`` items of the baseline safety check
    and ``weekly`` items of a check-in; ``rule`` is the finding it must raise and
    ``in_weekly`` says which response the plan's finding comes from."""

    name: str
    baseline: dict[str, str]  # linkId -> red-flag code, answered yes
    weekly: dict[str, str]
    rule: str
    urgency: str
    # Other baseline answers that report a red flag (the comorbidity "cancer") and the
    # red-flag codes the DetectedIssue must cite for them.
    extra: tuple[tuple[str, Any], ...] = ()
    extra_codes: tuple[str, ...] = ()

    @property
    def in_weekly(self) -> bool:
        return bool(self.weekly)


def _answer_items(questionnaire: str) -> dict[str, tuple[str, str]]:
    """answer name -> (linkId, red-flag code) for the items of one Questionnaire."""
    return {
        codes.RED_FLAG_ANSWER_BY_CODE[code]: (link_id, code)
        for link_id, code in red_flag_items().get(questionnaire, {}).items()
    }


def generate_paths() -> tuple[list[Path], list[str]]:
    """The paths, and what cannot be covered (an item without a rule, a rule no
    Questionnaire reaches): that list must be empty."""
    problems: list[str] = []
    paths: list[Path] = []
    weekly = _answer_items(fc.WEEKLY_QUESTIONNAIRE)
    baseline = _answer_items(fc.BASELINE_QUESTIONNAIRE)
    for url, items in sorted(red_flag_items().items()):
        for link_id, code in sorted(items.items()):
            name = codes.RED_FLAG_ANSWER_BY_CODE.get(code)
            if name is None:
                problems.append(f"{url} {link_id}: red-flag code {code} has no engine answer")
                continue
            fired = fired_rules(frozenset({name}), frozenset(), RULES)
            if not fired:
                problems.append(f"{url} {link_id}: no rule fires on {name} alone")
                continue
            for rule in fired:
                if url == fc.WEEKLY_QUESTIONNAIRE:
                    paths.append(Path(f"weekly {link_id}", {}, {link_id: code}, rule.id,
                                      rule.urgency))  # fmt: skip
                elif url == fc.BASELINE_QUESTIONNAIRE:
                    paths.append(Path(f"baseline {link_id}", {link_id: code}, {}, rule.id,
                                      rule.urgency))  # fmt: skip
                else:
                    problems.append(f"{url} {link_id}: a red flag outside baseline and weekly")
    for rule in RULES.safety.red_flag_rules:
        names = set(rule.all_of)
        if names & NOT_ASKED:
            continue
        if not all(n in weekly or n in baseline for n in names):
            problems.append(f"{rule.id}: an answer no Questionnaire asks")
        if len(names) < 2:
            continue
        standing = names & STANDING
        current = names - STANDING
        if not standing or not current or not all(n in weekly for n in current):
            problems.append(f"{rule.id}: not a standing answer + a weekly answer")
            continue
        paths.append(
            Path(
                f"combined {rule.id}",
                dict(baseline[n] for n in sorted(standing)),
                dict(weekly[n] for n in sorted(current)),
                rule.id,
                rule.urgency,
            )
        )
    # The reader also counts a cancer comorbidity in the baseline as a history of cancer
    # (fhir_server/planning/snapshot.py, NICE CKS: past history of cancer).
    cancer = (("comorbidity", "cancer"),)
    history = codes.RED_FLAG_ANSWER_CODES["cancer_history"]
    alone = fired_rules(frozenset({"cancer_history"}), frozenset(), RULES)
    for rule in alone:
        paths.append(Path("baseline comorbidity cancer", {}, {}, rule.id, rule.urgency, cancer,
                          (history,)))  # fmt: skip
    link_id, code = weekly["new_pain"]
    (combined,) = fired_rules(frozenset({"new_pain"}), frozenset({"cancer_history"}), RULES)
    paths.append(Path("combined comorbidity cancer", {}, {link_id: code}, combined.id,
                      combined.urgency, cancer, (history,)))  # fmt: skip
    return paths, problems


PATHS, PROBLEMS = generate_paths()


def test_every_path_is_covered() -> None:
    assert PROBLEMS == []
    asked = {
        codes.RED_FLAG_ANSWER_BY_CODE[c]
        for items in red_flag_items().values()
        for c in items.values()
    }
    assert asked | NOT_ASKED == set(codes.RED_FLAG_ANSWER_CODES)
    # every rule has a path (NOT_ASKED aside)
    covered = {p.rule for p in PATHS}
    expected = {r.id for r in RULES.safety.red_flag_rules if not set(r.all_of) & NOT_ASKED}
    assert covered == expected


def _enrol(fhir: httpx.Client, path: Path) -> tuple[str, date]:
    pid = f"rf-{uuid.uuid4().hex[:10]}"
    start = today() - timedelta(days=7)
    resources = enrolment(pid, start, today())
    yes: dict[str, Any] = {**dict.fromkeys(path.baseline, True), **dict(path.extra)}
    resources = [
        baseline_response(f"{pid}-baseline", pid, start, **yes)
        if r["resourceType"] == "QuestionnaireResponse"
        else r
        for r in resources
    ]
    answer = fhir.post("/", json=transaction(resources))
    assert answer.status_code == 200, answer.text
    return pid, start


def _plans(fhir: httpx.Client, pid: str) -> dict[str, dict[str, Any]]:
    return {
        p["period"]["start"]: p
        for p in search(fhir, "CarePlan", **{"based-on": f"CarePlan/{pid}-programme"})
    }


def _plan(fhir: httpx.Client, pid: str, start: date) -> dict[str, Any]:
    return wait_for(
        lambda: _plans(fhir, pid).get(start.isoformat()), f"{pid}: plan of {start}", 300
    )


def _goal(fhir: httpx.Client, plan: dict[str, Any]) -> int:
    goal = fhir.get("/" + plan["goal"][0]["reference"]).json()
    return int(goal["target"][0]["detailQuantity"]["value"])


def _rule_of(resource: dict[str, Any]) -> str | None:
    return next(
        (c["code"] for c in resource["code"]["coding"] if c["system"] == codes.PLAN_RULE), None
    )


@pytest.fixture(scope="module")
def walked(server: Any) -> dict[str, dict[str, Any]]:
    """Every path walked on the one server: all enrolments first, then all check-ins, so
    the outbox worker plans them together."""
    with httpx.Client(base_url=server.fhir, timeout=120) as fhir:
        enrolled = {p.name: _enrol(fhir, p) for p in PATHS}
        this_week = {p.name: _plan(fhir, enrolled[p.name][0], today()) for p in PATHS}
        sent: dict[str, str] = {}
        for p in PATHS:
            pid = enrolled[p.name][0]
            if p.in_weekly:
                response = weekly_response("x", pid, today(), pain=5,
                                           red_flags=dict.fromkeys(p.weekly, True))  # fmt: skip
                response.pop("id")
                answer = fhir.post("/QuestionnaireResponse", json=response)
                assert answer.status_code == 201, answer.text
                sent[p.name] = f"QuestionnaireResponse/{answer.json()['id']}"
            else:
                sent[p.name] = f"QuestionnaireResponse/{pid}-baseline"
        out: dict[str, dict[str, Any]] = {}
        for p in PATHS:
            pid = enrolled[p.name][0]
            plan = _plan(fhir, pid, today() + timedelta(days=7)) if p.in_weekly else None
            out[p.name] = {
                "pid": pid,
                "before": this_week[p.name] if p.in_weekly else None,
                "plan": plan or this_week[p.name],
                "response": sent[p.name],
                "baseline": f"QuestionnaireResponse/{pid}-baseline",
                "flags": search(fhir, "Flag", subject=f"Patient/{pid}"),
                "issues": search(fhir, "DetectedIssue", patient=f"Patient/{pid}"),
                "messages": search(fhir, "Communication", subject=f"Patient/{pid}"),
                "goals": (
                    _goal(fhir, this_week[p.name]) if p.in_weekly else None,
                    _goal(fhir, plan or this_week[p.name]),
                ),
            }
        return out


@pytest.mark.parametrize("path", PATHS, ids=[f"{p.name}->{p.rule}" for p in PATHS])
def test_red_flag_path(walked: dict[str, dict[str, Any]], path: Path) -> None:
    got = walked[path.name]
    pid, plan = got["pid"], got["plan"]

    # On hold (emergency, urgent) or not harder (review).
    if path.urgency in ("emergency", "urgent"):
        assert plan["status"] == "on-hold"
        assert plan["category"][0]["coding"][0]["code"] == codes.MODE_SAFETY_HOLD
        kinds = {c["code"] for a in plan["activity"] for c in a["detail"]["code"]["coding"]}
        assert kinds == {codes.ACTIVITY_KIND_SAFETY_MESSAGE}
    else:
        assert plan["status"] == "active"
    before_goal, goal = got["goals"]
    if before_goal is not None:
        assert goal <= before_goal

    # A Flag and a DetectedIssue naming the rule, tagged safety-alert.
    (flag,) = [f for f in got["flags"] if _rule_of(f) == path.rule]
    (issue,) = [i for i in got["issues"] if _rule_of(i) == path.rule]
    assert TAG in flag["meta"]["tag"] and TAG in issue["meta"]["tag"]
    assert flag["status"] == "active" and flag["subject"]["reference"] == f"Patient/{pid}"
    assert issue["severity"] == ("moderate" if path.urgency == "review" else "high")
    # ... citing the answer: the response, and the red-flag code its item carries.
    (evidence,) = issue["evidence"]
    cited = {d["reference"] for d in evidence["detail"]}
    assert got["response"] in cited
    if (path.baseline or path.extra) and path.weekly:
        assert got["baseline"] in cited
    cited_codes = {c["coding"][0]["code"] for c in evidence["code"]}
    assert {*path.baseline.values(), *path.weekly.values(), *path.extra_codes} <= cited_codes
    assert all(c["coding"][0]["system"] == codes.RED_FLAG for c in evidence["code"])

    # A Communication to the responsible clinician about the Flag, priority from urgency.
    (message,) = [
        m for m in got["messages"] if {"reference": f"Flag/{flag['id']}"} in m.get("about", [])
    ]
    assert message["recipient"] == [{"reference": f"PractitionerRole/{pid}-physio"}]
    assert message["priority"] == PRIORITY[path.urgency]
    assert TAG in message["meta"]["tag"]
    assert {"reference": f"DetectedIssue/{issue['id']}"} in message["about"]

    # The patient's safety message, in English and Danish.
    kind = "review" if path.urgency == "review" else path.urgency
    texts = dict(getattr(RULES.patient_messages, kind))
    (safety,) = [
        a["detail"]
        for a in plan["activity"]
        if {"system": codes.PLAN_ENGINE_ACTIVITY, "code": codes.ACTIVITY_KIND_SAFETY_MESSAGE}
        in a["detail"]["code"]["coding"]
    ]
    translations = {
        parts["lang"]: parts["content"]
        for ext in safety["_description"]["extension"]
        for parts in [
            {p["url"]: next(v for k, v in p.items() if k != "url") for p in ext["extension"]}
        ]
    }
    assert {"en": safety["description"], **translations} == texts
