"""profiles.check_questionnaire_response: a response against the Questionnaire it answers.

Each rule of questionnaire.html / questionnaireresponse.html has its cases here, named after
the rule; the programme's seven Questionnaires accept correct responses.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

import mappings
from fhir_server.formats.fhir_json import FhirDecimal
from mappings.questionnaire_content import walk_items
from profiles import check_questionnaire_response
from tests.mappings.qr_builder import build_response

Q = "http://example.org/fhir/Questionnaire/rules"
MIN = "http://hl7.org/fhir/StructureDefinition/minValue"
MAX = "http://hl7.org/fhir/StructureDefinition/maxValue"
OPTIONS_SYSTEM = "http://example.org/fhir/CodeSystem/answers"


def coding(code: str, system: str = OPTIONS_SYSTEM) -> dict[str, str]:
    return {"system": system, "code": code}


def question(link: str, kind: str, **more: Any) -> dict[str, Any]:
    return {"linkId": link, "text": f"question {link}", "type": kind, **more}


def questionnaire(*items: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Questionnaire", "url": Q, "status": "active", "item": list(items)}


def response(*items: dict[str, Any], status: str = "completed") -> dict[str, Any]:
    return {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": Q,
        "status": status,
        "item": list(items),
    }


def answered(link: str, *values: dict[str, Any]) -> dict[str, Any]:
    return {"linkId": link, "answer": list(values)}


def rules(qr: dict[str, Any], q: dict[str, Any]) -> list[tuple[str, str]]:
    return [(i.rule, i.expression[0]) for i in check_questionnaire_response(qr, q)]


# -- answer types: every item type with a fitting and a wrong value -------------------------

FITTING = [
    ("boolean", {"valueBoolean": True}),
    ("decimal", {"valueDecimal": 1.5}),
    ("integer", {"valueInteger": 3}),
    ("date", {"valueDate": "2026-03-01"}),
    ("dateTime", {"valueDateTime": "2026-03-01T10:00:00+01:00"}),
    ("dateTime", {"valueDate": "2026-03-01"}),
    ("time", {"valueTime": "10:30:00"}),
    ("string", {"valueString": "some words"}),
    ("text", {"valueString": "several\nlines"}),
    ("url", {"valueUri": "https://example.org/x"}),
    ("attachment", {"valueAttachment": {"contentType": "text/plain", "data": "aGk="}}),
    ("reference", {"valueReference": {"reference": "Patient/p-1"}}),
    ("quantity", {"valueQuantity": {"value": 70, "system": "http://unitsofmeasure.org"}}),
]

WRONG = [
    ("boolean", {"valueString": "yes"}),
    ("decimal", {"valueInteger": 2}),
    ("integer", {"valueDecimal": 2.5}),
    ("integer", {"valueString": "3"}),
    ("date", {"valueDateTime": "2026-03-01T10:00:00Z"}),
    ("dateTime", {"valueTime": "10:00:00"}),
    ("time", {"valueString": "10:30"}),
    ("string", {"valueBoolean": False}),
    ("text", {"valueInteger": 1}),
    ("url", {"valueString": "https://example.org"}),
    ("attachment", {"valueString": "a file"}),
    ("reference", {"valueString": "Patient/p-1"}),
    ("quantity", {"valueDecimal": 70.0}),
]


@pytest.mark.parametrize(("kind", "value"), FITTING, ids=lambda v: str(v)[:30])
def test_answer_type_fitting_the_item_type_is_accepted(kind: str, value: dict[str, Any]) -> None:
    q = questionnaire(question("a", kind))
    assert rules(response(answered("a", value)), q) == []


@pytest.mark.parametrize(("kind", "value"), WRONG, ids=lambda v: str(v)[:30])
def test_answer_type_not_fitting_the_item_type_is_an_error(
    kind: str, value: dict[str, Any]
) -> None:
    q = questionnaire(question("x", kind), question("a", kind))
    qr = response(answered("x", FITTING_BY_KIND[kind]), answered("a", value))
    assert rules(qr, q) == [("qr-answer-type", "QuestionnaireResponse.item[1].answer[0]")]


FITTING_BY_KIND = {kind: value for kind, value in FITTING}


# -- choice and open-choice ------------------------------------------------------------------

CHOICE = question(
    "c",
    "choice",
    answerOption=[{"valueCoding": coding("yes")}, {"valueCoding": coding("no")}],
)
INTEGER_CHOICE = question("n", "choice", answerOption=[{"valueInteger": 1}, {"valueInteger": 2}])
OPEN = question("o", "open-choice", answerOption=[{"valueCoding": coding("walk")}])
VALUE_SET = question(
    "g",
    "choice",
    answerValueSet="http://hl7.org/fhir/ValueSet/administrative-gender",
)


@pytest.mark.parametrize(
    ("item", "value", "expected"),
    [
        (CHOICE, {"valueCoding": coding("yes")}, []),
        (CHOICE, {"valueCoding": {**coding("no"), "display": "No"}}, []),
        (CHOICE, {"valueCoding": coding("maybe")}, ["qr-answer-option"]),
        (CHOICE, {"valueCoding": coding("yes", "http://other.org")}, ["qr-answer-option"]),
        (CHOICE, {"valueString": "yes"}, ["qr-answer-type"]),
        (INTEGER_CHOICE, {"valueInteger": 2}, []),
        (INTEGER_CHOICE, {"valueInteger": 3}, ["qr-answer-option"]),
        (INTEGER_CHOICE, {"valueCoding": coding("2")}, ["qr-answer-type"]),
        (OPEN, {"valueCoding": coding("walk")}, []),
        (OPEN, {"valueString": "swimming"}, []),
        (OPEN, {"valueInteger": 1}, ["qr-answer-type"]),
        (
            VALUE_SET,
            {"valueCoding": coding("female", "http://hl7.org/fhir/administrative-gender")},
            [],
        ),
        (
            VALUE_SET,
            {"valueCoding": coding("woman", "http://hl7.org/fhir/administrative-gender")},
            ["qr-answer-valueset"],
        ),
    ],
    ids=lambda v: str(v)[:40],
)
def test_choice_answers_come_from_the_options_or_the_value_set(
    item: dict[str, Any], value: dict[str, Any], expected: list[str]
) -> None:
    q = questionnaire(item)
    found = check_questionnaire_response(response(answered(item["linkId"], value)), q)
    assert [i.rule for i in found] == expected
    assert all(i.expression == ("QuestionnaireResponse.item[0].answer[0]",) for i in found)


def test_open_choice_coding_outside_the_list_is_a_warning_only() -> None:
    found = check_questionnaire_response(
        response(answered("o", {"valueCoding": coding("run")})), questionnaire(OPEN)
    )
    assert [(i.severity, i.rule) for i in found] == [("warning", "qr-answer-option")]


def test_value_set_that_cannot_be_enumerated_is_not_checked() -> None:
    item = question("s", "choice", answerValueSet="http://snomed.info/sct?fhir_vs")
    qr = response(answered("s", {"valueCoding": coding("279039007", "http://snomed.info/sct")}))
    assert rules(qr, questionnaire(item)) == []


# -- limits -----------------------------------------------------------------------------------

BOUNDED = question(
    "nrs",
    "integer",
    extension=[{"url": MIN, "valueInteger": 0}, {"url": MAX, "valueInteger": 10}],
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, []), (10, []), (-1, ["qr-min-value"]), (11, ["qr-max-value"])],
)
def test_min_value_and_max_value_bound_numeric_answers(value: int, expected: list[str]) -> None:
    qr = response(answered("nrs", {"valueInteger": value}))
    assert [r for r, _ in rules(qr, questionnaire(BOUNDED))] == expected


DECIMAL_BOUNDED = question(
    "temp",
    "decimal",
    extension=[{"url": MIN, "valueDecimal": 0.1}, {"url": MAX, "valueDecimal": 2.5}],
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0.10", []), ("2.50", []), ("0.09", ["qr-min-value"]), ("2.500001", ["qr-max-value"])],
)
def test_decimal_answers_kept_exact_compare_with_float_bounds(
    text: str, expected: list[str]
) -> None:
    # A decimal keeps its written precision (FhirDecimal) while the bound is a float:
    # compared as the decimals written, never mixed (datatypes.html#decimal).
    qr = response(answered("temp", {"valueDecimal": FhirDecimal(text)}))
    assert [r for r, _ in rules(qr, questionnaire(DECIMAL_BOUNDED))] == expected


@pytest.mark.parametrize(
    ("operator", "answer", "enabled"),
    [("=", "0.10", True), ("=", "0.11", False), (">", "0.11", True), ("<=", "0.100", True)],
)
def test_enable_when_compares_exact_decimals_with_float_conditions(
    operator: str, answer: str, enabled: bool
) -> None:
    condition = {"question": "t", "operator": operator, "answerDecimal": 0.1}
    assert enabled_by(condition, "decimal", {"valueDecimal": FhirDecimal(answer)}) is enabled


@pytest.mark.parametrize(("text", "expected"), [("abcde", []), ("abcdef", ["qr-max-length"])])
def test_max_length_bounds_string_answers(text: str, expected: list[str]) -> None:
    q = questionnaire(question("s", "string", maxLength=5))
    assert [r for r, _ in rules(response(answered("s", {"valueString": text})), q)] == expected


# -- linkIds, order, repeats, nesting ----------------------------------------------------------

GROUP = {
    "linkId": "g",
    "type": "group",
    "item": [question("g1", "integer"), question("g2", "integer")],
}


def test_unknown_link_id_is_an_error_at_its_item() -> None:
    qr = response(answered("nope", {"valueInteger": 1}))
    assert rules(qr, questionnaire(question("a", "integer"))) == [
        ("qr-linkid-unknown", "QuestionnaireResponse.item[0]")
    ]


def test_link_id_at_the_wrong_level_is_an_error() -> None:
    qr = response(answered("g1", {"valueInteger": 1}))
    assert rules(qr, questionnaire(GROUP)) == [("qr-linkid-level", "QuestionnaireResponse.item[0]")]


def test_items_follow_the_questionnaire_order() -> None:
    q = questionnaire(question("a", "integer"), question("b", "integer"))
    qr = response(answered("b", {"valueInteger": 1}), answered("a", {"valueInteger": 2}))
    assert rules(qr, q) == [("qr-order", "QuestionnaireResponse.item[1]")]


@pytest.mark.parametrize(
    ("repeats", "expected"), [(True, []), (False, ["qr-repeats"]), (None, ["qr-repeats"])]
)
def test_several_answers_need_repeats(repeats: bool | None, expected: list[str]) -> None:
    item = (
        question("r", "integer") if repeats is None else question("r", "integer", repeats=repeats)
    )
    qr = response(answered("r", {"valueInteger": 1}, {"valueInteger": 2}))
    assert [r for r, _ in rules(qr, questionnaire(item))] == expected
    if expected:
        assert rules(qr, questionnaire(item))[0][1] == "QuestionnaireResponse.item[0].answer[1]"


def test_a_question_occurs_once_its_answers_carry_the_repetitions() -> None:
    item = question("r", "integer", repeats=True)
    qr = response(answered("r", {"valueInteger": 1}), answered("r", {"valueInteger": 2}))
    assert rules(qr, questionnaire(item)) == [("qr-item-repeats", "QuestionnaireResponse.item[1]")]


def test_a_repeating_group_may_occur_several_times() -> None:
    group = {**GROUP, "repeats": True}
    once = {"linkId": "g", "item": [answered("g1", {"valueInteger": 1})]}
    assert rules(response(once, copy.deepcopy(once)), questionnaire(group)) == []
    assert rules(response(once, copy.deepcopy(once)), questionnaire(GROUP)) == [
        ("qr-item-repeats", "QuestionnaireResponse.item[1]")
    ]


def test_group_children_nest_under_item() -> None:
    qr = response({"linkId": "g", "item": [answered("g2", {"valueInteger": 4})]})
    assert rules(qr, questionnaire(GROUP)) == []


def test_group_answered_directly_is_an_error() -> None:
    qr = response({"linkId": "g", "answer": [{"valueInteger": 4}]})
    assert rules(
        qr,
        questionnaire(GROUP),
    ) == [("qr-group-answer", "QuestionnaireResponse.item[0].answer[0]")]


def test_question_children_nest_under_the_answer() -> None:
    parent = question("p", "boolean", item=[question("why", "string")])
    good = response(
        {
            "linkId": "p",
            "answer": [{"valueBoolean": True, "item": [answered("why", {"valueString": "x"})]}],
        }
    )
    assert rules(good, questionnaire(parent)) == []
    bad = response(
        {
            "linkId": "p",
            "answer": [{"valueBoolean": True}],
            "item": [answered("why", {"valueString": "x"})],
        }
    )
    assert rules(bad, questionnaire(parent)) == [
        ("qr-nesting", "QuestionnaireResponse.item[0].item[0]")
    ]


def test_display_items_take_no_answers() -> None:
    q = questionnaire({"linkId": "d", "type": "display", "text": "read this"})
    assert rules(response(answered("d", {"valueString": "ok"})), q) == [
        ("qr-display-answer", "QuestionnaireResponse.item[0]")
    ]


# -- required and status -------------------------------------------------------------------------


REQUIRED = questionnaire(question("a", "integer", required=True), question("b", "integer"))


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("completed", [("qr-required", "QuestionnaireResponse")]),
        ("amended", [("qr-required", "QuestionnaireResponse")]),
        ("in-progress", []),
        ("stopped", []),
        ("entered-in-error", []),
    ],
)
def test_required_items_are_needed_when_the_response_is_complete(
    status: str, expected: list[tuple[str, str]]
) -> None:
    qr = response(answered("b", {"valueInteger": 1}), status=status)
    assert rules(qr, REQUIRED) == expected


def test_required_question_present_without_answer_is_an_error() -> None:
    qr = response({"linkId": "a", "item": []}, answered("b", {"valueInteger": 1}))
    qr["item"][0] = {"linkId": "a"}
    assert rules(qr, REQUIRED) == [("qr-required", "QuestionnaireResponse.item[0]")]


def test_required_child_counts_only_when_its_parent_group_is_present() -> None:
    group = {
        "linkId": "g",
        "type": "group",
        "item": [question("g1", "integer", required=True), question("g2", "integer")],
    }
    q = questionnaire(group, question("other", "integer"))
    assert rules(response(answered("other", {"valueInteger": 1})), q) == []
    qr = response({"linkId": "g", "item": [answered("g2", {"valueInteger": 1})]})
    assert rules(qr, q) == [("qr-required", "QuestionnaireResponse.item[0]")]


def test_required_group_without_items() -> None:
    q = questionnaire({**GROUP, "required": True})
    assert rules(response(), q) == [("qr-required", "QuestionnaireResponse")]


def test_required_child_of_an_answered_question() -> None:
    parent = question("p", "boolean", item=[question("why", "string", required=True)])
    qr = response(answered("p", {"valueBoolean": True}))
    assert rules(qr, questionnaire(parent)) == [
        ("qr-required", "QuestionnaireResponse.item[0].answer[0]")
    ]


# -- enableWhen ---------------------------------------------------------------------------------


def gated(
    condition: dict[str, Any], *more: dict[str, Any], behavior: str | None = None
) -> dict[str, Any]:
    extra = {"enableBehavior": behavior} if behavior else {}
    return question("d", "string", required=True, enableWhen=[condition, *more], **extra)


def enabled_by(
    condition: dict[str, Any], trigger_kind: str, trigger: dict[str, Any] | None
) -> bool:
    """Is item 'd' enabled, judged by whether answering it is accepted?"""
    q = questionnaire(question("t", trigger_kind, repeats=True), gated(condition))
    items = [answered("t", trigger)] if trigger is not None else []
    found = rules(response(*items, answered("d", {"valueString": "x"})), q)
    if found == []:
        return True
    assert found == [("qr-disabled-answered", f"QuestionnaireResponse.item[{len(items)}]")]
    return False


@pytest.mark.parametrize(
    ("operator", "expected_value", "kind", "answer", "enabled"),
    [
        ("exists", {"answerBoolean": True}, "integer", {"valueInteger": 0}, True),
        ("exists", {"answerBoolean": True}, "integer", None, False),
        ("exists", {"answerBoolean": False}, "integer", None, True),
        ("exists", {"answerBoolean": False}, "integer", {"valueInteger": 0}, False),
        ("=", {"answerBoolean": True}, "boolean", {"valueBoolean": True}, True),
        ("=", {"answerBoolean": True}, "boolean", {"valueBoolean": False}, False),
        ("=", {"answerBoolean": True}, "boolean", None, False),
        ("=", {"answerCoding": coding("yes")}, "coding", {"valueCoding": coding("yes")}, True),
        ("=", {"answerCoding": coding("yes")}, "coding", {"valueCoding": coding("no")}, False),
        ("=", {"answerCoding": {"code": "yes"}}, "coding", {"valueCoding": coding("yes")}, True),
        ("=", {"answerString": "a"}, "string", {"valueString": "a"}, True),
        ("=", {"answerDecimal": 2.0}, "integer", {"valueInteger": 2}, True),
        ("!=", {"answerInteger": 5}, "integer", {"valueInteger": 4}, True),
        ("!=", {"answerInteger": 5}, "integer", {"valueInteger": 5}, False),
        ("!=", {"answerInteger": 5}, "integer", None, True),
        (">", {"answerInteger": 5}, "integer", {"valueInteger": 6}, True),
        (">", {"answerInteger": 5}, "integer", {"valueInteger": 5}, False),
        (">", {"answerInteger": 5}, "integer", None, False),
        ("<", {"answerInteger": 5}, "integer", {"valueInteger": 4}, True),
        ("<", {"answerInteger": 5}, "integer", {"valueInteger": 5}, False),
        (">=", {"answerInteger": 5}, "integer", {"valueInteger": 5}, True),
        (">=", {"answerInteger": 5}, "integer", {"valueInteger": 4}, False),
        ("<=", {"answerInteger": 5}, "integer", {"valueInteger": 5}, True),
        ("<=", {"answerInteger": 5}, "integer", {"valueInteger": 6}, False),
        (">", {"answerDate": "2026-01-01"}, "date", {"valueDate": "2026-02-01"}, True),
        (">", {"answerDate": "2026-01-01"}, "date", {"valueDate": "2025-12-31"}, False),
        (">", {"answerDate": "2026-01-01"}, "date", {"valueDate": "2027"}, False),
        (
            ">",
            {"answerQuantity": {"value": 60, "system": "http://unitsofmeasure.org", "code": "kg"}},
            "quantity",
            {"valueQuantity": {"value": 70, "system": "http://unitsofmeasure.org", "code": "kg"}},
            True,
        ),
    ],
    ids=lambda v: str(v)[:25],
)
def test_enable_when_operators(
    operator: str,
    expected_value: dict[str, Any],
    kind: str,
    answer: dict[str, Any] | None,
    enabled: bool,
) -> None:
    item_kind = {"coding": "open-choice"}.get(kind, kind)
    condition = {"question": "t", "operator": operator, **expected_value}
    assert enabled_by(condition, item_kind, answer) is enabled


@pytest.mark.parametrize(
    ("behavior", "answer", "enabled"),
    [("any", 1, True), ("any", 7, False), ("all", 1, False), ("all", 3, True), (None, 1, False)],
)
def test_enable_behavior_any_and_all(behavior: str | None, answer: int, enabled: bool) -> None:
    condition_a = {"question": "t", "operator": "<", "answerInteger": 5}
    condition_b = {"question": "t", "operator": ">", "answerInteger": 2}
    if behavior == "any":
        condition_b = {"question": "t", "operator": "=", "answerInteger": 9}
    q = questionnaire(question("t", "integer"), gated(condition_a, condition_b, behavior=behavior))
    found = rules(
        response(answered("t", {"valueInteger": answer}), answered("d", {"valueString": "x"})), q
    )
    assert (found == []) is enabled


def test_disabled_required_item_may_be_missing() -> None:
    q = questionnaire(
        question("t", "boolean"), gated({"question": "t", "operator": "=", "answerBoolean": True})
    )
    assert rules(response(answered("t", {"valueBoolean": False})), q) == []
    assert rules(response(answered("t", {"valueBoolean": True})), q) == [
        ("qr-required", "QuestionnaireResponse")
    ]


def test_answers_of_a_disabled_question_count_as_absent() -> None:
    first = question("t", "boolean")
    second = question(
        "u", "boolean", enableWhen=[{"question": "t", "operator": "=", "answerBoolean": True}]
    )
    third = question(
        "v", "string", enableWhen=[{"question": "u", "operator": "exists", "answerBoolean": True}]
    )
    q = questionnaire(first, second, third)
    qr = response(
        answered("t", {"valueBoolean": False}),
        answered("u", {"valueBoolean": True}),
        answered("v", {"valueString": "x"}),
    )
    assert rules(qr, q) == [
        ("qr-disabled-answered", "QuestionnaireResponse.item[1]"),
        ("qr-disabled-answered", "QuestionnaireResponse.item[2]"),
    ]


def test_enable_when_looks_at_the_nearest_occurrence_in_a_repeating_group() -> None:
    group = {
        "linkId": "visit",
        "type": "group",
        "repeats": True,
        "item": [
            question("hurt", "boolean"),
            question(
                "where",
                "string",
                enableWhen=[{"question": "hurt", "operator": "=", "answerBoolean": True}],
            ),
        ],
    }
    q = questionnaire(group)
    yes = {
        "linkId": "visit",
        "item": [
            answered("hurt", {"valueBoolean": True}),
            answered("where", {"valueString": "back"}),
        ],
    }
    no = {
        "linkId": "visit",
        "item": [
            answered("hurt", {"valueBoolean": False}),
            answered("where", {"valueString": "knee"}),
        ],
    }
    assert rules(response(yes, no), q) == [
        ("qr-disabled-answered", "QuestionnaireResponse.item[1].item[1]")
    ]


def test_conditions_that_depend_on_each_other_do_not_loop() -> None:
    a = question(
        "a", "boolean", enableWhen=[{"question": "b", "operator": "exists", "answerBoolean": True}]
    )
    b = question(
        "b", "boolean", enableWhen=[{"question": "a", "operator": "exists", "answerBoolean": True}]
    )
    qr = response(answered("a", {"valueBoolean": True}), answered("b", {"valueBoolean": True}))
    assert rules(qr, questionnaire(a, b)) == []


# -- the programme's Questionnaires ------------------------------------------------------------------


def complete_answers(q: dict[str, Any], choose: int = 0) -> dict[str, Any]:
    """An answer for every question that is always enabled, within its bounds."""
    answers: dict[str, Any] = {}
    for item in walk_items(q["item"]):
        kind = item["type"]
        if kind in ("group", "display") or item.get("enableWhen"):
            continue
        if kind == "choice":
            answers[item["linkId"]] = item["answerOption"][choose]["valueCoding"]["code"]
        elif kind == "integer":
            low = [e["valueInteger"] for e in item.get("extension", []) if e["url"] == MIN]
            answers[item["linkId"]] = low[0] if low else 1
        elif kind == "boolean":
            answers[item["linkId"]] = False
        elif kind == "decimal":
            answers[item["linkId"]] = 70.5
        else:
            answers[item["linkId"]] = "text"
    return answers


PROGRAMME = sorted(q["id"] for q in mappings.load_questionnaires())


def answer_for(item: dict[str, Any], choose: int) -> Any:
    kind = item["type"]
    if kind == "choice":
        return item["answerOption"][choose]["valueCoding"]["code"]
    if kind == "integer":
        low = [e["valueInteger"] for e in item.get("extension", []) if e["url"] == MIN]
        return low[0] if low else 1
    return {"boolean": False, "decimal": 70.5}.get(kind, "text")


def filled_in(qid: str, choose: int) -> tuple[dict[str, Any], list[Any]]:
    """Answer like a patient: the questions always shown, then each question that the
    answers so far enable and require, until nothing more is asked."""
    q = mappings.questionnaire(f"http://selfback.example.org/fhir/Questionnaire/{qid}")
    assert q is not None
    by_id = {i["linkId"]: i for i in walk_items(q["item"])}
    answers = {
        link: answer_for(item, choose)
        for link, item in by_id.items()
        if item["type"] not in ("group", "display") and not item.get("enableWhen")
    }
    for _ in range(5):
        found = check_questionnaire_response(build_response(qid, answers), q)
        missing = [
            i.diagnostics.split("'")[1]
            for i in found
            if i.rule == "qr-required" and i.diagnostics.startswith("Item '")
        ]
        if not missing:
            return build_response(qid, answers), found
        answers.update({link: answer_for(by_id[link], choose) for link in missing})
    return build_response(qid, answers), found


@pytest.mark.parametrize("choose", [0, -1], ids=["first-options", "last-options"])
@pytest.mark.parametrize("qid", PROGRAMME)
def test_programme_questionnaires_accept_correct_responses(qid: str, choose: int) -> None:
    qr, found = filled_in(qid, choose)
    assert found == [], [(i.rule, i.expression, i.diagnostics) for i in found]
    assert qr["item"]


@pytest.mark.parametrize("qid", PROGRAMME)
def test_programme_questionnaires_accept_an_in_progress_response_with_one_answer(qid: str) -> None:
    q = next(q for q in mappings.load_questionnaires() if q["id"] == qid)
    first = next(
        i
        for i in walk_items(q["item"])
        if i["type"] not in ("group", "display") and not i.get("enableWhen")
    )
    answers = {first["linkId"]: complete_answers(q)[first["linkId"]]}
    qr = build_response(qid, answers, status="in-progress")
    assert check_questionnaire_response(qr, q) == []


def test_baseline_job_demand_is_asked_only_of_people_in_work() -> None:
    q = mappings.questionnaire("http://selfback.example.org/fhir/Questionnaire/selfback-baseline")
    assert q is not None
    employment = next(i for i in walk_items(q["item"]) if i["linkId"] == "employment")
    codes = [o["valueCoding"]["code"] for o in employment["answerOption"]]
    answers = complete_answers(q)
    answers.pop("psfs-1-activity", None)
    not_working = next(c for c in codes if c not in ("employed", "self-employed", "on-sick-leave"))
    answers["employment"] = not_working
    assert check_questionnaire_response(build_response("selfback-baseline", answers), q) == []
    answers["job-physical-demand"] = next(
        i for i in walk_items(q["item"]) if i["linkId"] == "job-physical-demand"
    )["answerOption"][0]["valueCoding"]["code"]
    found = check_questionnaire_response(build_response("selfback-baseline", answers), q)
    assert [i.rule for i in found] == ["qr-disabled-answered"]
    answers["employment"] = "employed"
    assert check_questionnaire_response(build_response("selfback-baseline", answers), q) == []
    answers.pop("job-physical-demand")
    found = check_questionnaire_response(build_response("selfback-baseline", answers), q)
    assert [i.rule for i in found] == ["qr-required"]


def test_the_inputs_are_not_changed() -> None:
    q = mappings.questionnaire("http://selfback.example.org/fhir/Questionnaire/selfback-sleep")
    assert q is not None
    qr = build_response("selfback-sleep", complete_answers(q))
    before = (copy.deepcopy(qr), copy.deepcopy(q))
    check_questionnaire_response(qr, q)
    assert (qr, q) == before
