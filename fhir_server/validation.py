"""Structural validation of an incoming resource against FHIR R4 (4.0.1).

``validate_resource`` answers one question for the write path: is this JSON a structurally
valid FHIR R4 resource? It does not check profiles, invariants or terminology.

Two passes, both reporting every problem they find as OperationOutcome issues whose
``expression`` is a FHIRPath location (``Patient.name[0].given[1]``):

1. **A JSON walk** over the client's document, driven by element tables built once per
   class from the fhir.resources 8.3.0 R4B models and corrected to R4. It checks what the
   models do not check on the wire:

   - every property is a FHIR R4 element name (the models also accept their python names
     such as ``class_fhir`` or ``given__ext`` and the DSTU2 ``fhir_comments``);
   - arrays exactly where the element repeats; no empty objects, arrays or strings and no
     ``null`` except as a placeholder in primitive arrays (R4 json.html#2.6.2, ele-1);
   - primitive values have the JSON type R4 json.html prescribes (``true`` not ``"true"``,
     ``1`` not ``"1"``; the models coerce both) and match the R4 regex from
     datatypes.html / profiles-types.json (``id`` ``[A-Za-z0-9\\-\\.]{1,64}``, no whitespace
     in ``uri``/``url``/``canonical``, no leading/trailing or doubled whitespace in
     ``code``; ``string`` and ``markdown`` may keep surrounding whitespace, datatypes.html#string);
   - ``Narrative.div`` is an XHTML ``div`` (narrative.html#xhtml);
   - nested resources (``contained``, ``Bundle.entry.resource``, ...) name a known type.

2. **The R4B pydantic model** (``model_validate``), for required elements, choice
   exclusivity, formats of dates and the rest. Its errors are translated to FHIRPath and
   dropped where the walk already reported the same location.

R4 wins over R4B. Differences found by comparing the R4 StructureDefinitions
(profiles-resources.json.gz, profiles-types.json) with the R4B model fields, element by
element (name, cardinality, type, min); ``tests/validation`` re-checks them when the
reference data is present:

- ``Extension.valueMeta`` and ``ElementDefinition.{defaultValue,fixed,pattern}Meta`` /
  ``ElementDefinition.example.valueMeta`` exist only in R4: the walk validates them as Meta
  and removes them from the copy handed to the model.
- ``Extension._valueString`` (the primitive extension of any primitive ``value[x]``) is valid
  JSON in both versions but the model rejects it: validated by the walk, removed from the copy.
- ``Extension.value{CodeableReference,RatioRange}``, the same ElementDefinition variants and
  ``{PlanDefinition,PlanDefinition.action,ActivityDefinition}.subjectCanonical`` exist only in
  R4B: refused as unknown R4 elements.
- ``uuid``: R4 allows any lower-case UUID (``urn:uuid:[0-9a-f]{8}-...``), the model demands
  version 4: the walk checks the R4 regex and gives the model a version-4 stand-in.
- Resource types that are R4B-only (SubscriptionTopic, Citation, ...) or restructured in R4B
  (Evidence, EvidenceVariable), and R4-only types the package has no class for
  (MedicinalProduct*, ...), are refused as not supported: none is served here.
- ``MarketingStatus.country``/``dateRange`` are 1..1 in R4 but optional in R4B; they occur
  only in resources this server does not serve and are left to the model.

Status: structural failures are 400 (R4 http.html#2.21.0.10: "resource could not be parsed
or failed basic FHIR validation rules"). The function returns the caller's dict unchanged:
the server stores the client's JSON, not the model's re-serialisation.
"""

from __future__ import annotations

import math
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from fhir_core.fhirabstractmodel import FHIRAbstractModel
from fhir_core.types import FhirBase
from pydantic import ValidationError

from fhir_server.errors import FhirError, Issue

__all__ = [
    "ElementInfo",
    "Model",
    "element_table",
    "find_model_class",
    "known_resource_type",
    "model_class",
    "validate_resource",
]

Model = type[FHIRAbstractModel]

# R4B resource types that are not R4 types, or whose R4B shape is not the R4 one.
# Derived from profiles-resources.json.gz (R4 4.0.1) against fhir.resources 8.3.0 R4B.
_NOT_R4_TYPES = frozenset(
    {
        "AdministrableProductDefinition",
        "Citation",
        "ClinicalUseDefinition",
        "EvidenceReport",
        "Ingredient",
        "ManufacturedItemDefinition",
        "MedicinalProductDefinition",
        "NutritionProduct",
        "PackagedProductDefinition",
        "RegulatedAuthorization",
        "SubscriptionStatus",
        "SubscriptionTopic",
        "SubstanceDefinition",
        # restructured in R4B: R4 instances do not fit the R4B model
        "Evidence",
        "EvidenceVariable",
    }
)

# --- primitive values: JSON type and the R4 regex (datatypes.html, profiles-types.json) ----

_INT32 = (-(2**31), 2**31 - 1)


def _regex(pattern: str) -> Callable[[object], bool]:
    compiled = re.compile(pattern)
    return lambda v: isinstance(v, str) and compiled.fullmatch(v) is not None


def _integer(low: int) -> Callable[[object], bool]:
    # json.html: integers are JSON numbers without a fraction; bool is not a number.
    return lambda v: type(v) is int and low <= v <= _INT32[1]


def _decimal(v: object) -> bool:
    # json.html: decimals are JSON numbers (a parser may hand them over as Decimal).
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return True
    if isinstance(v, float):
        return math.isfinite(v)
    return isinstance(v, Decimal) and v.is_finite()


_DATE = r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
_TIME = r"([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?"
_TZ = r"(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
_MONTH_DAY = r"-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])"

# FHIR primitive type code -> (check, what the client should send)
_PRIMITIVES: dict[str, tuple[Callable[[object], bool], str]] = {
    "boolean": (lambda v: type(v) is bool, "a JSON boolean"),
    "integer": (_integer(_INT32[0]), "a JSON integer"),
    "unsignedInt": (_integer(0), "a JSON integer >= 0"),
    "positiveInt": (_integer(1), "a JSON integer >= 1"),
    "decimal": (_decimal, "a JSON number"),
    "string": (_regex(r"[ \r\n\t\S]+"), "a non-empty string"),
    "markdown": (_regex(r"[ \r\n\t\S]+"), "a non-empty string"),
    "id": (_regex(r"[A-Za-z0-9\-\.]{1,64}"), "1-64 of A-Z a-z 0-9 - ."),
    "code": (_regex(r"[^\s]+(\s[^\s]+)*"), "a code without leading, trailing or double spaces"),
    "uri": (_regex(r"\S+"), "a URI without whitespace"),
    "url": (_regex(r"\S+"), "a URL without whitespace"),
    "canonical": (_regex(r"\S+"), "a canonical URL without whitespace"),
    "oid": (_regex(r"urn:oid:[0-2](\.(0|[1-9][0-9]*))+"), "urn:oid:<dotted digits>"),
    "uuid": (
        _regex(r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"),
        "urn:uuid:<lower-case UUID>",
    ),
    "base64Binary": (_regex(r"(\s*([0-9a-zA-Z\+/=]){4}\s*)+"), "base64"),
    "date": (
        _regex(_DATE + r"(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1]))?)?"),
        "YYYY[-MM[-DD]]",
    ),
    "dateTime": (
        _regex(_DATE + r"(" + _MONTH_DAY + r"(T" + _TIME + _TZ + r")?)?)?"),
        "YYYY[-MM[-DD[Thh:mm:ss(.s)+zz:zz]]]",
    ),
    "instant": (
        _regex(_DATE + _MONTH_DAY + r")T" + _TIME + _TZ),
        "YYYY-MM-DDThh:mm:ss(.s)+zz:zz",
    ),
    "time": (_regex(_TIME), "hh:mm:ss"),
    # narrative.html#xhtml: the narrative is a single div in the XHTML namespace.
    "xhtml": (
        _regex(
            r'\s*<div\s[^>]*xmlns\s*=\s*["\']http://www\.w3\.org/1999/xhtml["\'][\s\S]*</div>\s*'
        ),
        'a <div xmlns="http://www.w3.org/1999/xhtml"> element',
    ),
}

# fhir_core annotation marker class -> FHIR primitive type code
_MARKERS = {
    "String": "string",
    "Code": "code",
    "Uri": "uri",
    "Url": "url",
    "Id": "id",
    "DateTime": "dateTime",
    "Markdown": "markdown",
    "Canonical": "canonical",
    "PositiveInt": "positiveInt",
    "Decimal": "decimal",
    "Date": "date",
    "Integer": "integer",
    "UnsignedInt": "unsignedInt",
    "Instant": "instant",
    "Time": "time",
    "EncodedBytes": "base64Binary",
    "Oid": "oid",
    "UuidVersion": "uuid",
    "Xhtml": "xhtml",
}

_UUID_V4 = re.compile(
    r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
)
_UUID_STAND_IN = "urn:uuid:00000000-0000-4000-8000-000000000000"


# --- element tables --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ElementInfo:
    """One JSON property of a FHIR type, as R4 defines it."""

    repeats: bool
    primitive: str | None = None  # FHIR primitive type code
    model: Model | None = None  # complex type (or Resource, resolved per instance)
    is_primitive_extension: bool = False  # the ``_name`` sibling of a primitive
    is_resource: bool = False
    r4_only: bool = False  # absent from the R4B model: validate here, hide from the model


ElementTable = dict[str, ElementInfo]


def _unwrap(annotation: Any) -> tuple[bool, Any]:
    """(is list, inner annotation) for ``X | None`` / ``List[X] | None`` annotations."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union or type(annotation).__name__ == "UnionType":
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _unwrap(inner[0])
    if origin is list:
        return True, _unwrap(typing.get_args(annotation)[0])[1]
    return False, annotation


def _describe(annotation: Any) -> ElementInfo:
    repeats, inner = _unwrap(annotation)
    if inner is bool:
        return ElementInfo(repeats, primitive="boolean")
    if typing.get_origin(inner) is typing.Annotated:
        for marker in typing.get_args(inner)[1:]:
            code = _MARKERS.get(type(marker).__name__)
            if code:
                return ElementInfo(repeats, primitive=code)
        raise TypeError(f"unknown primitive annotation {inner!r}")
    if isinstance(inner, type) and issubclass(inner, FhirBase):
        klass = inner.get_model_klass()
        return ElementInfo(repeats, model=klass, is_resource=klass.__name__ == "Resource")
    raise TypeError(f"unknown annotation {annotation!r}")


def _prim_ext() -> Model:
    return get_fhir_model_class("FHIRPrimitiveExtension")


# R4 corrections per R4B class name: (elements to drop, choice prefixes that gain a Meta type)
_R4B_ONLY_CHOICE_TYPES = ("CodeableReference", "RatioRange")
_R4_CORRECTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "Extension": ((), ("value",)),
    "ElementDefinition": ((), ("defaultValue", "fixed", "pattern")),
    "ElementDefinitionExample": ((), ("value",)),
    "PlanDefinition": (("subjectCanonical",), ()),
    "PlanDefinitionAction": (("subjectCanonical",), ()),
    "ActivityDefinition": (("subjectCanonical",), ()),
}


@cache
def element_table(klass: Model) -> ElementTable:
    """The R4 JSON properties of ``klass``, built once per class."""
    table: ElementTable = {}
    for name, field in klass.model_fields.items():
        alias = field.alias or name
        if name == "fhir_comments" or (alias == "resourceType" and klass.has_resource_base()):
            continue  # resourceType of a resource is checked by the walk, not as an element
        if alias.startswith("_"):
            repeats, _ = _unwrap(field.annotation)
            table[alias] = ElementInfo(repeats, is_primitive_extension=True)
        else:
            table[alias] = _describe(field.annotation)
    drop, meta_choices = _R4_CORRECTIONS.get(klass.__name__, ((), ()))
    for name in drop:
        table.pop(name, None)
        table.pop("_" + name, None)
    for prefix in meta_choices:
        for suffix in _R4B_ONLY_CHOICE_TYPES:
            table.pop(prefix + suffix, None)
        table[prefix + "Meta"] = ElementInfo(
            False, model=get_fhir_model_class("Meta"), r4_only=True
        )
        for key, element in list(table.items()):
            if key.startswith(prefix) and element.primitive and "_" + key not in table:
                table["_" + key] = ElementInfo(False, is_primitive_extension=True, r4_only=True)
    return table


def known_resource_type(name: str) -> bool:
    """True when ``name`` is an R4 resource type this validator can check."""
    return find_model_class(name) is not None


@cache
def find_model_class(name: str) -> Model | None:
    """The R4B model class of an R4 resource type, or None when it is not one we accept."""
    if name in _NOT_R4_TYPES or not re.fullmatch(r"[A-Z][A-Za-z]+", name):
        return None
    try:
        klass = get_fhir_model_class(name)
    except (ValueError, KeyError):
        return None
    if not klass.has_resource_base() or klass.get_resource_type() != name:
        return None
    if name in ("Resource", "DomainResource"):  # abstract (resource.html)
        return None
    return klass


def model_class(resource_type: str) -> Model:
    """The R4B model class for an R4 resource type (cached); FhirError 400 if unknown."""
    klass = find_model_class(resource_type)
    if klass is None:
        raise FhirError(
            400,
            [Issue("not-supported", f"'{resource_type}' is not a supported FHIR R4 resource type")],
        )
    return klass


# --- the JSON walk ---------------------------------------------------------------------------


class _Walk:
    """Collects issues and returns the document to hand to the model.

    The model sees only what the walk found clean: a subtree with an issue is left out of
    the copy (so the model neither repeats the issue nor trips over it, e.g. on an unknown
    contained type), and R4-only content is left out after being checked here. Nothing is
    copied when nothing needs leaving out.
    """

    __slots__ = ("issues",)

    def __init__(self) -> None:
        self.issues: list[Issue] = []

    def fail(self, code: str, message: str, where: str) -> None:
        self.issues.append(Issue(code, message, "error", (where,)))

    def resource(self, obj: dict[str, Any], where: str) -> dict[str, Any]:
        resource_type = obj.get("resourceType")
        if not isinstance(resource_type, str):
            self.fail("structure", "A resource needs a string resourceType", where)
            return obj
        klass = find_model_class(resource_type)
        if klass is None:
            self.fail(
                "not-supported",
                f"'{resource_type}' is not a supported FHIR R4 resource type",
                where,
            )
            return obj
        return self.element(obj, klass, where, is_resource=True)

    def element(
        self, obj: dict[str, Any], klass: Model, where: str, *, is_resource: bool = False
    ) -> dict[str, Any]:
        if not obj:
            # json.html#2.6.2 / ele-1: an element has a value or children, never {}.
            self.fail("structure", "Empty objects are not allowed", where)
            return obj
        table = element_table(klass)
        copy: dict[str, Any] | None = None
        for key, value in obj.items():
            if key == "resourceType" and is_resource:
                continue
            element = table.get(key)
            issues_before = len(self.issues)
            if element is None:
                self.fail(
                    "structure", f"Unknown element '{key}' (not part of FHIR R4)", f"{where}.{key}"
                )
                new = None
            else:
                new = self.value(obj, key, value, element, f"{where}.{key.lstrip('_')}")
            if element is None or element.r4_only or len(self.issues) > issues_before:
                copy = dict(obj) if copy is None else copy
                del copy[key]
                if element is not None and element.r4_only:
                    self._keep_choice_filled(copy, key, klass)
            elif new is not value:
                copy = dict(obj) if copy is None else copy
                copy[key] = new
        return obj if copy is None else copy

    def value(
        self, parent: dict[str, Any], key: str, value: Any, element: ElementInfo, path: str
    ) -> Any:
        if value is None:
            self.fail("structure", "null is only allowed inside primitive arrays", path)
            return value
        if not element.repeats:
            if isinstance(value, list):
                self.fail("structure", "This element does not repeat: no array", path)
                return value
            return self.item(value, element, path)
        if not isinstance(value, list):
            self.fail("structure", "This element repeats: it must be an array", path)
            return value
        if not value:
            self.fail("structure", "Empty arrays are not allowed", path)
            return value
        twin = self._twin(parent, key, element)
        if isinstance(twin, list) and len(twin) != len(value):
            # json.html#2.6.2.1: value and extension arrays line up item by item.
            self.fail("structure", f"'{key}' and its twin array differ in length", path)
        new_items: list[Any] | None = None
        for index, item in enumerate(value):
            where = f"{path}[{index}]"
            if item is None:
                placeholder_ok = (
                    (element.primitive is not None or element.is_primitive_extension)
                    and isinstance(twin, list)
                    and index < len(twin)
                    and twin[index] is not None
                )
                if not placeholder_ok:
                    self.fail("structure", "null is only a placeholder for its twin", where)
                continue
            new = self.item(item, element, where)
            if new is not item:
                new_items = list(value) if new_items is None else new_items
                new_items[index] = new
        return value if new_items is None else new_items

    def item(self, item: Any, element: ElementInfo, where: str) -> Any:
        if element.primitive is not None:
            check, expected = _PRIMITIVES[element.primitive]
            if not check(item):
                self.fail(
                    "value", f"Invalid {element.primitive} {item!r}: expected {expected}", where
                )
            elif element.primitive == "uuid" and not _UUID_V4.fullmatch(item):
                return _UUID_STAND_IN  # R4 allows any UUID; the R4B model wants version 4
            return item
        if not isinstance(item, dict):
            self.fail("structure", "Expected a JSON object", where)
            return item
        if element.is_resource:
            return self.resource(item, where)
        klass = element.model if element.model is not None else _prim_ext()
        return self.element(item, klass, where)

    @staticmethod
    def _twin(parent: dict[str, Any], key: str, element: ElementInfo) -> Any:
        if element.is_primitive_extension:
            return parent.get(key[1:])
        if element.primitive is not None:
            return parent.get("_" + key)
        return None

    @staticmethod
    def _keep_choice_filled(copy: dict[str, Any], key: str, klass: Model) -> None:
        """After hiding an R4-only choice from the model, keep a required choice satisfied."""
        if key.startswith("_"):
            return
        for field in klass.model_fields.values():
            extra = field.json_schema_extra
            if not isinstance(extra, dict) or not extra.get("one_of_many_required"):
                continue
            prefix = str(extra["one_of_many"])
            if key.startswith(prefix) and not any(other.startswith(prefix) for other in copy):
                copy[prefix + "Boolean"] = True  # stand-in; the real value was checked here
                return


# --- pydantic errors -> issues ---------------------------------------------------------------


def _fhirpath(root: str, loc: tuple[int | str, ...]) -> str:
    """Pydantic loc -> FHIRPath: python names and ``_x`` twins become FHIR names."""
    parts = [root]
    for segment in loc:
        if isinstance(segment, int):
            parts[-1] += f"[{segment}]"
            continue
        if segment in ("root", "resource_type", "__root__"):
            continue
        name = segment.lstrip("_")
        if name.endswith("__ext"):
            name = name[: -len("__ext")]
        elif name.endswith("_fhir"):
            name = name[: -len("_fhir")]
        parts.append(name)
    return ".".join(parts)


_ERROR_CODES = {"missing": "required", "model_field_validation.missing": "required"}


def _model_issues(error: ValidationError, root: str) -> list[Issue]:
    issues = []
    for detail in error.errors(include_url=False, include_input=False):
        code = _ERROR_CODES.get(detail["type"], "value" if detail["loc"] else "invariant")
        message = " ".join(detail["msg"].split())
        issues.append(Issue(code, message, "error", (_fhirpath(root, detail["loc"]),)))
    return issues


def _covered(expression: str, reported: list[str]) -> bool:
    """True when the walk already reported this location, a parent of it or one of its items."""
    return any(
        expression == r
        or expression.startswith((r + ".", r + "["))
        or r.startswith(expression + "[")
        for r in reported
    )


# --- public ----------------------------------------------------------------------------------


def validate_resource(resource: object, *, expected_type: str | None = None) -> dict[str, Any]:
    """Check that ``resource`` is a structurally valid FHIR R4 resource; return it unchanged.

    Raises FhirError 400 (http.html: "failed basic FHIR validation rules") listing every
    issue found, each with a FHIRPath ``expression``.
    """
    if not isinstance(resource, dict):
        raise FhirError(400, [Issue("structure", "A resource must be a JSON object")])
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str) or not resource_type:
        raise FhirError(
            400, [Issue("structure", "The resource has no string resourceType", "error", ())]
        )
    klass = model_class(resource_type)
    if expected_type is not None and resource_type != expected_type:
        # http.html#create / #update: the body's type must match the URL's type.
        raise FhirError(
            400,
            [
                Issue(
                    "invalid",
                    f"Expected a {expected_type} resource but got {resource_type}",
                    "error",
                    ("resourceType",),
                )
            ],
        )
    walk = _Walk()
    for_model = walk.element(resource, klass, resource_type, is_resource=True)
    issues = walk.issues
    try:
        klass.model_validate(for_model)
    except ValidationError as error:
        reported = [e for i in issues for e in i.expression]
        issues = issues + [
            i
            for i in _model_issues(error, resource_type)
            if not _covered(i.expression[0], reported)
        ]
    if issues:
        raise FhirError(400, issues)
    return resource
