"""The programme's Questionnaires (packaged FHIR R4 JSON) and what scoring needs from them."""

import copy
from collections.abc import Iterator
from functools import cache
from typing import Any

from mappings._packaged import packaged_json, packaged_names
from terminology import ordinal_value

FOLDER = "questionnaires"


def _packaged() -> list[dict[str, Any]]:
    return [packaged_json(FOLDER, name) for name in packaged_names(FOLDER)]


def load_questionnaires() -> list[dict[str, Any]]:
    """Every Questionnaire of the programme, as fresh dicts the caller may change."""
    return [copy.deepcopy(q) for q in _packaged()]


def questionnaire(canonical: str) -> dict[str, Any] | None:
    """The Questionnaire with this canonical URL (``url|version`` must match the version)."""
    url, _, version = canonical.partition("|")
    for q in _packaged():
        if q["url"] == url and (not version or q["version"] == version):
            return copy.deepcopy(q)
    return None


def walk_items(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Depth-first over Questionnaire items (groups and their children)."""
    for it in items:
        yield it
        yield from walk_items(it.get("item", []))


RED_FLAG_SYSTEM = "http://selfback.example.org/fhir/CodeSystem/red-flag"


@cache
def red_flag_items() -> dict[str, dict[str, str]]:
    """Questionnaire URL -> {linkId: red-flag code} of every item that asks a red flag.

    An item asks a red flag when its ``Questionnaire.item.code`` holds a code of the
    red-flag CodeSystem (terminology/content/CodeSystem-red-flag.json); the server reads the
    answer by that code, and the coverage test walks these items (docs/CONTENT.md,
    "Red flags")."""
    table: dict[str, dict[str, str]] = {}
    for q in _packaged():
        for it in walk_items(q["item"]):
            for coding in it.get("code", []):
                if coding.get("system") == RED_FLAG_SYSTEM:
                    table.setdefault(q["url"], {})[it["linkId"]] = coding["code"]
    return table


@cache
def answer_ordinals() -> dict[str, dict[tuple[str, str], float]]:
    """linkId -> {(system, code): ordinal} over all packaged Questionnaires.

    linkIds are shared between Questionnaires on purpose (the weekly PSEQ-2 items are the baseline
    PSEQ items 5 and 9), so one table serves every response; a test checks that they agree.
    """
    table: dict[str, dict[tuple[str, str], float]] = {}
    for q in _packaged():
        for it in walk_items(q["item"]):
            for opt in it.get("answerOption", []):
                coding = opt.get("valueCoding")
                ordinal = ordinal_value(opt)
                if coding is None or ordinal is None:
                    continue
                table.setdefault(it["linkId"], {})[(coding["system"], coding["code"])] = ordinal
    return table
