"""Scores from a QuestionnaireResponse, by the rules in ``mappings/data/scoring.json``.

Every instrument of the programme is scored here (RMDQ, NRS, PSEQ/PSEQ-2, FABQ-PA, BIPQ, PCS and
subscales, PSS-10/PSS-4, PHQ-8/PHQ-2, STarT Back, EQ-5D-5L profile and VAS, Saltin-Grimby, WAI,
PSFS). Items, reverse-scored items, missing-item rules and cut-offs are configuration with a
cited source; this module only applies them. Pure: no clock, no I/O beyond the packaged files.
"""

from collections.abc import Mapping
from datetime import datetime
from fractions import Fraction
from functools import cache
from math import floor
from typing import Any

from mappings._packaged import packaged_json
from mappings.questionnaire_content import answer_ordinals
from mappings.score import Score, ScoreCoding, ScoringError, ValueKind
from mappings.score_observations import score_observations
from terminology import lookup, ordinal_value

__all__ = ["Score", "ScoringError", "score_observations", "score_response", "scoring_config"]

SCORABLE_STATUSES = frozenset({"completed", "amended"})


@cache
def scoring_config() -> Mapping[str, Any]:
    """The packaged scoring configuration (shared; do not change it)."""
    config: Mapping[str, Any] = packaged_json("data", "scoring.json")
    return config


# ------------------------------------------------------------------ reading answers


def _walk_response_items(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for it in items:
        out.append(it)
        out.extend(_walk_response_items(it.get("item", [])))
        for answer in it.get("answer", []):
            out.extend(_walk_response_items(answer.get("item", [])))
    return out


def answers_by_link_id(response: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """linkId -> answers, over all nesting levels of a QuestionnaireResponse."""
    found: dict[str, list[dict[str, Any]]] = {}
    for it in _walk_response_items(list(response.get("item", []))):
        answers = it.get("answer", [])
        if answers:
            found.setdefault(it["linkId"], []).extend(answers)
    return found


def _coding_ordinal(link_id: str, coding: Mapping[str, Any]) -> float:
    """The answer's own ordinalValue, else its option's in our Questionnaires, else the one
    the programme's terminology gives the code (extension-ordinalvalue.html)."""
    own = ordinal_value(coding)
    if own is not None:
        return own
    key = (coding.get("system", ""), coding.get("code", ""))
    from_questionnaire = answer_ordinals().get(link_id, {}).get(key)
    if from_questionnaire is not None:
        return from_questionnaire
    concept = lookup(*key)
    if concept is not None and concept.ordinal is not None:
        return concept.ordinal
    raise ScoringError(f"{link_id}: answer {key[0]}#{key[1]} has no ordinal value", "value")


def answer_number(link_id: str, answer: Mapping[str, Any]) -> float:
    """The numeric value of one answer (integer, decimal, boolean as 1/0, or coded ordinal)."""
    if "valueInteger" in answer:
        return float(answer["valueInteger"])
    if "valueDecimal" in answer:
        return float(answer["valueDecimal"])
    if "valueBoolean" in answer:
        return 1.0 if answer["valueBoolean"] else 0.0
    if "valueCoding" in answer:
        return _coding_ordinal(link_id, answer["valueCoding"])
    raise ScoringError(f"{link_id}: answer type cannot be scored", "value")


# ------------------------------------------------------------------ applying a rule


def _round_half_up(value: Fraction) -> int:
    return floor(value + Fraction(1, 2))


def _item_values(
    spec: Mapping[str, Any], answers: Mapping[str, list[dict[str, Any]]]
) -> dict[str, float]:
    values: dict[str, float] = {}
    reverse = set(spec.get("reverse", []))
    dichotomise: Mapping[str, float] = spec.get("dichotomise", {})
    lo, hi = spec["itemMin"], spec["itemMax"]
    for link_id in spec["items"]:
        given = answers.get(link_id)
        if not given:
            continue
        if len(given) > 1:
            raise ScoringError(f"{link_id}: one answer expected, got {len(given)}", "invalid")
        value = answer_number(link_id, given[0])
        if link_id in dichotomise:
            # STarT Back item 9 counts only for the two highest answers (Keele scoring guidance).
            value = 1.0 if value >= dichotomise[link_id] else 0.0
        if not lo <= value <= hi:
            raise ScoringError(f"{link_id}: {value:g} is outside {lo}..{hi}", "value")
        values[link_id] = lo + hi - value if link_id in reverse else value
    return values


def _band(spec: Mapping[str, Any], value: int) -> str | None:
    for band in spec.get("bands", []):
        if band["min"] <= value <= band["max"]:
            code: str = band["code"]
            return code
    return None


def _combine(
    spec: Mapping[str, Any], values: dict[str, float], missing: list[str]
) -> tuple[ValueKind, int | float | str, bool]:
    items: list[str] = spec["items"]
    combine = spec["combine"]
    if combine == "profile":
        return "string", "".join(str(int(values[i])) for i in items), False
    if combine == "mean":
        return "decimal", round(sum(values.values()) / len(values), 2), False
    total = Fraction(sum(Fraction(v) for v in values.values()))
    if missing and spec["missing"]["method"] == "prorate":
        return "integer", _round_half_up(total * len(items) / len(values)), True
    return "integer", _round_half_up(total), False


def _scorable(spec: Mapping[str, Any], answered: int, missing: int) -> bool:
    if answered == 0:
        return False
    rule = spec["missing"]
    return missing == 0 or (
        rule["method"] in ("prorate", "mean-of-answered") and missing <= rule["maxMissing"]
    )


def _risk_group(spec: Mapping[str, Any], by_id: Mapping[str, Score]) -> str | None:
    risk = spec["risk"]
    total, subscale = by_id.get(risk["total"]), by_id.get(risk["subscale"])
    if total is None or subscale is None:
        return None
    # Keele STarT Back: total <= 3 -> low; otherwise subscale >= 4 -> high, else medium.
    if int(total.value) <= risk["lowMaxTotal"]:
        return str(risk["low"])
    if int(subscale.value) >= risk["highMinSubscale"]:
        return str(risk["high"])
    return str(risk["medium"])


def _effective(response: Mapping[str, Any], as_of: datetime) -> str:
    authored = response.get("authored")
    return str(authored) if authored else as_of.isoformat()


def score_response(questionnaire_response: Mapping[str, Any], as_of: datetime) -> list[Score]:
    """All scores a QuestionnaireResponse supports, in configuration order.

    A score is produced when at least one of its items is answered and its missing-item rule
    allows it; otherwise it is left out. Responses that are not ``completed``/``amended`` give no
    scores. Raises ScoringError for answers that cannot be scored (out of range, unknown code).
    """
    if as_of.tzinfo is None:
        raise ScoringError("as_of must carry a time zone", "invalid")
    if questionnaire_response.get("resourceType") != "QuestionnaireResponse":
        raise ScoringError("not a QuestionnaireResponse", "invalid")
    if questionnaire_response.get("status") not in SCORABLE_STATUSES:
        return []
    config = scoring_config()
    answers = answers_by_link_id(questionnaire_response)
    effective = _effective(questionnaire_response, as_of)
    scores: list[Score] = []
    by_id: dict[str, Score] = {}
    for spec in config["scores"]:
        values = _item_values(spec, answers)
        missing = [i for i in spec["items"] if i not in values]
        if not _scorable(spec, len(values), len(missing)):
            continue
        if any(not answers.get(link_id) for link_id in spec["requiresAll"]):
            continue
        kind: ValueKind
        value: int | float | str
        band: str | None
        if spec["combine"] == "startback-risk":
            group = _risk_group(spec, by_id)
            if group is None:
                continue
            kind, value, prorated, band = "band", group, False, group
        else:
            kind, value, prorated = _combine(spec, values, missing)
            band = _band(spec, value) if isinstance(value, int) else None
        score = Score(
            score_id=spec["id"],
            instrument=spec["instrument"],
            display=spec["display"],
            codes=tuple(ScoreCoding(c["system"], c["code"], c["display"]) for c in spec["codes"]),
            value_kind=kind,
            value=value,
            band=band,
            items_answered=tuple(i for i in spec["items"] if i in values),
            items_missing=tuple(missing),
            prorated=prorated,
            effective=effective,
            algorithm_version=config["algorithmVersion"],
        )
        scores.append(score)
        by_id[score.score_id] = score
    return scores
