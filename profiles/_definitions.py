"""StructureDefinitions as the validator walks them: element trees, built once per definition.

The packaged data (``data/r4-structures.json.gz``: the R4 datatypes, resources, core profiles
and core extensions) and our own profiles (``content/``) are read on first use. A definition's
element tree is built from the compact form (:mod:`profiles._compact`) the first time the
validator asks for it, so validating a Patient does not build the other 600 definitions.
"""

from __future__ import annotations

import gzip
import json
import threading
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from profiles._compact import compact_structure

CORE_BASE = "http://hl7.org/fhir/StructureDefinition/"

# FHIR R4 datatypes.html: the primitive types and the JSON value each one takes.
PRIMITIVE_TYPES = frozenset(
    {
        "base64Binary",
        "boolean",
        "canonical",
        "code",
        "date",
        "dateTime",
        "decimal",
        "id",
        "instant",
        "integer",
        "markdown",
        "oid",
        "positiveInt",
        "string",
        "time",
        "unsignedInt",
        "uri",
        "url",
        "uuid",
        "xhtml",
    }
)


@dataclass(frozen=True, slots=True)
class TypeRef:
    code: str
    profiles: tuple[str, ...] = ()
    target_profiles: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Constraint:
    key: str
    severity: str
    human: str
    expression: str | None


@dataclass(frozen=True, slots=True)
class Slicing:
    discriminators: tuple[tuple[str, str], ...]
    rules: str  # open | closed | openAtEnd
    ordered: bool


class ElementDefinition:
    """One snapshot element, linked to its children and (when sliced) to its slices."""

    __slots__ = (
        "array",
        "binding",
        "children",
        "constraints",
        "content_reference",
        "fixed",
        "frames",
        "id",
        "is_modifier",
        "max",
        "max_length",
        "max_value",
        "min",
        "min_value",
        "name",
        "path",
        "pattern",
        "regex",
        "slice_name",
        "slices",
        "slicing",
        "structure",
        "types",
    )

    def __init__(self, fact: dict[str, Any], structure: StructureDefinition) -> None:
        self.id: str = fact["id"]
        self.path: str = fact.get("path") or ".".join(
            part.split(":", 1)[0] for part in self.id.split(".")
        )
        self.name: str = self.path.rsplit(".", 1)[-1]
        self.slice_name: str | None = fact.get("sliceName")
        self.min: int = int(fact.get("min", 0))
        max_text = str(fact.get("max", "1"))
        self.max: int | None = None if max_text == "*" else int(max_text)
        self.array: bool = bool(fact.get("array"))
        self.types: tuple[TypeRef, ...] = tuple(
            TypeRef(t)
            if isinstance(t, str)
            else TypeRef(t["code"], tuple(t.get("profile", ())), tuple(t.get("targetProfile", ())))
            for t in fact.get("types", ())
        )
        self.content_reference: str | None = fact.get("contentReference")
        self.fixed: tuple[str, Any] | None = _pair(fact.get("fixed"))
        self.pattern: tuple[str, Any] | None = _pair(fact.get("pattern"))
        self.min_value: tuple[str, Any] | None = _pair(fact.get("minValue"))
        self.max_value: tuple[str, Any] | None = _pair(fact.get("maxValue"))
        self.max_length: int | None = fact.get("maxLength")
        binding = fact.get("binding")
        self.binding: tuple[str, str] | None = (
            (binding[0], binding[1]) if binding and binding[1] else None
        )
        table = structure.constraint_table
        # ele-1 ("a value or children") is on every element; the walk checks it structurally
        # (empty objects, arrays and strings), so it is not evaluated per element.
        self.constraints: tuple[Constraint, ...] = tuple(
            Constraint(key, *table[key])
            for key in fact.get("constraints", ())
            if key in table and key != "ele-1"
        )
        slicing = fact.get("slicing")
        self.slicing: Slicing | None = (
            Slicing(
                tuple((d[0], d[1]) for d in slicing["discriminator"]),
                slicing["rules"],
                bool(slicing["ordered"]),
            )
            if slicing
            else None
        )
        self.is_modifier: bool = bool(fact.get("modifier"))
        self.regex: str | None = fact.get("regex")
        self.structure = structure
        self.children: list[ElementDefinition] = []
        self.slices: list[ElementDefinition] = []
        # Per type code: the frame (children by JSON name) the validator built for it.
        self.frames: dict[str, Any] = {}

    @property
    def is_choice(self) -> bool:
        return self.name.endswith("[x]")

    @property
    def type_codes(self) -> tuple[str, ...]:
        return tuple(t.code for t in self.types)

    def __repr__(self) -> str:
        return f"<ElementDefinition {self.id} of {self.structure.url}>"


def _pair(value: Any) -> tuple[str, Any] | None:
    return (value[0], value[1]) if value else None


class StructureDefinition:
    """A StructureDefinition with its snapshot as an element tree."""

    def __init__(self, compact: dict[str, Any]) -> None:
        self.url: str = compact["url"]
        self.version: str | None = compact.get("version")
        self.name: str = compact["name"]
        self.type: str = compact["type"]
        self.kind: str = compact["kind"]
        self.derivation: str = compact["derivation"]
        self.abstract: bool = compact["abstract"]
        self.base_definition: str | None = compact.get("baseDefinition")
        self.context: tuple[tuple[str, str], ...] = tuple(
            (c[0], c[1]) for c in compact.get("context", ())
        )
        self.constraint_table: dict[str, list[Any]] = compact["constraints"]
        elements = [ElementDefinition(fact, self) for fact in compact["elements"]]
        self.by_id: dict[str, ElementDefinition] = {e.id: e for e in elements}
        self.root = elements[0]
        for element in elements[1:]:
            parent_id, _, last = element.id.rpartition(".")
            if element.slice_name is not None and ":" in last:
                # ``A.b:s`` is a slice of ``A.b`` (and ``A.b:s/r`` a reslice, kept as a slice).
                sliced = self.by_id.get(f"{parent_id}.{last.split(':', 1)[0]}")
                if sliced is not None:
                    sliced.slices.append(element)
                continue
            parent = self.by_id.get(parent_id)
            if parent is not None:
                parent.children.append(element)

    @property
    def is_extension(self) -> bool:
        return self.type == "Extension" and self.derivation == "constraint"

    def __repr__(self) -> str:
        return f"<StructureDefinition {self.url}>"


# --- the registry ---------------------------------------------------------------------------


@cache
def _core() -> dict[str, Any]:
    raw = resources.files("profiles").joinpath("data", "r4-structures.json.gz").read_bytes()
    data: dict[str, Any] = json.loads(gzip.decompress(raw))
    return data


@cache
def own_structure_definitions() -> tuple[dict[str, Any], ...]:
    """Our StructureDefinitions (differential + snapshot), as packaged in ``content/``."""
    folder = resources.files("profiles").joinpath("content")
    names = sorted(
        entry.name
        for entry in folder.iterdir()
        if entry.name.startswith("StructureDefinition-") and entry.name.endswith(".json")
    )
    return tuple(json.loads(folder.joinpath(name).read_text(encoding="utf-8")) for name in names)


class Registry:
    """Compact definitions by canonical URL, built into element trees on first use."""

    def __init__(self) -> None:
        self._compact: dict[str, dict[str, Any]] = dict(_core()["structures"])
        for sd in own_structure_definitions():
            self._compact[sd["url"]] = compact_structure(sd)
        self._built: dict[str, StructureDefinition] = {}
        self._lock = threading.Lock()

    def add(self, structure_definition: dict[str, Any]) -> str:
        if "snapshot" not in structure_definition:
            raise ValueError("a StructureDefinition needs a snapshot to be used for validation")
        compact = compact_structure(structure_definition)
        with self._lock:
            self._compact[compact["url"]] = compact
            self._built.pop(compact["url"], None)
        return str(compact["url"])

    def get(self, canonical: str) -> StructureDefinition | None:
        url = canonical.split("|", 1)[0]
        found = self._built.get(url)
        if found is not None:
            return found
        compact = self._compact.get(url)
        if compact is None:
            return None
        with self._lock:
            found = self._built.get(url)
            if found is None:
                found = StructureDefinition(compact)
                self._built[url] = found
        return found

    def of_type(self, type_code: str) -> StructureDefinition | None:
        return self.get(CORE_BASE + type_code)

    def type_kind(self, type_code: str) -> tuple[str, str] | None:
        """(kind, derivation) of a core type, without building its element tree."""
        compact = self._compact.get(CORE_BASE + type_code)
        return (compact["kind"], compact["derivation"]) if compact is not None else None

    def urls(self) -> list[str]:
        return sorted(self._compact)

    def provenance(self) -> dict[str, Any]:
        return dict(_core()["provenance"])


@cache
def registry() -> Registry:
    return Registry()


@cache
def is_resource_type(code: str) -> bool:
    """True for the R4 resource types (abstract Resource and DomainResource included)."""
    return registry().type_kind(code) == ("resource", "specialization")
