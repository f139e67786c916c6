"""Invariants (ElementDefinition.constraint): FHIRPath through fhirpathpy, compiled once.

Evaluation order for a constraint key:

1. a **custom check** registered for the key (:func:`register_check`): a Python function of
   the focus, for rules FHIRPath says badly (the NHS number's modulus 11 has a portable
   FHIRPath expression in our profile; the registered function is what we run);
2. a **native** implementation of the R4 invariants that are on every element or resource,
   where the FHIRPath is slow in Python or beyond fhirpathpy (ele-1, ext-1, dom-2..6, ref-1,
   txt-1, txt-2);
3. the FHIRPath ``expression``, compiled once per distinct expression and cached, with the
   FHIR functions fhirpathpy lacks supplied (``hasValue``, ``htmlChecks``, ``memberOf``).

A constraint that cannot be compiled or evaluated gives ``None``: the validator reports it as
an informational issue and counts it, and never turns it into an error.

A constraint fails only when its expression yields ``false``. An empty result (FHIRPath's
"unknown", e.g. a string function applied to an absent element) does not fail it: in R4
invariants written as ``x.f().not()`` an absent ``x`` means the rule does not apply. The one
place where the unknown matters, comparing dates of different precision in per-1, is
implemented natively with the reference validator's reading (unknown fails).
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache
from typing import Any

import fhirpathpy
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models

from profiles import _bindings, _xhtml
from profiles._definitions import Constraint
from profiles._values import number
from profiles.national_identifiers import is_valid_nhs_number

CheckFunction = Callable[[Any], bool]

_custom_checks: dict[str, CheckFunction] = {}
_unevaluable: Counter[str] = Counter()
_unevaluable_lock = threading.Lock()


def register_check(key: str, check: CheckFunction) -> None:
    """Run ``check(focus)`` for constraint ``key`` instead of its FHIRPath expression.

    ``focus`` is the JSON value the constraint is on (a dict for complex elements); the
    function returns True when the constraint holds.
    """
    _custom_checks[key] = check


def registered_checks() -> dict[str, CheckFunction]:
    return dict(_custom_checks)


def unevaluable_invariants() -> dict[str, int]:
    """How often each constraint key could not be evaluated, since the process started."""
    with _unevaluable_lock:
        return dict(_unevaluable)


def _nhs_number_slice(identifier: Any) -> bool:
    value = identifier.get("value") if isinstance(identifier, dict) else None
    return isinstance(value, str) and is_valid_nhs_number(value)


register_check("selfback-nhs-1", _nhs_number_slice)


# The daily-step invariants run on every imported step count (write-time validation of
# wearable data): native twins of their FHIRPath, which fhirpathpy takes ~0.2 ms each for.
def _step_period_has_both_ends(observation: Any) -> bool:
    """selfback-steps-1: an effectivePeriod has a start and an end."""
    period = observation.get("effectivePeriod") if isinstance(observation, dict) else None
    return not isinstance(period, dict) or ("start" in period and "end" in period)


def _step_count_is_whole(quantity: Any) -> bool:
    """selfback-steps-2: ``value.empty() or value.floor() = value``."""
    value = quantity.get("value") if isinstance(quantity, dict) else None
    exact = number(value)  # a Decimal keeps digits a float would round away
    return exact is None or exact == exact.to_integral_value()


register_check("selfback-steps-1", _step_period_has_both_ends)
register_check("selfback-steps-2", _step_count_is_whole)


@dataclass(frozen=True, slots=True)
class Scope:
    """What ``%resource`` and ``%rootResource`` are for the focus (fhirpath.html#vars)."""

    resource: dict[str, Any]
    root_resource: dict[str, Any]


# --- native R4 invariants -------------------------------------------------------------------


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _dom_3(resource: Any, scope: Scope) -> bool:
    # dom-3: every contained resource is referenced from the rest of the resource (or from
    # another contained one), or refers to its container with "#".
    contained = resource.get("contained") if isinstance(resource, dict) else None
    if not isinstance(contained, list):
        return True
    everywhere = set(_strings(resource))
    for item in contained:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            continue
        local = "#" + item["id"]
        if local in everywhere:
            continue
        # The narrative may point at it too (<img src="#id">, <a href="#id">).
        if any(f'"{local}"' in text or f"'{local}'" in text for text in everywhere if "<" in text):
            continue
        if "#" in set(_strings(item)):
            continue
        return False
    return True


def _contained(resource: Any) -> list[dict[str, Any]]:
    found = resource.get("contained") if isinstance(resource, dict) else None
    return [c for c in found if isinstance(c, dict)] if isinstance(found, list) else []


def _ref_1(reference: Any, scope: Scope) -> bool:
    text = reference.get("reference") if isinstance(reference, dict) else None
    if not isinstance(text, str) or not text.startswith("#") or text == "#":
        return True
    return any(c.get("id") == text[1:] for c in _contained(scope.root_resource))


def _has_value_or_children(focus: Any, scope: Scope) -> bool:
    return True  # ele-1: the walk reports empty objects, arrays and strings itself


def _narrative(focus: Any) -> str | None:
    """The div, whether the constraint sits on Narrative or (as in R4) on Narrative.div."""
    div = focus.get("div") if isinstance(focus, dict) else focus
    return div if isinstance(div, str) else None


NATIVE: dict[str, Callable[[Any, Scope], bool]] = {
    "ele-1": _has_value_or_children,
    "ext-1": lambda ext, scope: (
        not isinstance(ext, dict)
        or (("extension" in ext) != any(k.startswith("value") for k in ext))
    ),
    "dom-2": lambda res, scope: not any("contained" in c for c in _contained(res)),
    "dom-3": _dom_3,
    "dom-4": lambda res, scope: (
        not any(
            isinstance(c.get("meta"), dict)
            and ("versionId" in c["meta"] or "lastUpdated" in c["meta"])
            for c in _contained(res)
        )
    ),
    "dom-5": lambda res, scope: (
        not any(
            isinstance(c.get("meta"), dict) and "security" in c["meta"] for c in _contained(res)
        )
    ),
    # dom-6 (best practice): narrative on a resource of its own; a contained one has none.
    "dom-6": lambda res, scope: (
        scope.resource is not scope.root_resource
        or (isinstance(res, dict) and isinstance(res.get("text"), dict) and "div" in res["text"])
    ),
    "ref-1": _ref_1,
    "per-1": lambda period, scope: _start_not_after_end(period),
    "qty-3": lambda q, scope: not isinstance(q, dict) or "code" not in q or "system" in q,
    "obs-6": lambda o, scope: (
        not isinstance(o, dict)
        or "dataAbsentReason" not in o
        or not any(k.startswith("value") for k in o)
    ),
    "obs-7": lambda o, scope: _component_codes_differ(o),
    "rng-2": lambda range_, scope: _low_not_above_high(range_),
    "txt-1": lambda n, scope: (div := _narrative(n)) is None or _xhtml.allowed_content(div),
    "txt-2": lambda n, scope: (div := _narrative(n)) is None or _xhtml.has_content(div),
}


def _start_not_after_end(period: Any) -> bool:
    """per-1 with FHIRPath comparison semantics (fhirpath.html#comparison): values of
    different precision that agree as far as both go compare as empty, which fails the
    constraint (the Java validator reports such periods)."""
    if not isinstance(period, dict):
        return True
    start, end = period.get("start"), period.get("end")
    if not isinstance(start, str) or not isinstance(end, str):
        return True
    if len(start) == len(end) and (len(start) <= 10 or start[19:] == end[19:]):
        # Same precision and zone: FHIR's fixed-width format orders like the text.
        return start <= end
    answer = compare_date_times(start, end)
    return answer is not None and answer <= 0


def _codings(concept: Any) -> list[Any]:
    found = concept.get("coding") if isinstance(concept, dict) else None
    return found if isinstance(found, list) else []


def _component_codes_differ(observation: Any) -> bool:
    """obs-7: with a value, no component has a coding of the Observation's own code."""
    if not isinstance(observation, dict) or not any(k.startswith("value") for k in observation):
        return True
    own = _codings(observation.get("code"))
    components = observation.get("component")
    for component in components if isinstance(components, list) else []:
        code = component.get("code") if isinstance(component, dict) else None
        if any(coding in own for coding in _codings(code)):
            return False
    return True


def _low_not_above_high(range_: Any) -> bool:
    """rng-2 (low <= high) for Quantities in the same unit; other units cannot be compared
    without UCUM conversion and are accepted."""
    if not isinstance(range_, dict):
        return True
    low, high = range_.get("low"), range_.get("high")
    if not isinstance(low, dict) or not isinstance(high, dict):
        return True
    unit = (low.get("system"), low.get("code"))
    if unit != (high.get("system"), high.get("code")):
        return True
    try:
        return Decimal(str(low["value"])) <= Decimal(str(high["value"]))
    except (KeyError, ArithmeticError, ValueError):
        return True


_DATE_TIME = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?"
    r"(Z|[+-]\d{2}:\d{2})?)?)?)?"
)


def _parts(value: str) -> tuple[list[Decimal], str | None] | None:
    match = _DATE_TIME.fullmatch(value)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    parts = [Decimal(p) for p in (year, month, day, hour, minute) if p is not None]
    if second is not None:
        parts.append(Decimal(f"{second}.{fraction or 0}"))
    if zone is not None and len(parts) >= 5:
        # Normalise to UTC so that times in different zones compare.
        y, mo, d, h, mi = (int(p) for p in parts[:5])
        moment = datetime(y, mo, d, h, mi, tzinfo=UTC)
        sign = 1 if zone[0] == "+" else -1
        offset = (
            timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])) if zone != "Z" else timedelta()
        )
        moment -= sign * offset
        parts = [Decimal(x) for x in moment.timetuple()[:5]] + parts[5:]
    return parts, zone


def compare_date_times(left: str, right: str) -> int | None:
    """-1, 0, 1, or None when FHIRPath cannot tell (different precision, equal as far as both
    go); times without a zone are compared as given."""
    first, second = _parts(left), _parts(right)
    if first is None or second is None:
        return None
    a, b = first[0], second[0]
    for x, y in zip(a, b, strict=False):
        if x != y:
            return -1 if x < y else 1
    return 0 if len(a) == len(b) else None


# --- FHIRPath ---------------------------------------------------------------------------------


def _has_value(inputs: list[Any]) -> bool:
    return len(inputs) == 1 and inputs[0] is not None and not isinstance(inputs[0], (dict, list))


def _html_checks(inputs: list[Any]) -> bool:
    return all(
        not isinstance(i, str) or (not _xhtml.html_problems(i) and _xhtml.has_content(i))
        for i in inputs
    )


def _member_of(inputs: list[Any], url: Any) -> list[bool]:
    if len(inputs) != 1 or not isinstance(url, (str, list)):
        return []
    canonical = url[0] if isinstance(url, list) else url
    focus = inputs[0]
    pairs: list[tuple[str | None, str]] = []
    if isinstance(focus, str):
        pairs = [(None, focus)]
    elif isinstance(focus, dict):
        codings = focus.get("coding") if "coding" in focus else [focus]
        for coding in codings if isinstance(codings, list) else []:
            if isinstance(coding, dict) and isinstance(coding.get("code"), str):
                pairs.append((coding.get("system"), coding["code"]))
    answers = [_bindings.contains(canonical, s, c) for s, c in pairs]
    if not answers or any(a is None for a in answers):
        raise _Unevaluable(f"memberOf({canonical}) cannot be answered here")
    return [any(answers)]


class _Unevaluable(Exception):
    pass


def _resolve(inputs: list[Any]) -> list[Any]:
    # Only contained references can be resolved inside one resource; anything else is
    # unknown (empty), which R4's one use of resolve() (ctm-1) reads as "not checked".
    found = []
    for reference in inputs:
        text = reference.get("reference") if isinstance(reference, dict) else reference
        scope: Scope | None = getattr(_resolving, "scope", None)
        if isinstance(text, str) and text.startswith("#") and scope is not None:
            found += [c for c in _contained(scope.root_resource) if c.get("id") == text[1:]]
    return found


# The scope of the evaluation in progress, per thread (fhirpathpy calls resolve() without it).
_resolving = threading.local()

_FHIR_FUNCTIONS = {
    "resolve": {"fn": _resolve},
    "hasValue": {"fn": _has_value},
    "htmlChecks": {"fn": _html_checks},
    "memberOf": {"fn": _member_of, "arity": {1: ["String"]}},
}
_OPTIONS = {"userInvocationTable": _FHIR_FUNCTIONS, "traceFn": lambda label, value: None}

# Known errors in R4 invariant expressions, corrected as the HL7 Java validator corrects them
# (the human text states the intended rule; the expression says something else).
ERRATA = {
    # "If there are more than one enableWhen, enableBehavior must be specified"
    "que-12": "enableWhen.count() > 1 implies enableBehavior.exists()",
    # "If the operator is 'exists', the value must be a boolean": the answer is a FHIR boolean,
    # which FHIRPath's System type name does not match in fhirpathpy.
    "que-7": "operator = 'exists' implies (answer is boolean)",
}


@cache
def _compiled(expression: str) -> tuple[Callable[..., Any] | None, str | None]:
    try:
        return fhirpathpy.compile(expression, models["r4"], _OPTIONS), None
    except Exception as error:  # noqa: BLE001 - the parser raises bare Exceptions
        return None, f"cannot compile: {error}"


def _truth(result: Any) -> bool:
    if not isinstance(result, list):
        return bool(result)
    return not (len(result) == 1 and result[0] is False)


@dataclass(frozen=True, slots=True)
class Verdict:
    holds: bool | None  # None: could not be evaluated
    reason: str = ""


def evaluate(constraint: Constraint, focus: Any, type_path: str, scope: Scope) -> Verdict:
    custom = _custom_checks.get(constraint.key)
    if custom is not None:
        return Verdict(bool(custom(focus)))
    native = NATIVE.get(constraint.key)
    if native is not None:
        return Verdict(bool(native(focus, scope)))
    expression = ERRATA.get(constraint.key, constraint.expression)
    if not expression:
        return _unevaluated(constraint.key, "the constraint has no FHIRPath expression")
    compiled, problem = _compiled(expression)
    if compiled is None:
        return _unevaluated(constraint.key, problem or "cannot compile")
    node = ResourceNode.create_node(focus, type_path)
    variables = {"resource": scope.resource, "rootResource": scope.root_resource}
    _resolving.scope = scope
    try:
        result = compiled(node, variables)
    except Exception as error:  # noqa: BLE001 - fhirpathpy raises bare Exceptions
        return _unevaluated(constraint.key, f"{type(error).__name__}: {error}")
    finally:
        _resolving.scope = None
    return Verdict(_truth(result))


def _unevaluated(key: str, reason: str) -> Verdict:
    with _unevaluable_lock:
        _unevaluable[key] += 1
    return Verdict(None, reason)
