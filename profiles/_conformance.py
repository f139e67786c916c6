"""Rules of conformance resources that their StructureDefinitions do not state.

- StructureDefinition (a constraint on a definition we hold): every differential path exists
  in the base (a choice may be named by type only when that type is allowed), and a type
  profile constrains the type it is put on (structuredefinition.html, profiling.html);
- SearchParameter with ``derivedFrom`` a core parameter: same type, bases among the core
  parameter's bases, expression paths starting from a base (searchparameter.html);
- CapabilityStatement search parameters that name a core definition use its type;
- Questionnaire ``enableWhen.question`` names an item, and not the item itself or one inside
  it (questionnaire.html#enableWhen).
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterator
from functools import cache
from importlib import resources
from typing import Any

from profiles._definitions import ElementDefinition, is_resource_type, registry
from profiles._frames import frame_for
from profiles._issue import Issue
from profiles._primitives import is_absolute_uri


@cache
def _search_parameters() -> dict[str, list[Any]]:
    raw = resources.files("profiles").joinpath("data", "r4-search-parameters.json.gz").read_bytes()
    table: dict[str, list[Any]] = json.loads(gzip.decompress(raw))["searchParameters"]
    return table


def findings(resource: dict[str, Any], location: str) -> list[Issue]:
    kind = resource.get("resourceType")
    if kind == "StructureDefinition":
        return list(_structure_definition(resource, location))
    if kind == "SearchParameter":
        return list(_search_parameter(resource, location))
    if kind == "CapabilityStatement":
        return list(_capability_statement(resource, location))
    if kind == "Questionnaire":
        return list(_questionnaire(resource, location))
    if kind == "ValueSet":
        return list(_value_set(resource, location))
    if kind == "CodeSystem":
        return list(_code_system(resource, location))
    return []


# --- ValueSet and CodeSystem ------------------------------------------------------------------


def _value_set(vs: dict[str, Any], location: str) -> Iterator[Issue]:
    # valueset.html#compose: include.system names a code system by its (absolute) URL.
    compose = vs.get("compose")
    if not isinstance(compose, dict):
        return
    for part in ("include", "exclude"):
        for index, include in enumerate(_list(compose.get(part))):
            system = include.get("system")
            if isinstance(system, str) and not is_absolute_uri(system):
                yield _finding(
                    "error",
                    "invalid",
                    f"URI values in ValueSet.compose.{part}.system must be absolute ('{system}')",
                    f"{location}.compose.{part}[{index}].system",
                    "valueset-system",
                )


def _code_system(cs: dict[str, Any], location: str) -> Iterator[Issue]:
    content = cs.get("content")
    if cs.get("supplements") is not None and content != "supplement":
        yield _finding(
            "error",
            "invalid",
            "CodeSystem Supplements SHALL have a content value of 'supplement'",
            f"{location}.content",
            "codesystem-content",
        )
    if content == "not-present" and cs.get("concept"):
        yield _finding(
            "error",
            "invalid",
            "The code system says it has no content present, but concepts are found",
            f"{location}.concept",
            "codesystem-content",
        )


# --- StructureDefinition ----------------------------------------------------------------------


def _child(
    element: ElementDefinition, type_code: str | None, name: str
) -> tuple[ElementDefinition, str | None] | None:
    frame = frame_for(element, type_code)
    named = frame.by_name.get(name)
    if named is not None:
        return named
    for child in frame.children:
        if child.name == name:
            return child, (child.type_codes[0] if len(child.types) == 1 else None)
    return None


def _structure_definition(sd: dict[str, Any], location: str) -> Iterator[Issue]:
    if sd.get("derivation") != "constraint" or not isinstance(sd.get("baseDefinition"), str):
        return
    base = registry().get(sd["baseDefinition"])
    differential = sd.get("differential")
    elements = differential.get("element") if isinstance(differential, dict) else None
    if base is None or not isinstance(elements, list):
        return
    declared: dict[str, str] = {}  # path -> the one type the differential allows there
    for index, element in enumerate(elements):
        if not isinstance(element, dict) or not isinstance(element.get("path"), str):
            continue
        where = f"{location}.differential.element[{index}]"
        path = element["path"]
        own_types = [t.get("code") for t in element.get("type", []) or [] if isinstance(t, dict)]
        if len(own_types) == 1 and isinstance(own_types[0], str):
            declared[path] = own_types[0]
        segments = path.split(".")
        if segments[0] != base.type:
            continue  # the walk and the invariants report a wrong root
        current: tuple[ElementDefinition, str | None] = (base.root, base.type)
        for depth, segment in enumerate(segments[1:], start=2):
            found = _child(current[0], current[1], segment)
            if found is None:
                if current[0].is_choice and current[1] is None:
                    break  # below a choice of several types: the type is not known here
                yield _finding(
                    "error",
                    "exception",
                    f"The path {path} in the differential is not an element of "
                    f"{base.url} (a choice may be renamed only to one of its types)",
                    location,
                    "sd-differential-path",
                )
                break
            child, child_type = found
            if child_type is None and child.is_choice:
                child_type = declared.get(".".join(segments[:depth]))
            current = (child, child_type)
        for t_index, type_ref in enumerate(element.get("type", []) or []):
            if not isinstance(type_ref, dict):
                continue
            for p_index, url in enumerate(type_ref.get("profile", []) or []):
                profile = registry().get(url) if isinstance(url, str) else None
                code = type_ref.get("code")
                fits = (
                    profile is None
                    or profile.type == code
                    or (code == "Resource" and profile.kind == "resource")
                )
                if not fits:
                    assert profile is not None
                    yield _finding(
                        "error",
                        "exception",
                        f"Profile {url} is for type {profile.type}, but the {path} element has "
                        f"type {code}",
                        f"{where}.type[{t_index}].profile[{p_index}]",
                        "sd-type-profile",
                    )


# --- SearchParameter and CapabilityStatement --------------------------------------------------

_FIRST_NAME = re.compile(r"\(*\s*([A-Za-z][A-Za-z0-9]*)")


def _search_parameter(sp: dict[str, Any], location: str) -> Iterator[Issue]:
    bases = [b for b in sp.get("base", []) if isinstance(b, str)]
    expression = sp.get("expression")
    if isinstance(expression, str) and bases:
        for part in expression.split("|"):
            match = _FIRST_NAME.match(part.strip())
            name = match.group(1) if match else None
            if name and is_resource_type(name) and name not in bases and name != "Resource":
                yield _finding(
                    "error",
                    "invalid",
                    f"Error in search expression '{expression}': the name '{name}' is not one "
                    f"of the bases ({', '.join(bases)})",
                    f"{location}.expression",
                    "searchparameter-expression",
                )
                break
    derived_from = sp.get("derivedFrom")
    parent = (
        _search_parameters().get(derived_from.split("|", 1)[0])
        if isinstance(derived_from, str)
        else None
    )
    if parent is None:
        return
    parent_type, parent_bases, _ = parent
    if sp.get("type") != parent_type:
        yield _finding(
            "error",
            "business-rule",
            f"The type {sp.get('type')} is different to the type {parent_type} of "
            f"{derived_from} in the derivedFrom SearchParameter",
            location,
            "searchparameter-derived",
        )
    for base in bases:
        if base not in parent_bases:
            yield _finding(
                "error",
                "business-rule",
                f"The resource type {base} is not listed as a base in the SearchParameter "
                f"this is derived from ({derived_from})",
                location,
                "searchparameter-derived",
            )


def _capability_statement(cs: dict[str, Any], location: str) -> Iterator[Issue]:
    for r_index, rest in enumerate(_list(cs.get("rest"))):
        for s_index, resource in enumerate(_list(rest.get("resource"))):
            for p_index, param in enumerate(_list(resource.get("searchParam"))):
                definition = param.get("definition")
                core = (
                    _search_parameters().get(definition.split("|", 1)[0])
                    if isinstance(definition, str)
                    else None
                )
                if (
                    core is not None
                    and isinstance(param.get("type"), str)
                    and param["type"] != core[0]
                ):
                    yield _finding(
                        "error",
                        "invalid",
                        f"Type mismatch - SearchParameter '{definition}' type is {core[0]}, but "
                        f"type here is {param['type']}",
                        f"{location}.rest[{r_index}].resource[{s_index}].searchParam[{p_index}]",
                        "capabilitystatement-searchparam",
                    )


def _list(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


# --- Questionnaire ----------------------------------------------------------------------------


def _questionnaire(questionnaire: dict[str, Any], location: str) -> Iterator[Issue]:
    every: set[str] = set()

    def collect(items: list[dict[str, Any]]) -> None:
        for item in items:
            if isinstance(item.get("linkId"), str):
                every.add(item["linkId"])
            collect(_list(item.get("item")))

    collect(_list(questionnaire.get("item")))

    def inner_ids(item: dict[str, Any]) -> set[str]:
        found = {item["linkId"]} if isinstance(item.get("linkId"), str) else set()
        for child in _list(item.get("item")):
            found |= inner_ids(child)
        return found

    def walk(items: list[dict[str, Any]], where: str) -> Iterator[Issue]:
        for index, item in enumerate(items):
            here = f"{where}.item[{index}]"
            inner = inner_ids(item)
            for condition in _list(item.get("enableWhen")):
                question = condition.get("question")
                if not isinstance(question, str):
                    continue
                if question in inner:
                    yield _finding(
                        "error",
                        "business-rule",
                        "Questions with an enableWhen cannot refer to an inner question for its "
                        f"enableWhen condition ('{question}')",
                        here,
                        "questionnaire-enablewhen",
                    )
                elif question not in every:
                    yield _finding(
                        "error",
                        "business-rule",
                        f"The enableWhen question '{question}' is not the linkId of any item",
                        here,
                        "questionnaire-enablewhen",
                    )
            yield from walk(_list(item.get("item")), here)

    yield from walk(_list(questionnaire.get("item")), location)


def _finding(severity: str, code: str, message: str, location: str, rule: str) -> Issue:
    return Issue(severity, code, message, (location,), rule)
