"""Build the validator's data from the FHIR R4 definitions, and our profiles' snapshots.

Run from the repository root (needs the reference data; the outputs are committed)::

    python -m profiles.generate /work/shared/fhir-r4/definitions

It reads the official FHIR 4.0.1 bundles (CC0) and writes:

- ``profiles/data/r4-structures.json.gz``: every R4 datatype, resource, core profile
  (``profiles-others``) and core extension definition, in the compact form of
  :mod:`profiles._compact`;
- ``profiles/data/r4-valuesets.json.gz``: the codes of every R4 ValueSet that a required or
  extensible binding names and that can be enumerated from the CodeSystems in
  ``valuesets.json.gz`` (administrative-gender, observation-status, ...); the ones that
  cannot be (SNOMED CT, LOINC, UCUM, MIME types, ...) are listed by name; and the codes of
  every CodeSystem held complete there (to catch unknown codes in a known system);
- ``profiles/data/r4-search-parameters.json.gz``: type, base and expression of every core
  SearchParameter (to check ``derivedFrom`` and CapabilityStatement search parameters);
- ``profiles/content/StructureDefinition-*.json``: our profiles, each the differential
  authored in ``profiles/differential/`` plus the snapshot :mod:`profiles.snapshot` generates
  over the R4 base.

This module is the one place in the package that reads files outside it; the validator
itself only reads the package's own data.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from profiles._compact import compact_structure
from profiles._expansion import Expander, NotEnumerable
from profiles.snapshot import generate_snapshot

FHIR_VERSION = "4.0.1"
PACKAGE = Path(__file__).resolve().parent
DATA = PACKAGE / "data"
DIFFERENTIAL = PACKAGE / "differential"
CONTENT = PACKAGE / "content"
STRUCTURES_FILE = "r4-structures.json.gz"
VALUESETS_FILE = "r4-valuesets.json.gz"

SOURCES = (
    "profiles-types.json",
    "profiles-resources.json.gz",
    "profiles-others.json.gz",
    "extension-definitions.json.gz",
)
VALUESET_SOURCE = "valuesets.json.gz"
SEARCH_SOURCE = "search-parameters.json"
SEARCH_FILE = "r4-search-parameters.json.gz"
CORE_VALUESET_BASE = "http://hl7.org/fhir/ValueSet/"
COMMAND = "python -m profiles.generate /work/shared/fhir-r4/definitions"

# Snapshot elements keep what a reader of the profile needs; the base's RIM/v2 mappings and
# examples are dropped (they describe the base resource, not our constraints).
_DROPPED_FROM_SNAPSHOT = ("mapping", "example")


def _read(path: Path) -> dict[str, Any]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data: dict[str, Any] = json.load(fh)
    return data


def _sha256(path: Path) -> str:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def _resources(bundle: dict[str, Any], resource_type: str) -> Iterator[dict[str, Any]]:
    for entry in bundle.get("entry", []):
        resource = entry.get("resource", {})
        if resource.get("resourceType") == resource_type:
            yield resource


def load_definitions(definitions: Path) -> dict[str, dict[str, Any]]:
    """Every R4 StructureDefinition with a snapshot (logical models left out), by URL."""
    found: dict[str, dict[str, Any]] = {}
    for name in SOURCES:
        for sd in _resources(_read(definitions / name), "StructureDefinition"):
            if sd["kind"] != "logical" and "snapshot" in sd:
                found[sd["url"]] = sd
    return found


def _bound_value_sets(compacts: Iterable[dict[str, Any]]) -> set[str]:
    urls: set[str] = set()
    for compact in compacts:
        for element in compact["elements"]:
            binding = element.get("binding")
            if binding and binding[1]:
                urls.add(binding[1].split("|", 1)[0])
    return urls


def build_code_systems(definitions: Path) -> dict[str, list[str]]:
    """Every code of the CodeSystems that valuesets.json.gz holds complete, by URL."""

    def codes(concepts: list[dict[str, Any]]) -> Iterator[str]:
        for concept in concepts:
            yield concept["code"]
            yield from codes(concept.get("concept", []))

    bundle = _read(definitions / VALUESET_SOURCE)
    return {
        cs["url"]: sorted(set(codes(cs.get("concept", []))))
        for cs in sorted(_resources(bundle, "CodeSystem"), key=lambda cs: str(cs["url"]))
        if cs.get("content") == "complete"
    }


def build_value_sets(
    definitions: Path, bound: set[str]
) -> tuple[dict[str, dict[str, list[str]]], list[str]]:
    bundle = _read(definitions / VALUESET_SOURCE)
    code_systems = {cs["url"]: cs for cs in _resources(bundle, "CodeSystem")}
    value_sets = {vs["url"]: vs for vs in _resources(bundle, "ValueSet")}
    expander = Expander(code_systems, value_sets)
    enumerated: dict[str, dict[str, list[str]]] = {}
    not_enumerable: list[str] = []
    for url in sorted(bound):
        try:
            codes = expander.expand(url)
        except NotEnumerable:
            not_enumerable.append(url)
            continue
        enumerated[url] = {system: sorted(found) for system, found in sorted(codes.items())}
    return enumerated, not_enumerable


def build_search_parameters(definitions: Path) -> dict[str, list[Any]]:
    """Core SearchParameters by URL: [type, base types, expression] (for derivedFrom and
    CapabilityStatement checks)."""
    table: dict[str, list[Any]] = {}
    for sp in _resources(_read(definitions / SEARCH_SOURCE), "SearchParameter"):
        table[sp["url"]] = [sp["type"], sp.get("base", []), sp.get("expression")]
    return dict(sorted(table.items()))


def _write_gzip_json(data: Any, path: Path) -> None:
    raw = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
    # mtime=0: byte-identical output between runs, so git shows real changes only.
    with open(path, "wb") as fh, gzip.GzipFile(fileobj=fh, mode="wb", mtime=0) as gz:
        gz.write(raw)


def _strip(sd: dict[str, Any]) -> dict[str, Any]:
    for element in sd["snapshot"]["element"]:
        for key in _DROPPED_FROM_SNAPSHOT:
            element.pop(key, None)
    sd.pop("mapping", None)
    return sd


def build_profiles(known: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Our differentials with generated snapshots, in file-name order.

    A profile may build on another of ours (the resolver sees the ones already built).
    """
    built: dict[str, dict[str, Any]] = {}

    def resolve(url: str) -> dict[str, Any] | None:
        url = url.split("|", 1)[0]
        return built.get(url) or known.get(url)

    for path in sorted(DIFFERENTIAL.glob("StructureDefinition-*.json")):
        differential = json.loads(path.read_text(encoding="utf-8"))
        sd = _strip(generate_snapshot(differential, resolve))
        built[sd["url"]] = sd
    return list(built.values())


@dataclass(frozen=True)
class Generated:
    """Everything the generator writes, before it is written."""

    structures: dict[str, Any]
    value_sets: dict[str, Any]
    search_parameters: dict[str, Any]
    profiles: list[dict[str, Any]]


def build(definitions: Path) -> Generated:
    known = load_definitions(definitions)
    compacts = {url: compact_structure(sd) for url, sd in sorted(known.items())}
    ours = build_profiles(known)
    bound = _bound_value_sets(compacts.values()) | _bound_value_sets(
        compact_structure(sd) for sd in ours
    )
    # Only R4 core ValueSets come from the definitions; ours are the terminology package's.
    bound = {url for url in bound if url.startswith(CORE_VALUESET_BASE)}
    enumerated, not_enumerable = build_value_sets(definitions, bound)
    provenance = {
        "fhirVersion": FHIR_VERSION,
        "licence": "CC0-1.0 (HL7 FHIR)",
        "generator": COMMAND,
        "sources": [
            {"file": name, "sha256": _sha256(definitions / name)}
            for name in (*SOURCES, VALUESET_SOURCE, SEARCH_SOURCE)
        ],
    }
    return Generated(
        structures={"provenance": provenance, "structures": compacts},
        value_sets={
            "provenance": provenance,
            "valueSets": enumerated,
            "notEnumerable": not_enumerable,
            "codeSystems": build_code_systems(definitions),
        },
        search_parameters={
            "provenance": provenance,
            "searchParameters": build_search_parameters(definitions),
        },
        profiles=ours,
    )


def profile_file_text(sd: dict[str, Any]) -> str:
    return json.dumps(sd, indent=2, ensure_ascii=False) + "\n"


def write(generated: Generated) -> None:
    DATA.mkdir(exist_ok=True)
    CONTENT.mkdir(exist_ok=True)
    _write_gzip_json(generated.structures, DATA / STRUCTURES_FILE)
    _write_gzip_json(generated.value_sets, DATA / VALUESETS_FILE)
    _write_gzip_json(generated.search_parameters, DATA / SEARCH_FILE)
    for sd in generated.profiles:
        target = CONTENT / f"StructureDefinition-{sd['id']}.json"
        target.write_text(profile_file_text(sd), encoding="utf-8")


def main(argv: Iterable[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("definitions", type=Path, help="folder with the FHIR R4 definitions")
    args = parser.parse_args(list(argv) if argv is not None else None)
    generated = build(args.definitions)
    write(generated)
    print(
        f"wrote {len(generated.structures['structures'])} structures, "
        f"{len(generated.value_sets['valueSets'])} enumerated value sets "
        f"({len(generated.value_sets['notEnumerable'])} not enumerable), "
        f"{len(generated.search_parameters['searchParameters'])} search parameters to {DATA}; "
        f"{len(generated.profiles)} profiles to {CONTENT}"
    )


if __name__ == "__main__":
    main()
