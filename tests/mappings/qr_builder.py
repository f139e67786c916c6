"""Builds QuestionnaireResponses from {linkId: value} against the packaged Questionnaires."""

from datetime import UTC, datetime

from mappings import questionnaire
from mappings.questionnaire_content import walk_items
from terminology import ordinal_value

BASE = "http://selfback.example.org/fhir/Questionnaire"
AS_OF = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def _answer(item: dict, value) -> dict:
    if item["type"] == "choice":
        for option in item["answerOption"]:
            coding = option["valueCoding"]
            if value in (coding["code"], ordinal_value(option)):
                return {"valueCoding": {k: coding[k] for k in ("system", "code", "display")}}
        raise AssertionError(f"{item['linkId']}: no option {value!r}")
    key = {
        "integer": "valueInteger",
        "boolean": "valueBoolean",
        "string": "valueString",
        "decimal": "valueDecimal",
    }
    return {key[item["type"]]: value}


def build_response(qid: str, answers: dict, status: str = "completed", rid: str = "qr-1") -> dict:
    """A QuestionnaireResponse nested like the Questionnaire, answering the given linkIds.

    Choice answers may be given as an ordinal value or an answer code.
    """
    q = questionnaire(f"{BASE}/{qid}")
    assert q is not None
    by_id = {it["linkId"]: it for it in walk_items(q["item"])}
    assert set(answers) <= set(by_id), set(answers) - set(by_id)

    def convert(items: list[dict]) -> list[dict]:
        out = []
        for it in items:
            if it["type"] == "group":
                children = convert(it.get("item", []))
                if children:
                    out.append({"linkId": it["linkId"], "item": children})
            elif it["linkId"] in answers:
                out.append({"linkId": it["linkId"], "answer": [_answer(it, answers[it["linkId"]])]})
        return out

    return {
        "resourceType": "QuestionnaireResponse",
        "id": rid,
        "questionnaire": f"{q['url']}|{q['version']}",
        "status": status,
        "subject": {"reference": "Patient/p-1"},
        "authored": "2026-11-20T09:30:00+01:00",
        "source": {"reference": "Patient/p-1"},
        "item": convert(q["item"]),
    }
