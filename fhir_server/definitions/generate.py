"""Build ``r4_structure.json.gz`` from the official FHIR 4.0.1 StructureDefinitions.

Run from the repository root (needs the reference data, which only dev machines and CI have)::

    python -m fhir_server.definitions.generate /work/shared/fhir-r4/definitions

It reads ``profiles-resources.json.gz`` and ``profiles-types.json`` (CC0, HL7 FHIR R4 4.0.1)
and writes only facts the server needs at runtime: for every resource type and datatype the
snapshot elements in definition order (XML element order depends on it, FHIR R4 xml.html),
with their types, cardinality, summary/modifier flags, content references and XML
representation. With ``--differences docs/R4-R4B-DIFFERENCES.md`` it also writes the report
of where R4 and the fhir.resources R4B models disagree.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import typing
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

FHIR_VERSION = "4.0.1"
RESOURCES_FILE = "profiles-resources.json.gz"
TYPES_FILE = "profiles-types.json"
OUTPUT = Path(__file__).resolve().parent / "r4_structure.json.gz"

# FHIR R4 elementdefinition.html: the type codes of Element.id, primitive ``value`` elements
# etc. are FHIRPath system types; the structuredefinition-fhir-type extension names the
# FHIR type the wire format uses instead.
FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
SYSTEM_TYPE_PREFIX = "http://hl7.org/fhirpath/System."

# The report states the exact command that made it; keep this the one place it is spelt.
DIFFERENCES_COMMAND = (
    "python -m fhir_server.definitions.generate /work/shared/fhir-r4/definitions "
    "--differences docs/R4-R4B-DIFFERENCES.md"
)


# R4 types whose R4B model has a different shape (R4B rewrote the evidence resources), so an
# R4 instance cannot be checked with it: not served (see docs/R4-R4B-DIFFERENCES.md).
RESTRUCTURED_IN_R4B = frozenset({"Evidence", "EvidenceVariable"})


def load_bundle(path: Path) -> dict[str, Any]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        return typing.cast(dict[str, Any], json.load(fh))


def sha256_of_content(path: Path) -> str:
    """SHA-256 of the uncompressed bytes, the figure the definitions README records."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def structure_definitions(bundle: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for entry in bundle.get("entry", []):
        resource = entry.get("resource", {})
        if resource.get("resourceType") == "StructureDefinition":
            yield resource


def type_code(type_ref: dict[str, Any]) -> str:
    code = str(type_ref["code"])
    if code.startswith(SYSTEM_TYPE_PREFIX):
        for ext in type_ref.get("extension", []):
            if ext.get("url") == FHIR_TYPE_EXT:
                return str(ext["valueUrl"])
        # Only xhtml.value lacks the extension; keep the system type name (e.g. "System.String").
        return code.removeprefix("http://hl7.org/fhirpath/")
    return code


def compact_element(element: dict[str, Any]) -> dict[str, Any]:
    """The facts of one ElementDefinition; defaults (min 0, false flags) are left out."""
    fact: dict[str, Any] = {"path": element["path"], "max": element.get("max", "1")}
    if element.get("min", 0):
        fact["min"] = element["min"]
    types = [type_code(t) for t in element.get("type", [])]
    if types:
        fact["types"] = list(dict.fromkeys(types))
    if element.get("isSummary"):
        fact["summary"] = True
    if element.get("isModifier"):
        fact["modifier"] = True
    if "contentReference" in element:
        fact["contentReference"] = element["contentReference"].lstrip("#")
    if element.get("representation"):
        fact["representation"] = element["representation"]
    return fact


def compact_definition(sd: dict[str, Any]) -> dict[str, Any]:
    # Constraint profiles (SimpleQuantity, MoneyQuantity) keep the base type's paths
    # ("Quantity.value"); we store them under their own name so lookups are uniform.
    name = sd["id"]
    elements = []
    for element in sd["snapshot"]["element"]:
        fact = compact_element(element)
        head, _, rest = fact["path"].partition(".")
        if head != name:
            fact["path"] = f"{name}.{rest}" if rest else name
        elements.append(fact)
    return {
        "kind": sd["kind"],
        "abstract": bool(sd.get("abstract")),
        "base": (sd.get("baseDefinition") or "").rsplit("/", 1)[-1] or None,
        "elements": elements,
    }


def r4b_model_class(type_name: str) -> Any | None:
    from fhir.resources.R4B import get_fhir_model_class

    try:
        return get_fhir_model_class(type_name)
    except ValueError:
        # fhir.resources raises ValueError for names it has no model for.
        return None


def build_structure(definitions_dir: Path) -> dict[str, Any]:
    import fhir.resources

    resources_path = definitions_dir / RESOURCES_FILE
    types_path = definitions_dir / TYPES_FILE
    definitions: dict[str, Any] = {}
    for path in (types_path, resources_path):
        for sd in structure_definitions(load_bundle(path)):
            if sd["kind"] == "logical":
                continue
            definitions[sd["id"]] = compact_definition(sd)
    resource_types = sorted(
        name for name, d in definitions.items() if d["kind"] == "resource" and not d["abstract"]
    )
    served = [
        name
        for name in resource_types
        if r4b_model_class(name) is not None and name not in RESTRUCTURED_IN_R4B
    ]
    return {
        "provenance": {
            "fhirVersion": FHIR_VERSION,
            "sources": [
                {"file": RESOURCES_FILE, "sha256": sha256_of_content(resources_path)},
                {"file": TYPES_FILE, "sha256": sha256_of_content(types_path)},
            ],
            "licence": "CC0-1.0 (HL7 FHIR)",
            "servedTypesCheckedWith": f"fhir.resources {fhir.resources.__version__} (R4B)",
            "generator": "python -m fhir_server.definitions.generate <definitions dir>",
        },
        "resourceTypes": resource_types,
        "servedResourceTypes": served,
        "definitions": definitions,
    }


def write_structure(structure: dict[str, Any], output: Path = OUTPUT) -> None:
    raw = json.dumps(structure, separators=(",", ":"), sort_keys=False).encode()
    # mtime=0 keeps the file byte-identical between runs, so git shows real changes only.
    with open(output, "wb") as fh, gzip.GzipFile(fileobj=fh, mode="wb", mtime=0) as gz:
        gz.write(raw)


# ---------------------------------------------------------------------------------------
# R4 versus the R4B pydantic models (the ARCHITECTURE rule: where they differ, R4 wins).


def r4_paths(structure: dict[str, Any], type_name: str) -> dict[str, bool]:
    """Element paths of a resource (its own backbone levels, no datatypes) -> is_array.

    Choice elements are expanded to their JSON names (``value[x]`` -> ``valueQuantity``...)
    because that is what both the wire and the pydantic field names use (FHIR R4
    formats.html#choice). ``contentReference`` elements are expanded in place, except where
    they point to one of their own ancestors (``Questionnaire.item.item``), so the listing
    does not depend on where the spec happened to define a shared backbone.
    """
    children: dict[str, list[dict[str, Any]]] = {}
    for element in structure["definitions"][type_name]["elements"][1:]:
        children.setdefault(element["path"].rpartition(".")[0], []).append(element)

    paths: dict[str, bool] = {}

    def walk(definition_path: str, wire_path: str, ancestors: frozenset[str]) -> None:
        for element in children.get(definition_path, []):
            name = element["path"].rpartition(".")[2]
            is_array = element["max"] != "1"
            if name.endswith("[x]"):
                for t in element.get("types", []):
                    paths[f"{wire_path}.{name[:-3]}{t[0].upper()}{t[1:]}"] = is_array
                continue
            path = f"{wire_path}.{name}"
            paths[path] = is_array
            target = element.get("contentReference", element["path"])
            if target not in ancestors:
                walk(target, path, ancestors | {target})

    walk(type_name, type_name, frozenset({type_name}))
    return paths


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """(innermost type, is_list) of an Optional[List[X]]-style pydantic annotation."""
    is_array = False
    while True:
        origin = typing.get_origin(annotation)
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if origin in (list, typing.List):  # noqa: UP006 - fhir.resources uses typing.List
            is_array = True
            annotation = args[0]
        elif origin is not None and args:
            # Optional[X], Annotated[X, ...]: the FHIR type is the first argument.
            annotation = args[0]
        else:
            return annotation, is_array


def r4b_paths(model: Any, prefix: str, ancestors: frozenset[Any] = frozenset()) -> dict[str, bool]:
    """Element paths of an R4B model class and its backbone elements -> is_array.

    Only backbone classes of the resource's own module are descended into: R4B models
    datatypes such as Dosage and Timing as BackboneElement subclasses too, but they are
    datatypes, not part of the resource. A backbone class is not descended into inside
    itself (``Questionnaire.item.item``), matching :func:`r4_paths`.
    """
    from fhir.resources.R4B.backboneelement import BackboneElement

    ancestors = ancestors | {model}
    paths: dict[str, bool] = {}
    for name, field in model.model_fields.items():
        extra = field.json_schema_extra or {}
        if not (isinstance(extra, dict) and extra.get("element_property")):
            continue  # fhir_comments, ``_field`` extension holders and other helpers
        inner, is_array = _unwrap(field.annotation)
        path = f"{prefix}.{field.alias or name}"
        paths[path] = is_array
        klass = getattr(inner, "get_model_klass", None)
        target = klass() if klass is not None else None
        if (
            isinstance(target, type)
            and issubclass(target, BackboneElement)
            and target.__module__ == model.__module__
            and target not in ancestors
        ):
            paths.update(r4b_paths(target, path, ancestors))
    return paths


def type_differences(structure: dict[str, Any], type_name: str) -> dict[str, list[str]]:
    model = r4b_model_class(type_name)
    r4 = r4_paths(structure, type_name)
    r4b = r4b_paths(model, type_name) if model is not None else {}
    return {
        "only_r4": sorted(set(r4) - set(r4b)),
        "only_r4b": sorted(set(r4b) - set(r4)),
        "cardinality": sorted(
            f"{p} (R4 {'0..*' if r4[p] else '..1'}, R4B {'0..*' if r4b[p] else '..1'})"
            for p in set(r4) & set(r4b)
            if r4[p] != r4b[p]
        ),
    }


def differences_report(structure: dict[str, Any]) -> str:
    import fhir.resources

    lines = [
        "# R4 (4.0.1) versus the fhir.resources R4B models",
        "",
        "Generated; do not edit by hand. Regenerate with:",
        "",
        "```",
        DIFFERENCES_COMMAND,
        "```",
        "",
        f"Compared: the FHIR {FHIR_VERSION} StructureDefinition snapshots "
        f"(`{RESOURCES_FILE}`) against the pydantic models of fhir.resources "
        f"{fhir.resources.__version__} (`fhir.resources.R4B`). Paths cover each resource and "
        "its backbone elements (datatypes are not descended into); choice elements are "
        "listed under their JSON names (`valueQuantity`). The server speaks R4 on the wire, "
        "so wherever a path below is R4-only, R4 wins and the R4B model cannot be used to "
        "validate or serialise it as is.",
        "",
    ]
    all_r4 = structure["resourceTypes"]
    served = set(structure["servedResourceTypes"])
    unserved = [t for t in all_r4 if t not in served]
    lines += [
        f"R4 resource types: {len(all_r4)}; also known to R4B (served): {len(served)}.",
        "",
        "R4 types without an R4B model (not served): " + ", ".join(unserved) + ".",
        "",
    ]
    same = []
    for type_name in structure["servedResourceTypes"]:
        diff = type_differences(structure, type_name)
        if not any(diff.values()):
            same.append(type_name)
            continue
        lines += [f"## {type_name}", ""]
        for key, title in (
            ("only_r4", "In R4, not in the R4B model"),
            ("only_r4b", "In the R4B model, not in R4"),
            ("cardinality", "Cardinality differs"),
        ):
            if diff[key]:
                lines.append(f"- {title}: " + ", ".join(f"`{p}`" for p in diff[key]))
        lines.append("")
    lines += ["## Identical element paths", "", ", ".join(same) + ".", ""]
    return "\n".join(lines)


def main(argv: Iterable[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("definitions", type=Path, help="folder with the FHIR R4 definitions")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--differences", type=Path, help="also write the R4/R4B report here")
    args = parser.parse_args(list(argv) if argv is not None else None)
    structure = build_structure(args.definitions)
    write_structure(structure, args.output)
    print(f"wrote {args.output} ({len(structure['definitions'])} definitions)")
    if args.differences:
        args.differences.write_text(differences_report(structure))
        print(f"wrote {args.differences}")


if __name__ == "__main__":
    main()
