"""Build ``terminology/data/r4-core-terminology.json.gz`` from the FHIR R4 core definitions.

Run from the repository root (needs the reference data, which only dev machines and CI have;
the output is committed, so the server never reads ../shared)::

    python -m fhir_server.definitions.generate_terminology /work/shared/fhir-r4/definitions

It reads ``valuesets.json.gz`` (the FHIR-defined ValueSets and CodeSystems) and
``conceptmaps.json`` (CC0, HL7 FHIR R4 4.0.1) and keeps only the computable facts the
terminology service needs, in FHIR shape so the service treats them like any stored
resource:

- CodeSystem: url, version, name, status, content, caseSensitive, hierarchyMeaning,
  valueSet, property declarations (code, type, uri), and the concepts with code, display,
  designations (language, use, value), properties and nesting;
- ValueSet: url, version, name, status, compose (include / exclude with system, version,
  concept code + display, filter, valueSet) and, where the spec ships one, the expansion's
  contains;
- ConceptMap: url, version, name, status, source/target, groups with elements and targets
  (code, display, equivalence, dependsOn/product).

Narrative, descriptions, definitions, comments, contacts, copyright and extensions are left
out: the file holds facts, not prose. Output is deterministic (sorted keys, gzip mtime 0).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

FHIR_VERSION = "4.0.1"
VALUESETS_FILE = "valuesets.json.gz"
CONCEPTMAPS_FILE = "conceptmaps.json"
# The data belongs to the terminology library, which reads it at run time; this generator
# lives here because it reads files outside the package (the library does no such I/O).
OUTPUT = (
    Path(__file__).resolve().parents[2] / "terminology" / "data" / "r4-core-terminology.json.gz"
)
COMMAND = "python -m fhir_server.definitions.generate_terminology /work/shared/fhir-r4/definitions"

# Examples in conceptmaps.json (ids 101, 102, 103, example2) illustrate the resource; they
# are not part of the core mappings between FHIR and v2/v3 codes.
_EXAMPLE_CONCEPTMAPS = frozenset({"101", "102", "103", "example2"})

_COMMON = ("resourceType", "id", "url", "version", "name", "status")


def load_bundle(path: Path) -> dict[str, Any]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data: dict[str, Any] = json.load(fh)
    return data


def sha256_of_content(path: Path) -> str:
    """SHA-256 of the uncompressed bytes, the figure the definitions README records."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def _keep(source: dict[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    return {k: source[k] for k in keys if k in source}


def _value_key(item: dict[str, Any]) -> str | None:
    return next((k for k in item if k.startswith("value")), None)


def compact_concept(concept: dict[str, Any]) -> dict[str, Any]:
    out = _keep(concept, ("code", "display"))
    designations = [
        _keep(d, ("language", "use", "value"))
        for d in concept.get("designation", [])
        if "value" in d
    ]
    for d in designations:
        if "use" in d:
            d["use"] = _keep(d["use"], ("system", "code", "display"))
    if designations:
        out["designation"] = designations
    properties = []
    for prop in concept.get("property", []):
        key = _value_key(prop)
        if key is not None:
            properties.append({"code": prop["code"], key: prop[key]})
    if properties:
        out["property"] = properties
    children = [compact_concept(c) for c in concept.get("concept", [])]
    if children:
        out["concept"] = children
    return out


def compact_code_system(cs: dict[str, Any]) -> dict[str, Any]:
    out = _keep(cs, (*_COMMON, "content", "caseSensitive", "hierarchyMeaning", "valueSet"))
    declared = [_keep(p, ("code", "type", "uri")) for p in cs.get("property", [])]
    if declared:
        out["property"] = declared
    concepts = [compact_concept(c) for c in cs.get("concept", [])]
    if concepts:
        out["concept"] = concepts
    return out


def _compact_set(include: dict[str, Any]) -> dict[str, Any]:
    out = _keep(include, ("system", "version", "valueSet"))
    if "concept" in include:
        out["concept"] = [_keep(c, ("code", "display")) for c in include["concept"]]
    if "filter" in include:
        out["filter"] = [_keep(f, ("property", "op", "value")) for f in include["filter"]]
    return out


def _compact_contains(contains: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for item in contains:
        entry = _keep(item, ("system", "version", "code", "display", "abstract", "inactive"))
        if item.get("contains"):
            entry["contains"] = _compact_contains(item["contains"])
        out.append(entry)
    return out


def compact_value_set(vs: dict[str, Any]) -> dict[str, Any]:
    out = _keep(vs, _COMMON)
    compose = vs.get("compose")
    if compose:
        out["compose"] = _keep(compose, ("inactive",))
        for part in ("include", "exclude"):
            if compose.get(part):
                out["compose"][part] = [_compact_set(i) for i in compose[part]]
    expansion = vs.get("expansion")
    if expansion and expansion.get("contains"):
        out["expansion"] = {
            **_keep(expansion, ("identifier", "timestamp", "total")),
            "contains": _compact_contains(expansion["contains"]),
        }
    return out


def compact_concept_map(cm: dict[str, Any]) -> dict[str, Any]:
    out = _keep(cm, (*_COMMON, "sourceUri", "sourceCanonical", "targetUri", "targetCanonical"))
    groups = []
    for group in cm.get("group", []):
        g = _keep(group, ("source", "sourceVersion", "target", "targetVersion"))
        elements = []
        for element in group.get("element", []):
            e = _keep(element, ("code", "display"))
            targets = []
            for target in element.get("target", []):
                t = _keep(target, ("code", "display", "equivalence"))
                for key in ("dependsOn", "product"):
                    if target.get(key):
                        t[key] = [
                            _keep(d, ("property", "system", "value", "display"))
                            for d in target[key]
                        ]
                targets.append(t)
            if targets:
                e["target"] = targets
            elements.append(e)
        g["element"] = elements
        if "unmapped" in group:
            g["unmapped"] = _keep(group["unmapped"], ("mode", "code", "display", "url"))
        groups.append(g)
    if groups:
        out["group"] = groups
    return out


def build(definitions_dir: Path) -> dict[str, Any]:
    valuesets_path = definitions_dir / VALUESETS_FILE
    conceptmaps_path = definitions_dir / CONCEPTMAPS_FILE
    resources: list[dict[str, Any]] = []
    for entry in load_bundle(valuesets_path).get("entry", []):
        resource = entry.get("resource", {})
        if resource.get("resourceType") == "CodeSystem":
            resources.append(compact_code_system(resource))
        elif resource.get("resourceType") == "ValueSet":
            resources.append(compact_value_set(resource))
    for entry in load_bundle(conceptmaps_path).get("entry", []):
        resource = entry.get("resource", {})
        if resource.get("resourceType") == "ConceptMap" and resource.get("id") not in (
            _EXAMPLE_CONCEPTMAPS
        ):
            resources.append(compact_concept_map(resource))
    resources.sort(key=lambda r: (r["resourceType"], r["url"], r.get("version", "")))
    return {
        "provenance": {
            "fhirVersion": FHIR_VERSION,
            "sources": [
                {"file": VALUESETS_FILE, "sha256": sha256_of_content(valuesets_path)},
                {"file": CONCEPTMAPS_FILE, "sha256": sha256_of_content(conceptmaps_path)},
            ],
            "licence": "CC0-1.0 (HL7 FHIR)",
            "generator": COMMAND,
            "kept": "codes, displays, designations, properties, hierarchy, compose, "
            "expansion contains, ConceptMap groups; no narrative, descriptions or definitions",
        },
        "resources": resources,
    }


def write(data: dict[str, Any], output: Path = OUTPUT) -> None:
    raw = json.dumps(data, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()
    # mtime=0 keeps the file byte-identical between runs, so git shows real changes only.
    with open(output, "wb") as fh, gzip.GzipFile(fileobj=fh, mode="wb", mtime=0) as gz:
        gz.write(raw)


def main(argv: Iterable[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("definitions", type=Path, help="folder with the FHIR R4 definitions")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(list(argv) if argv is not None else None)
    data = build(args.definitions)
    write(data, args.output)
    counts: dict[str, int] = {}
    for r in data["resources"]:
        counts[r["resourceType"]] = counts.get(r["resourceType"], 0) + 1
    print(f"wrote {args.output} ({counts})")


if __name__ == "__main__":
    main()
