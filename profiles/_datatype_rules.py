"""Rules about one value of an element, beyond its structure.

- fixed[x] (exactly this value) and pattern[x] (at least this value), profiling.html#fixed;
- required and extensible bindings (terminologies.html#strength): the value's code, Coding or
  one of its CodeableConcept codings must be in the ValueSet; extensible misses are warnings;
  a ValueSet that cannot be enumerated here is not checked (never guessed);
- a literal reference is absolute, ``#id``, ``[type]/[id]`` (or a conditional search), and
  the type it implies is one of the element's target types;
- Coding: an absolute system that is a code system (not a ValueSet), and a code that the
  system defines when we hold the system complete (FHIR R4 and our own CodeSystems);
- Identifier: a system of urn:ietf:rfc:3986 makes the value a URI;
- Attachment: size and SHA-1 hash agree with the data (datatypes.html#Attachment).

Each rule reports through ``report(severity, code, message, location, rule)``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any

from profiles import _bindings
from profiles._definitions import CORE_BASE, ElementDefinition, TypeRef, is_resource_type, registry
from profiles._primitives import is_absolute_uri
from profiles._values import describe, equals_fixed, matches_pattern
from terminology import lookup, resource_by_url

Report = Callable[[str, str, str, str, str], None]


def fixed_and_pattern(child: ElementDefinition, value: Any, location: str, report: Report) -> None:
    if child.fixed is not None and not equals_fixed(value, child.fixed[1]):
        expected = child.fixed[1]
        if isinstance(expected, (dict, list)):
            message = (
                f"The value does not match the fixed value required by {child.structure.url} "
                f"({child.id})"
            )
        else:
            message = f"Value is {describe(value)} but is fixed to {expected!r}"
        report("error", "value", message, location, "fixed")
    if child.pattern is not None and not matches_pattern(value, child.pattern[1]):
        report(
            "error",
            "value",
            f"The value does not match the pattern required by {child.structure.url} "
            f"({child.id}): {child.pattern[1]}",
            location,
            "pattern",
        )


def binding(
    child: ElementDefinition, value: Any, type_code: str | None, location: str, report: Report
) -> None:
    assert child.binding is not None
    strength, value_set = child.binding
    codes: list[tuple[str | None, str]] = []
    if type_code in ("code", "string", "uri") and isinstance(value, str):
        codes = [(None, value)]
    elif type_code in ("Coding", "Quantity") and isinstance(value, dict):
        if isinstance(value.get("code"), str):
            codes = [(_text(value.get("system")), value["code"])]
    elif type_code == "CodeableConcept" and isinstance(value, dict):
        codings = value.get("coding")
        for coding in codings if isinstance(codings, list) else []:
            if isinstance(coding, dict) and isinstance(coding.get("code"), str):
                codes.append((_text(coding.get("system")), coding["code"]))
        if not codes:
            if strength == "required" and _bindings.can_enumerate(value_set):
                report(
                    "error",
                    "code-invalid",
                    f"No code provided, and a code is required from the value set {value_set}",
                    location,
                    "binding",
                )
            return
    else:
        return
    if not codes:
        return
    answers = [_bindings.contains(value_set, system, code) for system, code in codes]
    if any(answer is True for answer in answers):
        return
    if all(answer is None for answer in answers):
        return  # the ValueSet cannot be enumerated here: not checked, not guessed
    severity = "error" if strength == "required" else "warning"
    shown = ", ".join(f"{s}#{c}" if s else repr(c) for s, c in codes)
    report(
        severity,
        "code-invalid",
        f"The value provided ({shown}) is not in the value set {value_set} ({strength} binding)",
        location,
        "binding",
    )


def reference_target(child: ElementDefinition, value: Any, location: str, report: Report) -> None:
    reference = value.get("reference") if isinstance(value, dict) else None
    if isinstance(reference, str) and not _is_literal_reference(reference):
        # references.html#literal: absolute, "#id", "[type]/[id]" or a conditional search.
        report(
            "error",
            "invalid",
            f"Relative URLs must be of the format [ResourceName]/[id]. Encountered {reference}",
            f"{location}.reference",
            "reference-format",
        )
        return
    targets: set[str] = set()
    for type_ref in child.types:
        if type_ref.code == "Reference":
            targets.update(_target_types(type_ref))
    if not targets or "Resource" in targets or not isinstance(value, dict):
        return
    reference = value.get("reference")
    if not isinstance(reference, str) or reference.startswith(("#", "urn:")):
        return
    implied = _implied_type(reference)
    if implied is not None and implied not in targets:
        report(
            "error",
            "structure",
            f"The type '{implied}' implied by the reference URL {reference} is not a valid "
            f"target for this element (must be one of {sorted(targets)})",
            location,
            "reference-target",
        )


def identifier(identifier: dict[str, Any], location: str, report: Report) -> None:
    # identifier-registry: system urn:ietf:rfc:3986 means the value is itself a URI.
    value = identifier.get("value")
    uri_system = identifier.get("system") == "urn:ietf:rfc:3986"
    if uri_system and isinstance(value, str) and not is_absolute_uri(value):
        report(
            "error",
            "invalid",
            "if identifier.system is 'urn:ietf:rfc:3986', then the identifier.value "
            f"must be a full URI (e.g. start with a scheme), not '{value}'",
            f"{location}.value",
            "identifier-uri",
        )


def attachment(attachment: dict[str, Any], location: str, report: Report) -> None:
    # datatypes.html#Attachment: size and hash describe the data (before base64 encoding).
    data = attachment.get("data")
    if not isinstance(data, str):
        return
    try:
        raw = base64.b64decode("".join(data.split()), validate=True)
    except (binascii.Error, ValueError):
        return  # the base64 rule reports it
    size = attachment.get("size")
    if type(size) is int and size != len(raw):
        report(
            "error",
            "structure",
            f"Stated Attachment Size {size} does not match actual attachment size {len(raw)}",
            location,
            "attachment-size",
        )
    digest = attachment.get("hash")
    if isinstance(digest, str):
        actual = base64.b64encode(hashlib.sha1(raw).digest()).decode()
        if "".join(digest.split()) != actual:
            report(
                "error",
                "structure",
                "Stated Attachment Hash does not match the SHA-1 of the data",
                location,
                "attachment-hash",
            )


def coding(coding: dict[str, Any], location: str, report: Report) -> None:
    system, code = coding.get("system"), coding.get("code")
    if not isinstance(system, str):
        return
    # datatypes.html#Coding: the system is an absolute URI naming a code system.
    if not is_absolute_uri(system):
        report(
            "error",
            "invalid",
            "Coding.system must be an absolute reference, not a local reference",
            f"{location}.system",
            "coding-system",
        )
        return
    if system.startswith("http://hl7.org/fhir/ValueSet/"):
        report(
            "error",
            "invalid",
            f"The Coding references a value set, not a code system ('{system}')",
            f"{location}.system",
            "coding-system",
        )
        return
    if not isinstance(code, str):
        return
    known = _bindings.code_system_knows(system, code)
    if known is None:
        known = _our_code_system_knows(system, code)
    if known is False:
        # The FHIR-defined systems are fixed by R4; terminology.hl7.org ones have moved on
        # since, so a code we do not know there may be newer than our copy.
        fixed = system.startswith("http://hl7.org/fhir/") or system.startswith(
            "http://selfback.example.org/"
        )
        report(
            "error" if fixed else "warning",
            "code-invalid",
            f"Unknown code '{code}' in the CodeSystem '{system}'",
            f"{location}.code",
            "coding-code",
        )


@cache
def _our_code_system(system: str) -> bool:
    found = resource_by_url(system)
    return found is not None and found.get("resourceType") == "CodeSystem"


def _our_code_system_knows(system: str, code: str) -> bool | None:
    """For the programme's CodeSystems (terminology package): is the code defined?"""
    if not _our_code_system(system):
        return None
    return lookup(system, code) is not None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _target_types(type_ref: TypeRef) -> Iterator[str]:
    for url in type_ref.target_profiles:
        plain = url.split("|", 1)[0]
        if plain.startswith(CORE_BASE) and "/" not in plain[len(CORE_BASE) :]:
            name = plain[len(CORE_BASE) :]
            if is_resource_type(name):
                yield name
                continue
        definition = registry().get(plain)
        if definition is not None:
            yield definition.type


def _is_literal_reference(reference: str) -> bool:
    if reference.startswith("#") or is_absolute_uri(reference) or "?" in reference:
        return True
    parts = reference.split("/")
    return len(parts) >= 2 and is_resource_type(parts[0])


def _implied_type(reference: str) -> str | None:
    """``Patient/1``, ``http://x/fhir/Patient/1/_history/2`` -> ``Patient``."""
    parts = reference.split("?", 1)[0].split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) >= 2 and is_resource_type(parts[-2]):
        return parts[-2]
    return None
