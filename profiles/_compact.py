"""StructureDefinition -> the compact form the validator reads.

A snapshot carries far more than validation needs (definitions, mappings, comments). The
compact form keeps, per element, only what decides validity: cardinality, types and their
profiles, content references, fixed and pattern values, bindings, constraint keys, slicing,
maxLength, min/max values and the primitive regex. The same function compacts the R4 core
definitions (at generation time) and our own StructureDefinitions (when first used), so there
is one reading of an ElementDefinition, not two.
"""

from __future__ import annotations

from typing import Any

# FHIR R4 elementdefinition.html: System.* type codes name FHIRPath types; this extension
# gives the FHIR type the wire format uses.
FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
REGEX_EXT = "http://hl7.org/fhir/StructureDefinition/regex"
SYSTEM_PREFIX = "http://hl7.org/fhirpath/System."

_CHOICE_PREFIXES = ("fixed", "pattern", "minValue", "maxValue")


def _type_code(element: dict[str, Any], type_ref: dict[str, Any]) -> str:
    code = str(type_ref["code"])
    # FHIR R4 resource.html#id: Resource.id is an id, although the R4 snapshots type it
    # System.String with fhir-type "string".
    if element.get("base", {}).get("path") == "Resource.id":
        return "id"
    if code.startswith(SYSTEM_PREFIX):
        for ext in type_ref.get("extension", []):
            if ext.get("url") == FHIR_TYPE_EXT:
                return str(ext["valueUrl"])
        return "string"
    return code


def _regex(type_ref: dict[str, Any]) -> str | None:
    for ext in type_ref.get("extension", []):
        if ext.get("url") == REGEX_EXT:
            return str(ext["valueString"])
    return None


def _choice_value(element: dict[str, Any], prefix: str) -> list[Any] | None:
    """``fixedUri: "x"`` -> ``["Uri", "x"]`` (the type suffix and the value)."""
    for key, value in element.items():
        if key.startswith(prefix) and key[len(prefix) : len(prefix) + 1].isupper():
            return [key[len(prefix) :], value]
    return None


def compact_element(element: dict[str, Any]) -> dict[str, Any]:
    fact: dict[str, Any] = {"id": element.get("id") or element["path"]}
    if element["path"] != _path_of_id(fact["id"]):
        fact["path"] = element["path"]
    if element.get("sliceName"):
        fact["sliceName"] = element["sliceName"]
    if element.get("min", 0):
        fact["min"] = element["min"]
    if element.get("max", "1") != "1":
        fact["max"] = element["max"]
    base_max = element.get("base", {}).get("max", element.get("max", "1"))
    if base_max not in ("0", "1"):
        # FHIR R4 json.html: the JSON array form follows the base cardinality, not the
        # profile's (a profile restricting a list to 0..1 still sends an array).
        fact["array"] = True
    types: list[Any] = []
    for type_ref in element.get("type", []):
        code = _type_code(element, type_ref)
        detail: dict[str, Any] = {}
        if type_ref.get("profile"):
            detail["profile"] = type_ref["profile"]
        if type_ref.get("targetProfile"):
            detail["targetProfile"] = type_ref["targetProfile"]
        regex = _regex(type_ref)
        if regex is not None:
            fact["regex"] = regex
        types.append({"code": code, **detail} if detail else code)
    if types:
        fact["types"] = types
    if "contentReference" in element:
        fact["contentReference"] = element["contentReference"].lstrip("#")
    for prefix in _CHOICE_PREFIXES:
        found = _choice_value(element, prefix)
        if found is not None:
            fact[prefix] = found
    if "maxLength" in element:
        fact["maxLength"] = element["maxLength"]
    binding = element.get("binding")
    if binding and binding.get("strength") in ("required", "extensible"):
        fact["binding"] = [binding["strength"], binding.get("valueSet")]
    keys = [c["key"] for c in element.get("constraint", [])]
    if keys:
        fact["constraints"] = keys
    slicing = element.get("slicing")
    if slicing:
        fact["slicing"] = {
            "discriminator": [[d["type"], d["path"]] for d in slicing.get("discriminator", [])],
            "rules": slicing.get("rules", "open"),
            "ordered": bool(slicing.get("ordered")),
        }
    if element.get("isModifier"):
        fact["modifier"] = True
    return fact


def _path_of_id(element_id: str) -> str:
    """``Observation.component:systolic.code`` -> ``Observation.component.code``."""
    return ".".join(part.split(":", 1)[0] for part in element_id.split("."))


def compact_structure(sd: dict[str, Any]) -> dict[str, Any]:
    """The compact form of a StructureDefinition that has a snapshot."""
    constraints: dict[str, list[Any]] = {}
    elements = []
    for element in sd["snapshot"]["element"]:
        elements.append(compact_element(element))
        for c in element.get("constraint", []):
            constraints.setdefault(
                c["key"], [c.get("severity", "error"), c.get("human", ""), c.get("expression")]
            )
    compact: dict[str, Any] = {
        "url": sd["url"],
        "name": sd.get("name", sd.get("id", "")),
        "type": sd["type"],
        "kind": sd["kind"],
        "derivation": sd.get("derivation", "specialization"),
        "abstract": bool(sd.get("abstract")),
        "constraints": constraints,
        "elements": elements,
    }
    if sd.get("version"):
        compact["version"] = sd["version"]
    if sd.get("baseDefinition"):
        compact["baseDefinition"] = sd["baseDefinition"]
    if sd.get("context"):
        compact["context"] = [[c["type"], c["expression"]] for c in sd["context"]]
    return compact
