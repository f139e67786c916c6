"""Where an extension may be used (FHIR R4 structuredefinition.html#context).

An extension definition lists contexts: ``element`` contexts name a type (``HumanName``, also
matching types derived from it), an element path (``Patient.name``, also reached through a
``contentReference``) or ``Element``/``Base`` (anywhere); ``extension`` contexts name the
extension a sub-extension may sit in; ``fhirpath`` contexts are not evaluated (accepted).
Cross-version extension URLs (``http://hl7.org/fhir/4.3/StructureDefinition/extension-...``)
are recognised by form, since their definitions are generated from other FHIR versions.
"""

from __future__ import annotations

import re

from profiles._definitions import ElementDefinition, StructureDefinition, registry

CROSS_VERSION = re.compile(r"http://hl7\.org/fhir/[0-9]\.[0-9]/StructureDefinition/extension-")


# R4 extension definitions whose context is narrower than where R4 itself uses them.
CONTEXT_ERRATA: dict[str, tuple[tuple[str, str], ...]] = {
    # The R4 snapshots put structuredefinition-fhir-type on ElementDefinition.type (the
    # context says ElementDefinition.type.code); later versions widened the context.
    "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type": (
        ("element", "ElementDefinition.type"),
    ),
    # R4's own CodeSystems and ValueSets carry the normative version (context: only
    # StructureDefinition).
    "http://hl7.org/fhir/StructureDefinition/structuredefinition-normative-version": (
        ("element", "CodeSystem"),
        ("element", "ValueSet"),
    ),
}

_TYPE_ANCESTORS: dict[str, tuple[str, ...]] = {}


def ancestors(type_code: str) -> tuple[str, ...]:
    """``SimpleQuantity`` -> (SimpleQuantity, Quantity, Element, Base)."""
    found = _TYPE_ANCESTORS.get(type_code)
    if found is None:
        chain = [type_code]
        definition = registry().of_type(type_code)
        while definition is not None and definition.base_definition:
            parent = definition.base_definition.rsplit("/", 1)[-1]
            chain.append(parent)
            definition = registry().of_type(parent)
        found = tuple(chain)
        _TYPE_ANCESTORS[type_code] = found
    return found


def context_allows(
    definition: StructureDefinition,
    host: ElementDefinition,
    host_type: str | None,
    path: str,
    parent_extension_url: str | None,
) -> bool:
    """structuredefinition.html#context: may this extension sit on this element?"""
    if not definition.context:
        return True
    host_path = path.rsplit(".", 1)[0]  # ``path`` ends in ".extension"
    candidates = {host.path, host_path}
    if host.content_reference:
        candidates.add(host.content_reference.split("#")[-1])
    if host_type:
        candidates.update(ancestors(host_type))
    if host.path == host.structure.type and host.structure.kind == "resource":
        candidates.update(ancestors(host.structure.type))
    for kind, expression in (*definition.context, *CONTEXT_ERRATA.get(definition.url, ())):
        if kind == "element":
            if expression in ("Element", "Base") or expression in candidates:
                return True
        elif kind == "extension":
            if (
                parent_extension_url is not None
                and expression.split("|", 1)[0] == parent_extension_url
            ):
                return True
        else:
            return True  # fhirpath contexts are not evaluated
    return False
