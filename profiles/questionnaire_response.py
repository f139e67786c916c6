"""A QuestionnaireResponse checked against the Questionnaire it answers (no I/O).

``check_questionnaire_response(response, questionnaire)`` walks the response beside the
Questionnaire and reports every problem as an :class:`Issue` with the FHIRPath location of
the offending item or answer (``QuestionnaireResponse.item[2].answer[0]``). Rules, from FHIR
R4 questionnaire.html and questionnaireresponse.html:

- every ``linkId`` names an item of the Questionnaire at the same place in the tree
  (``qr-linkid-unknown``, ``qr-linkid-level``), items keep the Questionnaire's order
  (``qr-order``), and only a repeating group may occur more than once (``qr-item-repeats``);
- nesting: a group's children are in ``item``, a question's children in ``answer.item``
  (``qr-nesting``); groups and display items carry no ``answer`` (``qr-group-answer``,
  ``qr-display-answer``);
- an answer's type fits the item's type (``qr-answer-type``): boolean, decimal, integer,
  date, dateTime (a date is accepted), time, string and text (valueString), url (valueUri),
  attachment, reference, quantity; choice and open-choice take the types of their
  ``answerOption`` values (Coding when the answers come from ``answerValueSet``), and
  open-choice also free text (valueString);
- a choice answer is one of the ``answerOption`` values, or a code of the ``answerValueSet``
  when that ValueSet can be enumerated here (``qr-answer-option``, ``qr-answer-valueset``;
  an open-choice Coding outside the list is a warning); ``minValue``/``maxValue`` extensions
  and ``maxLength`` are respected (``qr-min-value``, ``qr-max-value``, ``qr-max-length``);
- ``repeats`` false: at most one answer (``qr-repeats``);
- ``enableWhen`` (operators exists, =, !=, >, <, >=, <=; ``enableBehavior`` any/all, all when
  absent): a disabled item must not be in the response (``qr-disabled-answered``), and
  answers to a disabled question count as absent when another item depends on them
  (questionnaire.html, enableWhen: "proceed as though the item is not valued");
- ``required``: in a ``completed`` or ``amended`` response every enabled required item whose
  parent is present has an answer (a group: at least one child) (``qr-required``);
  ``in-progress``, ``stopped`` and ``entered-in-error`` responses may leave them out.

Operator semantics follow the operator definitions (valueset-questionnaire-enable-operator,
as clarified in R5): ``=`` and the orderings are true when at least one answer satisfies
them, ``!=`` when no answer equals the value (so also when the question is unanswered),
``exists`` compares "has an answer" with the boolean. Ordering between values of different
precision (``2020`` vs ``2020-05-01``) is false, never a guess.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from profiles._bindings import contains, using
from profiles._issue import Issue
from profiles._values import number

MIN_VALUE = "http://hl7.org/fhir/StructureDefinition/minValue"
MAX_VALUE = "http://hl7.org/fhir/StructureDefinition/maxValue"

# Item type -> the answer value[x] properties it takes (questionnaire.html#2.36.3.3).
_ANSWER_TYPES: dict[str, tuple[str, ...]] = {
    "boolean": ("valueBoolean",),
    "decimal": ("valueDecimal",),
    "integer": ("valueInteger",),
    "date": ("valueDate",),
    "dateTime": ("valueDateTime", "valueDate"),
    "time": ("valueTime",),
    "string": ("valueString",),
    "text": ("valueString",),
    "url": ("valueUri",),
    "attachment": ("valueAttachment",),
    "reference": ("valueReference",),
    "quantity": ("valueQuantity",),
}
_CHOICE_TYPES = ("choice", "open-choice")
_REQUIRED_STATUSES = ("completed", "amended")
_ORDERINGS = (">", "<", ">=", "<=")


def check_questionnaire_response(
    response: Mapping[str, Any],
    questionnaire: Mapping[str, Any],
    *,
    validate_code: Callable[[str, str | None, str], bool | None] | None = None,
) -> list[Issue]:
    """Every issue of ``response`` against ``questionnaire`` (both FHIR R4 JSON dicts).

    The inputs are expected to be structurally valid R4; anything else is skipped rather
    than raised on. An empty list means the answers fit the Questionnaire.
    ``validate_code`` answers ``answerValueSet`` memberships (as
    ``ValidationOptions.validate_code``).
    """
    checker = _Checker(response, questionnaire)
    with using(validate_code):
        checker.run()
    return checker.issues


def _values(node: Mapping[str, Any], key: str) -> list[Any]:
    found = node.get(key)
    return found if isinstance(found, list) else []


def _items(node: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [item for item in _values(node, "item") if isinstance(item, dict)]


def _answers(node: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [answer for answer in _values(node, "answer") if isinstance(answer, dict)]


def _value_of(node: Mapping[str, Any], prefix: str) -> tuple[str, Any] | None:
    """The (type name, value) of a ``value[x]`` / ``answer[x]`` choice element."""
    for key, value in node.items():
        if key.startswith(prefix) and len(key) > len(prefix) and key[len(prefix)].isupper():
            return key[len(prefix) :], value
    return None


def _walk_definitions(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for item in items:
        yield item
        yield from _walk_definitions(_items(item))


class _Checker:
    def __init__(self, response: Mapping[str, Any], questionnaire: Mapping[str, Any]) -> None:
        self.response = response
        self.issues: list[Issue] = []
        self.definitions: dict[str, dict[str, Any]] = {}
        for definition in _walk_definitions(_items(questionnaire)):
            link = definition.get("linkId")
            if isinstance(link, str):
                self.definitions.setdefault(link, definition)
        self.enforce_required = response.get("status") in _REQUIRED_STATUSES
        self.top_level = _items(questionnaire)
        self._evaluating: set[str] = set()

    def report(self, severity: str, code: str, message: str, where: str, rule: str) -> None:
        self.issues.append(Issue(severity, code, message, (where,), rule))

    def run(self) -> None:
        self.level(_items(self.response), self.top_level, "QuestionnaireResponse", [self.response])

    # -- structure -------------------------------------------------------------------------

    def level(
        self,
        given: list[dict[str, Any]],
        defined: list[dict[str, Any]],
        where: str,
        ancestors: list[Mapping[str, Any]],
    ) -> None:
        """The response items under one parent against the Questionnaire items there."""
        position = {d.get("linkId"): (i, d) for i, d in enumerate(defined)}
        furthest = -1
        seen: dict[str, int] = {}
        for index, item in enumerate(given):
            here = f"{where}.item[{index}]"
            link = item.get("linkId")
            found = position.get(link)
            if found is None:
                if link in self.definitions:
                    self.report(
                        "error",
                        "structure",
                        f"Item '{link}' is in the Questionnaire, but not at this place in the"
                        " tree of items",
                        here,
                        "qr-linkid-level",
                    )
                else:
                    self.report(
                        "error",
                        "structure",
                        f"The Questionnaire has no item with linkId '{link}'",
                        here,
                        "qr-linkid-unknown",
                    )
                continue
            rank, definition = found
            if rank < furthest:
                self.report(
                    "error",
                    "structure",
                    f"Item '{link}' is out of order: items follow the Questionnaire's order",
                    here,
                    "qr-order",
                )
            furthest = max(furthest, rank)
            seen[str(link)] = seen.get(str(link), 0) + 1
            if seen[str(link)] > 1 and not (
                definition.get("type") == "group" and definition.get("repeats") is True
            ):
                self.report(
                    "error",
                    "structure",
                    f"Item '{link}' occurs more than once; only a repeating group may"
                    " (a repeating question takes several answers in one item)",
                    here,
                    "qr-item-repeats",
                )
            self.item(item, definition, here, ancestors)
        if not self.enforce_required:
            return
        for definition in defined:
            link = definition.get("linkId")
            if (
                definition.get("required") is True
                and definition.get("type") != "display"
                and str(link) not in seen
                and self.enabled(definition, ancestors)
            ):
                self.report(
                    "error",
                    "required",
                    f"Item '{link}' is required in a {self.response.get('status')} response",
                    where,
                    "qr-required",
                )

    def item(
        self,
        item: dict[str, Any],
        definition: dict[str, Any],
        where: str,
        ancestors: list[Mapping[str, Any]],
    ) -> None:
        link = definition.get("linkId")
        kind = definition.get("type")
        answers = _answers(item)
        children = _items(item)
        if not self.enabled(definition, ancestors):
            if answers or children:
                self.report(
                    "error",
                    "business-rule",
                    f"Item '{link}' is not enabled (its enableWhen conditions are not met),"
                    " so it must not be answered",
                    where,
                    "qr-disabled-answered",
                )
            return
        if kind == "display":
            if answers or children:
                self.report(
                    "error",
                    "structure",
                    f"Item '{link}' is display text and takes no answers",
                    where,
                    "qr-display-answer",
                )
            return
        if kind == "group":
            if answers:
                self.report(
                    "error",
                    "structure",
                    f"Group '{link}' is answered through its items, not with answer",
                    f"{where}.answer[0]",
                    "qr-group-answer",
                )
            if self.enforce_required and definition.get("required") is True and not children:
                self.report(
                    "error",
                    "required",
                    f"Group '{link}' is required and has no answered items",
                    where,
                    "qr-required",
                )
            self.level(children, _items(definition), where, [*ancestors, item])
            return
        if children:
            self.report(
                "error",
                "structure",
                f"Items under question '{link}' belong in its answer (answer.item), not in item",
                f"{where}.item[0]",
                "qr-nesting",
            )
        if len(answers) > 1 and definition.get("repeats") is not True:
            self.report(
                "error",
                "structure",
                f"Question '{link}' does not repeat but has {len(answers)} answers",
                f"{where}.answer[1]",
                "qr-repeats",
            )
        if self.enforce_required and definition.get("required") is True and not answers:
            self.report(
                "error",
                "required",
                f"Question '{link}' is required and has no answer",
                where,
                "qr-required",
            )
        for index, answer in enumerate(answers):
            here = f"{where}.answer[{index}]"
            self.answer(answer, definition, here)
            nested = _items(answer)
            if nested or _items(definition):
                self.level(nested, _items(definition), here, [*ancestors, item, answer])

    # -- answers ---------------------------------------------------------------------------

    def answer(self, answer: dict[str, Any], definition: dict[str, Any], where: str) -> None:
        found = _value_of(answer, "value")
        if found is None:
            return  # an answer may hold only nested items
        type_name, value = found
        key = "value" + type_name
        link = definition.get("linkId")
        kind = str(definition.get("type"))
        options = [o for o in _values(definition, "answerOption") if isinstance(o, dict)]
        if kind in _CHOICE_TYPES:
            option_types = {found[0] for o in options if (found := _value_of(o, "value"))}
            allowed = {"value" + t for t in option_types} or {"valueCoding"}
            if kind == "open-choice":
                allowed.add("valueString")
        else:
            allowed = set(_ANSWER_TYPES.get(kind, ()))
            if not allowed:
                return  # 'question' (abstract) or an unknown type: nothing to compare with
        if key not in allowed:
            self.report(
                "error",
                "structure",
                f"Item '{link}' is of type {kind} and cannot be answered with {key}"
                f" (expected {' or '.join(sorted(allowed))})",
                where,
                "qr-answer-type",
            )
            return
        if kind in _CHOICE_TYPES:
            self.choice(type_name, value, definition, options, where)
        self.limits(type_name, value, definition, where)

    def choice(
        self,
        type_name: str,
        value: Any,
        definition: dict[str, Any],
        options: list[dict[str, Any]],
        where: str,
    ) -> None:
        link = definition.get("linkId")
        open_choice = definition.get("type") == "open-choice"
        if open_choice and type_name == "String":
            return  # the free-text alternative
        severity = "warning" if open_choice else "error"
        if options:
            if any(_equal(type_name, value, o) for o in options):
                return
            self.report(
                severity,
                "code-invalid",
                f"The answer to '{link}' is not one of its answerOption values",
                where,
                "qr-answer-option",
            )
            return
        value_set = definition.get("answerValueSet")
        if isinstance(value_set, str) and type_name == "Coding" and isinstance(value, dict):
            code = value.get("code")
            if not isinstance(code, str):
                return
            member = contains(value_set, value.get("system"), code)
            if member is False:
                self.report(
                    severity,
                    "code-invalid",
                    f"The answer to '{link}' ({value.get('system')}#{code}) is not in {value_set}",
                    where,
                    "qr-answer-valueset",
                )

    def limits(self, type_name: str, value: Any, definition: dict[str, Any], where: str) -> None:
        link = definition.get("linkId")
        # A decimal answer may be a Decimal (its written precision kept, json.html#primitive)
        # and a bound a float: compare both as exact decimals, never mixed.
        answered = number(value)
        if type_name in ("Integer", "Decimal") and answered is not None:
            for extension in _values(definition, "extension"):
                if not isinstance(extension, dict):
                    continue
                url = extension.get("url")
                if url not in (MIN_VALUE, MAX_VALUE):
                    continue
                bound = _value_of(extension, "value")
                limit = number(bound[1]) if bound is not None else None
                if limit is None:
                    continue
                if url == MIN_VALUE and answered < limit:
                    self.report(
                        "error",
                        "value",
                        f"The answer to '{link}' ({value}) is below its minimum {limit}",
                        where,
                        "qr-min-value",
                    )
                if url == MAX_VALUE and answered > limit:
                    self.report(
                        "error",
                        "value",
                        f"The answer to '{link}' ({value}) is above its maximum {limit}",
                        where,
                        "qr-max-value",
                    )
        max_length = definition.get("maxLength")
        if (
            type_name == "String"
            and isinstance(value, str)
            and isinstance(max_length, int)
            and len(value) > max_length
        ):
            self.report(
                "error",
                "value",
                f"The answer to '{link}' is {len(value)} characters long; at most"
                f" {max_length} are allowed",
                where,
                "qr-max-length",
            )

    # -- enableWhen --------------------------------------------------------------------------

    def enabled(self, definition: dict[str, Any], ancestors: list[Mapping[str, Any]]) -> bool:
        conditions = [c for c in _values(definition, "enableWhen") if isinstance(c, dict)]
        if not conditions:
            return True
        link = str(definition.get("linkId"))
        if link in self._evaluating:
            return True  # conditions that depend on each other: stop instead of looping
        self._evaluating.add(link)
        try:
            results = [self.condition(c, ancestors) for c in conditions]
        finally:
            self._evaluating.discard(link)
        if definition.get("enableBehavior") == "any":
            return any(results)
        return all(results)

    def condition(self, condition: dict[str, Any], ancestors: list[Mapping[str, Any]]) -> bool:
        question = condition.get("question")
        operator = condition.get("operator")
        expected = _value_of(condition, "answer")
        if not isinstance(question, str) or expected is None:
            return False
        given = self.answers_to(question, ancestors)
        if operator == "exists":
            return bool(given) == (expected[1] is True)
        if operator == "=":
            return any(_matches(answer, expected) for answer in given)
        if operator == "!=":
            return not any(_matches(answer, expected) for answer in given)
        if operator in _ORDERINGS:
            return any(_ordered(answer, expected, operator) for answer in given)
        return False

    def answers_to(
        self, question: str, ancestors: list[Mapping[str, Any]]
    ) -> list[tuple[str, Any]]:
        """The answer values of the nearest occurrence of ``question`` (questionnaire.html,
        enableWhen.question: the ancestor axis first, then the rest of the response)."""
        definition = self.definitions.get(question)
        for depth in range(len(ancestors) - 1, -1, -1):
            found = list(_occurrences(ancestors[depth], question, list(ancestors[: depth + 1])))
            if not found:
                continue
            values: list[tuple[str, Any]] = []
            for item, chain in found:
                if definition is not None and not self.enabled(definition, chain):
                    continue  # a disabled question counts as not valued
                for answer in _answers(item):
                    value = _value_of(answer, "value")
                    if value is not None:
                        values.append(value)
            return values
        return []


def _occurrences(
    node: Mapping[str, Any], link: str, chain: list[Mapping[str, Any]]
) -> Iterator[tuple[dict[str, Any], list[Mapping[str, Any]]]]:
    """Items with ``link`` under ``node``, each with its chain of ancestors."""
    for item in _items(node):
        if item.get("linkId") == link:
            yield item, chain
        yield from _occurrences(item, link, [*chain, item])
        for answer in _answers(item):
            yield from _occurrences(answer, link, [*chain, item, answer])


def _equal(type_name: str, value: Any, option: Mapping[str, Any]) -> bool:
    """Is an answer value the value of an answerOption?"""
    found = _value_of(option, "value")
    if found is None or found[0] != type_name:
        return False
    return _same(type_name, value, found[1])


def _same(type_name: str, value: Any, other: Any) -> bool:
    if type_name == "Coding":
        if not isinstance(value, dict) or not isinstance(other, dict):
            return False
        if value.get("code") != other.get("code"):
            return False
        # A coding without a system (in the option or the condition) matches on code.
        return other.get("system") is None or value.get("system") == other.get("system")
    if type_name == "Reference":
        return (
            isinstance(value, dict)
            and isinstance(other, dict)
            and (value.get("reference") == other.get("reference"))
        )
    if type_name == "Quantity":
        if not isinstance(value, dict) or not isinstance(other, dict):
            return False
        return value.get("value") == other.get("value") and _same_unit(value, other)
    return bool(value == other)


def _same_unit(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    if a.get("system") and b.get("system") and a.get("code") and b.get("code"):
        return bool(a.get("system") == b.get("system") and a.get("code") == b.get("code"))
    return bool(a.get("unit") == b.get("unit") or a.get("code") == b.get("code"))


_NUMERIC = ("Integer", "Decimal")


def _matches(answer: tuple[str, Any], expected: tuple[str, Any]) -> bool:
    """enableWhen ``=``: an answer value against ``answer[x]`` of the condition."""
    answer_type, value = answer
    expected_type, wanted = expected
    if answer_type in _NUMERIC and expected_type in _NUMERIC:
        left, right = number(value), number(wanted)
        return left is not None and left == right
    if answer_type != expected_type:
        return False
    return _same(answer_type, value, wanted)


def _ordered(answer: tuple[str, Any], expected: tuple[str, Any], operator: str) -> bool:
    answer_type, value = answer
    expected_type, wanted = expected
    left: Any
    right: Any
    if answer_type in _NUMERIC and expected_type in _NUMERIC:
        left, right = number(value), number(wanted)
    elif answer_type == "Quantity" and expected_type == "Quantity":
        if not (isinstance(value, dict) and isinstance(wanted, dict)) or not _same_unit(
            value, wanted
        ):
            return False
        left, right = number(value.get("value")), number(wanted.get("value"))
    elif answer_type == expected_type and answer_type in ("Date", "DateTime", "Time", "String"):
        left, right = value, wanted
        if answer_type != "String" and len(str(left)) != len(str(right)):
            return False  # different precision: not comparable
    else:
        return False
    if left is None or right is None or not isinstance(left, type(right)):
        return False
    if operator == ">":
        return bool(left > right)
    if operator == "<":
        return bool(left < right)
    if operator == ">=":
        return bool(left >= right)
    return bool(left <= right)
