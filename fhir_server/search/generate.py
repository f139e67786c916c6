"""Build ``search_parameters.json`` from the official FHIR R4 SearchParameter definitions.

Run from the repository root (needs the reference data, present only on dev machines and CI)::

    python -m fhir_server.search.generate /work/shared/fhir-r4/definitions

It writes two data files. ``search_parameters.json``: it reads ``search-parameters.json``
(every SearchParameter of FHIR 4.0.1) and the
StructureDefinitions (``profiles-resources.json.gz``, ``profiles-types.json``) and writes,
per parameter, only what search needs at runtime: code, bases, type, FHIRPath expression,
targets, comparators/modifiers, components and url -- no prose, no XPath. Each expression is
also *compiled here*, per base type, into value paths: the JSON property names to follow
(choice elements such as ``Observation.effective`` expanded to ``effectiveDateTime``,
``effectivePeriod``...) and the FHIR type found at the end, which tells extraction how to
turn a value into index rows. Expressions outside the small path grammar below keep only
their FHIRPath text and are evaluated with fhirpathpy at runtime.

``compartments.json``: the five CompartmentDefinitions of R4 (Patient, Encounter,
RelatedPerson, Practitioner, Device; compartmentdefinition.html), from
``profiles-resources.json.gz``: per compartment, which search parameters of which resource
types put a resource in it (``{def}`` -- the compartment's owner itself -- kept as written).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FHIR_VERSION = "4.0.1"
PARAMS_FILE = "search-parameters.json"
RESOURCES_FILE = "profiles-resources.json.gz"
TYPES_FILE = "profiles-types.json"
OUTPUT = Path(__file__).resolve().parent / "search_parameters.json"
COMPARTMENTS_OUTPUT = Path(__file__).resolve().parent / "compartments.json"

# Types whose children are declared inline in the owning StructureDefinition.
_INLINE_TYPES = {"BackboneElement", "Element"}
# FHIRPath system types used for Element.id and primitive values (elementdefinition.html).
_SYSTEM_PREFIX = "http://hl7.org/fhirpath/System."


def _load(path: Path) -> dict[str, Any]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data: dict[str, Any] = json.load(fh)
    return data


def _sha256(path: Path) -> str:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


# --- element types ------------------------------------------------------------------


@dataclass(frozen=True)
class _Element:
    types: tuple[str, ...]
    content_reference: str | None


class ElementTypes:
    """Element path -> FHIR types, for every resource and complex datatype of R4."""

    def __init__(self, bundles: list[dict[str, Any]]) -> None:
        self.elements: dict[str, _Element] = {}
        self.resource_types: set[str] = set()
        self.concrete_resource_types: set[str] = set()
        self.type_names: dict[str, str] = {}  # lower-case -> spelling, for `as(DateTime)`
        for bundle in bundles:
            for entry in bundle.get("entry", []):
                sd = entry.get("resource", {})
                if sd.get("resourceType") != "StructureDefinition":
                    continue
                if sd.get("derivation") == "constraint":
                    continue
                if sd.get("kind") == "resource":
                    self.resource_types.add(sd["id"])
                    if not sd.get("abstract"):
                        self.concrete_resource_types.add(sd["id"])
                self.type_names[sd["id"].lower()] = sd["id"]
                for el in sd.get("snapshot", {}).get("element", []):
                    types = tuple(_type_code(t) for t in el.get("type", []))
                    ref = el.get("contentReference")
                    self.elements[el["path"]] = _Element(types, ref[1:] if ref else None)

    def type_name(self, name: str) -> str:
        return self.type_names.get(name.lower(), name)

    def children(self, context: str, name: str) -> list[tuple[str, str, str]]:
        """The (json_key, element_path, type) alternatives of child ``name`` of ``context``.

        ``context`` is an element path whose children are inline (a resource root or a
        backbone element) or a datatype name. A choice element (``value[x]``) yields one
        alternative per allowed type, keyed as JSON spells it (FHIR R4 formats.html#choice).
        """
        path = f"{context}.{name}"
        element = self.elements.get(path)
        if element is not None:
            if element.content_reference:
                target = self.elements[element.content_reference]
                return [(name, element.content_reference, t) for t in target.types]
            return [(name, path, t) for t in element.types]
        element = self.elements.get(path + "[x]")
        if element is not None:
            return [(name + t[0].upper() + t[1:], path + "[x]", t) for t in element.types]
        return []

    def context_of(self, element_path: str, type_code: str) -> str:
        """Where the children of a value of this element and type are declared."""
        if type_code in _INLINE_TYPES:
            return element_path
        return type_code


def _type_code(t: dict[str, Any]) -> str:
    code: str = t["code"]
    if code.startswith(_SYSTEM_PREFIX):
        return "string"
    return code


# --- the path grammar ---------------------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:"
    r"(?P<where_ref>\.where\(resolve\(\)\s+is\s+(?P<ref_type>[A-Za-z]+)\))"
    r"|(?P<where_eq>\.where\((?P<eq_field>[a-zA-Z]+)\s*=\s*'(?P<eq_value>[^']*)'\))"
    r"|(?P<as_fn>\.(?:as|ofType)\((?P<as_type>[A-Za-z]+)\))"
    r"|(?P<field>\.?[A-Za-z][A-Za-z0-9]*)"
    r"|(?P<index>\[(?P<index_n>\d+)\])"
    r")"
)


class NotSimple(Exception):
    """The expression is outside the path grammar; it goes to fhirpathpy at runtime."""


def split_union(expression: str) -> list[str]:
    """Top-level ``|`` alternatives of an expression (not inside brackets or quotes)."""
    parts: list[str] = []
    depth = 0
    quoted = False
    current: list[str] = []
    for ch in expression:
        if ch == "'":
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
        elif not quoted and depth == 0 and ch == "|":
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(ch)
    parts.append("".join(current).strip())
    return [p for p in parts if p]


def parse_path(part: str) -> tuple[str | None, list[tuple[str, str]]]:
    """Parse ``A.b.c``, ``(A.b as T)``, ``A.b.as(T)``, ``.where(...)``, ``[0]`` into steps.

    Returns the head (the type name the path starts from, or None for a relative path)
    and the steps: ("field", name), ("as", Type), ("ref", Type), ("eq", "field=value"),
    ("index", "n").
    """
    text = part.strip()
    steps: list[tuple[str, str]] = []
    m = re.fullmatch(r"\((.+?)\s+as\s+([A-Za-z]+)\)(.*)", text)
    if m:
        inner, as_type, rest = m.groups()
        head, inner_steps = parse_path(inner)
        steps = inner_steps + [("as", as_type)]
        _, rest_steps = _parse_steps(rest, allow_head=False) if rest else (None, [])
        return head, steps + rest_steps
    return _parse_steps(text, allow_head=True)


def _parse_steps(text: str, *, allow_head: bool) -> tuple[str | None, list[tuple[str, str]]]:
    pos = 0
    head: str | None = None
    steps: list[tuple[str, str]] = []
    first = True
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise NotSimple(text)
        pos = m.end()
        if m.group("where_ref"):
            steps.append(("ref", m.group("ref_type")))
        elif m.group("where_eq"):
            steps.append(("eq", f"{m.group('eq_field')}={m.group('eq_value')}"))
        elif m.group("as_fn"):
            steps.append(("as", m.group("as_type")))
        elif m.group("index"):
            steps.append(("index", m.group("index_n")))
        else:
            name = m.group("field")
            if first and allow_head and not name.startswith("."):
                if name[0].isupper():
                    head = name
                else:
                    steps.append(("field", name))
            elif name.startswith("."):
                steps.append(("field", name[1:]))
            else:
                raise NotSimple(text)
        first = False
    return head, steps


def compile_path(
    elements: ElementTypes, context: str, steps: list[tuple[str, str]]
) -> list[dict[str, Any]]:
    """Resolve parsed steps against the element definitions, starting at ``context``.

    Each result is one alternative: ``{"path": [...], "type": leaf FHIR type}`` where a
    path item is a JSON key (str) or a filter ({"ref": T}, {"eq": [field, value]},
    {"index": n}). Raises NotSimple when a step does not resolve.
    """
    # state: (path so far, element path, type code)
    states: list[tuple[list[Any], str, str]] = [([], context, context)]
    for kind, arg in steps:
        nxt: list[tuple[list[Any], str, str]] = []
        for path, element_path, type_code in states:
            if kind == "field":
                ctx = elements.context_of(element_path, type_code)
                # Walking into a contained/inline resource (Bundle.entry.resource.x)
                # needs its runtime type; leave that to fhirpathpy.
                if path and (type_code == "Resource" or type_code in elements.resource_types):
                    raise NotSimple(arg)
                alternatives = elements.children(ctx, arg)
                if not alternatives:
                    raise NotSimple(f"{ctx}.{arg}")
                for key, child_path, child_type in alternatives:
                    nxt.append((path + [key], child_path, child_type))
            elif kind == "as":
                wanted = elements.type_name(arg)
                if type_code == wanted:
                    nxt.append((path, element_path, type_code))
            elif kind == "ref":
                if type_code != "Reference":
                    raise NotSimple(f"resolve() on {type_code}")
                nxt.append((path + [{"ref": arg}], element_path, type_code))
            elif kind == "eq":
                field_name, value = arg.split("=", 1)
                nxt.append((path + [{"eq": [field_name, value]}], element_path, type_code))
            elif kind == "index":
                nxt.append((path + [{"index": int(arg)}], element_path, type_code))
        states = nxt
    # `A.value as Quantity` only keeps the valueQuantity alternative; an unresolved
    # `as` on a non-choice element leaves nothing, which we refuse to guess about.
    if not states:
        raise NotSimple("no alternative left")
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    for path, _, type_code in states:
        key = json.dumps([path, type_code])
        if key not in seen:
            seen.add(key)
            out.append({"path": path, "type": type_code})
    return out


def compile_expression(
    elements: ElementTypes, base: str, expression: str
) -> tuple[str, list[dict[str, Any]] | None]:
    """The part of ``expression`` that applies to ``base`` and its compiled paths.

    Shared parameters (``clinical-patient``) list one alternative per type; only the
    alternatives starting with ``base`` (or ``Resource``/``DomainResource``, or relative
    ones) concern it. Returns the filtered expression and the paths, or None for paths
    when some alternative is outside the grammar.
    """
    parts = split_union(expression)
    mine: list[str] = []
    for part in parts:
        head = _head(part)
        if head in (base, "Resource", "DomainResource", None):
            mine.append(part)
    filtered = " | ".join(mine)
    paths: list[dict[str, Any]] = []
    try:
        for part in mine:
            head, steps = parse_path(part)
            paths.extend(compile_path(elements, base, steps))
    except NotSimple:
        return filtered, None
    return filtered, paths


def _head(part: str) -> str | None:
    m = re.match(r"\(*\s*([A-Za-z][A-Za-z0-9]*)", part)
    if not m:
        return None
    name = m.group(1)
    return name if name[0].isupper() else None


# --- the output ---------------------------------------------------------------------


def search_parameters(bundle: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for entry in bundle.get("entry", []):
        resource = entry.get("resource", {})
        if resource.get("resourceType") == "SearchParameter":
            yield resource


def build(definitions: Path) -> dict[str, Any]:
    params_bundle = _load(definitions / PARAMS_FILE)
    elements = ElementTypes([_load(definitions / RESOURCES_FILE), _load(definitions / TYPES_FILE)])
    by_url = {sp["url"]: sp for sp in search_parameters(params_bundle)}
    out: list[dict[str, Any]] = []
    fallbacks = 0
    for sp in search_parameters(params_bundle):
        expression = sp.get("expression")
        entry: dict[str, Any] = {
            "code": sp["code"],
            "url": sp["url"],
            "type": sp["type"],
            "base": sp["base"],
        }
        if expression:
            entry["expression"] = expression
        if sp.get("target"):
            entry["target"] = sorted(sp["target"])
        if sp.get("comparator"):
            entry["comparator"] = sp["comparator"]
        if sp.get("modifier"):
            entry["modifier"] = sp["modifier"]
        if sp.get("multipleOr") is not None:
            entry["multipleOr"] = sp["multipleOr"]
        compiled: dict[str, Any] = {}
        for base in sp["base"] if expression else []:
            # Resource-level paths start at `Resource`; they hold for every type.
            context = "Resource" if base in ("Resource", "DomainResource") else base
            filtered, paths = compile_expression(elements, context, str(expression))
            if not filtered:
                continue
            item: dict[str, Any] = {"expression": filtered}
            if paths is None:
                fallbacks += 1
            else:
                item["paths"] = paths
            if sp["type"] == "composite":
                item["components"] = _components(elements, sp, by_url, base, paths)
            compiled[base] = item
        if compiled:
            entry["bases"] = compiled
        out.append(entry)
    out.sort(key=lambda e: (e["base"][0], e["code"]))
    return {
        "provenance": {
            "source": f"HL7 FHIR R4 {FHIR_VERSION} core definitions: {PARAMS_FILE}, "
            f"{RESOURCES_FILE}, {TYPES_FILE} (CC0-1.0)",
            "fhir_version": FHIR_VERSION,
            "sha256": {
                name: _sha256(definitions / name)
                for name in (PARAMS_FILE, RESOURCES_FILE, TYPES_FILE)
            },
            "generator": "python -m fhir_server.search.generate /work/shared/fhir-r4/definitions",
            "expressions_left_to_fhirpathpy": fallbacks,
        },
        "resource_types": sorted(elements.concrete_resource_types),
        "parameters": out,
    }


def _components(
    elements: ElementTypes,
    sp: dict[str, Any],
    by_url: dict[str, dict[str, Any]],
    base: str,
    paths: list[dict[str, Any]] | None,
) -> list[dict[str, Any]]:
    """Each component: its type (from the referenced parameter) and, per context type the
    composite's own paths end in, its compiled relative paths (search.html#composite)."""
    out: list[dict[str, Any]] = []
    for component in sp.get("component", []):
        ref = by_url.get(component["definition"])
        item: dict[str, Any] = {
            "definition": component["definition"],
            "expression": component["expression"],
            "type": ref["type"] if ref else None,
        }
        if paths is not None:
            per_context: list[list[dict[str, Any]]] = []
            try:
                for alternative in paths:
                    context = _element_context(elements, base, alternative)
                    relative: list[dict[str, Any]] = []
                    for part in split_union(component["expression"]):
                        _, steps = parse_path(part)
                        relative.extend(compile_path(elements, context, steps))
                    per_context.append(relative)
                item["paths"] = per_context
            except NotSimple:
                pass
        out.append(item)
    return out


def _element_context(elements: ElementTypes, base: str, alternative: dict[str, Any]) -> str:
    """The element path (or datatype) the children of a compiled path's value live in."""
    keys = [k for k in alternative["path"] if isinstance(k, str)]
    if not keys:
        return base
    element_path = base + "." + ".".join(keys)
    return elements.context_of(element_path, alternative["type"])


def build_compartments(definitions: Path) -> dict[str, Any]:
    """Compartment membership from the R4 CompartmentDefinitions: compartment code ->
    {url, resources: {type: [parameter codes]}}; types with no parameter are left out
    (compartmentdefinition.html: they are never in the compartment)."""
    bundle = _load(definitions / RESOURCES_FILE)
    compartments: dict[str, Any] = {}
    for entry in bundle.get("entry", []):
        cd = entry.get("resource", {})
        if cd.get("resourceType") != "CompartmentDefinition":
            continue
        members = {r["code"]: list(r["param"]) for r in cd.get("resource", []) if r.get("param")}
        compartments[cd["code"]] = {
            "url": cd["url"],
            "search": bool(cd.get("search")),
            "resources": dict(sorted(members.items())),
        }
    return {
        "provenance": {
            "source": f"HL7 FHIR R4 {FHIR_VERSION} core definitions: the CompartmentDefinition "
            f"resources of {RESOURCES_FILE} (CC0-1.0)",
            "fhir_version": FHIR_VERSION,
            "sha256": {RESOURCES_FILE: _sha256(definitions / RESOURCES_FILE)},
            "generator": "python -m fhir_server.search.generate /work/shared/fhir-r4/definitions",
        },
        "compartments": dict(sorted(compartments.items())),
    }


def write_compartments(data: dict[str, Any], output: Path) -> None:
    """One resource type per line: small diffs when a definition changes."""
    lines = [
        '{"provenance": ' + json.dumps(data["provenance"], sort_keys=True) + ",",
        ' "compartments": {',
    ]
    blocks = []
    for code, compartment in data["compartments"].items():
        members = ",\n".join(
            f"   {json.dumps(rtype)}: {json.dumps(params)}"
            for rtype, params in compartment["resources"].items()
        )
        blocks.append(
            f'  {json.dumps(code)}: {{"url": {json.dumps(compartment["url"])}, '
            f'"search": {json.dumps(compartment["search"])}, "resources": {{\n{members}}}}}'
        )
    lines.append(",\n".join(blocks))
    lines.append("}}")
    with open(output, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("definitions", type=Path, help="folder with the R4 definition bundles")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--compartments-output", type=Path, default=COMPARTMENTS_OUTPUT)
    args = parser.parse_args(argv)
    write_compartments(build_compartments(args.definitions), args.compartments_output)
    data = build(args.definitions)
    with open(args.output, "w", encoding="utf-8") as fh:
        # One parameter per line: small diffs when the generator changes.
        fh.write('{"provenance": ' + json.dumps(data["provenance"], sort_keys=True) + ",\n")
        fh.write(' "resource_types": ' + json.dumps(data["resource_types"]) + ",\n")
        fh.write(' "parameters": [\n')
        lines = [json.dumps(p, sort_keys=True, separators=(",", ":")) for p in data["parameters"]]
        fh.write(",\n".join(lines))
        fh.write("\n]}\n")
    left = data["provenance"]["expressions_left_to_fhirpathpy"]
    print(
        f"wrote {len(data['parameters'])} parameters to {args.output} "
        f"({left} base expressions left to fhirpathpy)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
