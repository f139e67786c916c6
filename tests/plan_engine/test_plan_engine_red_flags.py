"""Red-flag rules, table-driven: each case is named after the guideline rule it checks
(NICE CKS Back pain - low / Sciatica red flags, NICE NG59 1.1.1, the Danish national
clinical guideline's warning signs; plan_engine/config/rules.json ``safety.red_flag_rules``).

emergency (possible cauda equina syndrome) and urgent (possible cancer, infection,
fracture) put the plan on hold; review keeps it from getting harder. Every finding gives a
Flag, a DetectedIssue citing the answers and a Communication to the responsible clinician,
tagged safety-alert, with the priority the alert Task takes (stat / asap / routine).
"""

from __future__ import annotations

from dataclasses import fields, replace
from datetime import timedelta

import pytest
from pe_personas import AS_OF, baseline, standard

from plan_engine import RedFlagAnswers, codes, decide_plan
from plan_engine.config import load_rules
from plan_engine.safety import fired_rules

SOURCE = "QuestionnaireResponse/rf"
BASELINE_SOURCE = "QuestionnaireResponse/baseline-1"
ANSWERS = tuple(f.name for f in fields(RedFlagAnswers) if f.name not in ("answered_on", "source"))


def screen(**yes: bool) -> RedFlagAnswers:
    return RedFlagAnswers(answered_on=AS_OF - timedelta(days=1), source=SOURCE, **yes)


def decide(*screens: RedFlagAnswers, history: frozenset[str] = frozenset(), **changes):  # type: ignore[no-untyped-def]
    snapshot = standard(
        red_flags=screens,
        baseline=baseline(red_flag_history=history, source=BASELINE_SOURCE, **changes),
    )
    return decide_plan(snapshot, AS_OF)


# (guideline rule, answers given in the screen, standing answers from baseline,
#  expected finding, urgency)
CASES = [
    ("CKS cauda equina: bladder or bowel dysfunction", {"bladder_bowel_dysfunction"}, set(),
     "RF-BLADDER-BOWEL", "emergency"),
    ("CKS cauda equina: saddle anaesthesia", {"saddle_numbness"}, set(),
     "RF-SADDLE-NUMBNESS", "emergency"),
    ("CKS cauda equina: sexual dysfunction", {"sexual_dysfunction"}, set(),
     "RF-SEXUAL-DYSFUNCTION", "emergency"),
    ("CKS cauda equina: progressive neurological deficit", {"progressive_leg_weakness"}, set(),
     "RF-PROGRESSIVE-WEAKNESS", "emergency"),
    ("CKS sciatica: bilateral or alternating leg symptoms", {"bilateral_leg_symptoms"}, set(),
     "RF-BILATERAL-LEG-SYMPTOMS", "urgent"),
    ("CKS infection: fever, alone", {"fever"}, set(), "RF-FEVER", "urgent"),
    ("CKS cancer: unexplained weight loss, alone", {"unexplained_weight_loss"}, set(),
     "RF-WEIGHT-LOSS", "urgent"),
    ("CKS fracture: significant trauma", {"significant_trauma"}, set(),
     "RF-SIGNIFICANT-TRAUMA", "urgent"),
    ("CKS cancer: past history of cancer and new pain, same screen",
     {"cancer_history", "new_pain"}, set(), "RF-CANCER-HISTORY-NEW-PAIN", "urgent"),
    ("CKS cancer: past history of cancer at baseline, new pain this week", {"new_pain"},
     {"cancer_history"}, "RF-CANCER-HISTORY-NEW-PAIN", "urgent"),
    ("CKS cancer: past history of cancer and night pain", {"night_pain"}, {"cancer_history"},
     "RF-CANCER-HISTORY-NIGHT-PAIN", "urgent"),
    ("CKS cancer: past history of cancer and thoracic pain", {"thoracic_pain"},
     {"cancer_history"}, "RF-CANCER-HISTORY-THORACIC-PAIN", "urgent"),
    ("CKS infection/fracture: corticosteroids or immunosuppression and new pain", {"new_pain"},
     {"steroid_or_immunosuppression"}, "RF-IMMUNOSUPPRESSION-NEW-PAIN", "urgent"),
    ("CKS infection: immunosuppression and non-mechanical pain", {"night_pain"},
     {"steroid_or_immunosuppression"}, "RF-IMMUNOSUPPRESSION-NIGHT-PAIN", "urgent"),
    ("CKS cancer: onset under 20 or over 55 and night pain", {"night_pain"},
     {"onset_age_outside_20_55"}, "RF-ONSET-AGE-NIGHT-PAIN", "urgent"),
    ("CKS cancer/fracture: onset under 20 or over 55 and thoracic pain", {"thoracic_pain"},
     {"onset_age_outside_20_55"}, "RF-ONSET-AGE-THORACIC-PAIN", "urgent"),
    ("self-harm item above 0", {"self_harm_thoughts"}, set(), "RF-SELF-HARM", "urgent"),
    ("CKS: new or changing pain alone, review", {"new_pain"}, set(), "REV-NEW-PAIN", "review"),
    ("CKS non-mechanical pain alone, review", {"night_pain"}, set(), "REV-NIGHT-PAIN",
     "review"),
    ("CKS thoracic pain alone, review", {"thoracic_pain"}, set(), "REV-THORACIC-PAIN",
     "review"),
    ("CKS corticosteroids or immunosuppression alone, review",
     {"steroid_or_immunosuppression"}, set(), "REV-IMMUNOSUPPRESSION", "review"),
    ("CKS past history of cancer alone, review", {"cancer_history"}, set(),
     "REV-CANCER-HISTORY", "review"),
    ("CKS onset under 20 or over 55 alone, review", {"onset_age_outside_20_55"}, set(),
     "REV-ONSET-AGE", "review"),
]  # fmt: skip

PRIORITY = {"emergency": "stat", "urgent": "asap", "review": "routine"}


@pytest.mark.parametrize(("rule", "given", "history", "finding", "urgency"), CASES,
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_red_flag_rule(
    rule: str, given: set[str], history: set[str], finding: str, urgency: str
) -> None:
    decision = decide(screen(**dict.fromkeys(given, True)), history=frozenset(history))
    assert [(f.id, f.severity) for f in decision.findings] == [(finding, urgency)], rule
    (found,) = decision.findings
    assert set(found.answers) == given | history
    if urgency == "review":
        assert decision.status == "active" and decision.mode != "safety-hold"
    else:
        assert decision.status == "on-hold" and decision.mode == "safety-hold"
        assert decision.exercises == () and decision.education == ()

    flag, issue, message = (
        decision.resources_of(t)[0] for t in ("Flag", "DetectedIssue", "Communication")
    )
    tag = {"system": codes.SECURITY_TAG, "code": codes.SAFETY_ALERT_TAG}
    assert flag["meta"]["tag"] == issue["meta"]["tag"] == message["meta"]["tag"] == [tag]
    assert {"system": codes.PLAN_RULE, "code": finding} in flag["code"]["coding"]
    assert issue["severity"] == ("moderate" if urgency == "review" else "high")
    (evidence,) = issue["evidence"]
    cited = {c["coding"][0]["code"] for c in evidence["code"]}
    assert cited == {codes.RED_FLAG_ANSWER_CODES[a] for a in given | history}
    expected_sources = {SOURCE} | ({BASELINE_SOURCE} if history else set())
    assert {d["reference"] for d in evidence["detail"]} == expected_sources
    assert message["priority"] == PRIORITY[urgency]
    assert message["recipient"] == [{"reference": "PractitionerRole/role-physio-1"}]
    assert message["about"][0]["reference"] == f"Flag/{flag['id']}"

    care_plan = decision.resources_of("CarePlan")[0]
    (safety,) = [
        a["detail"]
        for a in care_plan["activity"]
        if a["detail"]["code"]["coding"][0]["code"] == "safety-message"
    ]
    texts = dict(getattr(load_rules().patient_messages, urgency))
    assert safety["description"] == texts["en"]
    (translation,) = safety["_description"]["extension"]
    parts = {p["url"]: list(p.values())[1] for p in translation["extension"]}
    assert parts == {"lang": "da", "content": texts["da"]}


@pytest.mark.parametrize("urgency", ["emergency", "urgent"])
def test_emergency_tells_the_patient_to_call_now_urgent_same_day(urgency: str) -> None:
    texts = dict(getattr(load_rules().patient_messages, urgency))
    assert "112" in texts["da"] and "112" in texts["en"] and "999" in texts["en"]
    if urgency == "emergency":
        assert "now" in texts["en"] and "nu" in texts["da"]
    else:
        assert "today" in texts["en"] and "i dag" in texts["da"]


def test_danish_patient_gets_danish_text_and_english_translation() -> None:
    snapshot = replace(standard(red_flags=(screen(saddle_numbness=True),)), language="da")
    decision = decide_plan(snapshot, AS_OF)
    texts = dict(load_rules().patient_messages.emergency)
    assert decision.patient_message == texts["da"]
    care_plan = decision.resources_of("CarePlan")[0]
    detail = care_plan["activity"][0]["detail"]
    assert detail["_description"]["extension"][0]["extension"][1]["valueString"] == texts["en"]


@pytest.mark.parametrize("answer", ["cancer_history", "steroid_or_immunosuppression",
                                    "onset_age_outside_20_55"])  # fmt: skip
def test_a_standing_answer_is_raised_once_not_every_week(answer: str) -> None:
    """Standing history only adds to a screen; a weekly screen with every answer 'no'
    raises nothing for it (it was raised from the baseline screen)."""
    quiet = screen(**dict.fromkeys(("fever", "new_pain", "night_pain"), False))
    assert decide(quiet, history=frozenset({answer})).findings == ()


def test_cancer_in_the_comorbidity_list_counts_as_history() -> None:
    decision = decide(screen(new_pain=True), comorbidities=frozenset({"cancer"}))
    assert [f.id for f in decision.findings] == ["RF-CANCER-HISTORY-NEW-PAIN"]


def test_a_wider_rule_leaves_out_the_narrower_one_not_a_more_urgent_one() -> None:
    rules = load_rules()
    both = fired_rules(frozenset({"new_pain"}), frozenset({"cancer_history"}), rules)
    assert [r.id for r in both] == ["RF-CANCER-HISTORY-NEW-PAIN"]
    several = fired_rules(frozenset({"fever", "saddle_numbness", "night_pain"}), frozenset(),
                          rules)  # fmt: skip
    assert {r.id for r in several} == {"RF-FEVER", "RF-SADDLE-NUMBNESS", "REV-NIGHT-PAIN"}


def test_answered_no_fires_nothing() -> None:
    everything_no = screen(**dict.fromkeys(ANSWERS, False))
    assert decide(everything_no).findings == ()


def test_every_answer_has_a_rule_a_code_and_a_single_answer_finding() -> None:
    """No red-flag answer without a rule that fires on it (alone, or with the standing
    history it combines with), and no rule naming an answer the snapshot lacks."""
    rules = load_rules()
    named = {n for r in rules.safety.red_flag_rules for n in r.all_of}
    assert named == set(ANSWERS) == set(codes.RED_FLAG_ANSWER_CODES)
    for answer in ANSWERS:
        assert fired_rules(frozenset({answer}), frozenset(), rules), answer
    for rule in rules.safety.red_flag_rules:
        assert rule.source and rule.text and rule.text_da, rule.id
        assert rule.urgency in ("emergency", "urgent", "review")
