"""The search parameters the server knows, per resource type.

Loaded once from ``search_parameters.json`` (built from the FHIR R4 SearchParameter bundle
by ``python -m fhir_server.search.generate``). Parameters defined on ``Resource`` and
``DomainResource`` (``_id``, ``_lastUpdated``, ``_tag``, ``_profile``, ``_security``,
``_source``, ``_text``) apply to every type (FHIR R4 search.html#all).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

DATA_FILE = Path(__file__).resolve().parent / "search_parameters.json"

# The FHIR search parameter types (search.html#ptypes).
PARAM_TYPES = frozenset(
    {"number", "date", "string", "token", "reference", "composite", "quantity", "uri", "special"}
)

# Where each parameter type's values are indexed (fhir_server.storage.schema).
TABLE_OF_TYPE = {
    "string": "sp_string",
    "token": "sp_token",
    "date": "sp_date",
    "number": "sp_number",
    "quantity": "sp_quantity",
    "reference": "sp_reference",
    "uri": "sp_uri",
}

# A compiled path item: a JSON key, or a filter ({"ref": T}, {"eq": [k, v]}, {"index": n}).
PathItem = str | dict[str, Any]


@dataclass(frozen=True, slots=True)
class ValuePath:
    """One way to reach a parameter's values: JSON keys and filters, and the FHIR type found."""

    path: tuple[PathItem, ...]
    type: str


@dataclass(frozen=True, slots=True)
class Component:
    """One component of a composite parameter (search.html#composite)."""

    definition: str
    expression: str
    type: str | None
    # Per alternative of the composite's own paths, the component's relative paths;
    # None when the component's expression is outside the compiled grammar.
    paths: tuple[tuple[ValuePath, ...], ...] | None


@dataclass(frozen=True, slots=True)
class SearchParam:
    """One search parameter as it applies to one resource type."""

    code: str
    type: str
    rtype: str  # the base this definition applies to ("Resource" for common ones)
    url: str
    expression: str | None  # the part of the FHIRPath expression that concerns rtype
    paths: tuple[ValuePath, ...] | None  # compiled; None -> evaluate with fhirpathpy
    targets: tuple[str, ...] = ()
    comparators: tuple[str, ...] = ()
    modifiers: tuple[str, ...] = ()
    components: tuple[Component, ...] = ()
    custom: bool = False  # defined by a SearchParameter resource on this server (custom.py)

    @property
    def table(self) -> str | None:
        return TABLE_OF_TYPE.get(self.type)


@dataclass(slots=True)
class Registry:
    """Search parameters by resource type and code."""

    provenance: dict[str, Any]
    types: frozenset[str] = frozenset()  # every concrete R4 resource type
    by_type: dict[str, dict[str, SearchParam]] = field(default_factory=dict)
    by_url: dict[str, SearchParam] = field(default_factory=dict)
    # What was wrong with custom SearchParameter resources that were left out (custom.py).
    problems: tuple[str, ...] = ()
    # Compiled extraction plans per resource type (extraction.plan_for), owned by this
    # registry so a registry with other parameters never reuses them.
    # (keyed by type, or by (type, parameter subset) for extract_index_rows(only=...)).
    plans: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

    def with_params(self, params: Iterable[SearchParam], problems: Iterable[str] = ()) -> Registry:
        """A new registry: this one plus ``params`` (this one is left unchanged)."""
        by_type = {rtype: dict(found) for rtype, found in self.by_type.items()}
        by_url = dict(self.by_url)
        for param in params:
            by_type.setdefault(param.rtype, {})[param.code] = param
            by_url.setdefault(param.url, param)
        return Registry(
            provenance=self.provenance,
            types=self.types,
            by_type=by_type,
            by_url=by_url,
            problems=tuple(problems),
        )

    @property
    def custom(self) -> list[SearchParam]:
        """The custom parameters in force (SearchParameter resources on this server)."""
        return [p for found in self.by_type.values() for p in found.values() if p.custom]

    def get(self, rtype: str | None, code: str) -> SearchParam | None:
        """The parameter ``code`` on ``rtype`` (None: the common ``Resource`` parameters)."""
        if rtype is not None:
            if rtype not in self.types:
                return None
            found = self.by_type.get(rtype, {}).get(code)
            if found is not None:
                return found
        common = self.by_type["Resource"].get(code)
        if common is not None:
            return common
        if rtype is not None:
            return self.by_type["DomainResource"].get(code)
        return None

    def for_type(self, rtype: str) -> list[SearchParam]:
        """Every parameter that applies to ``rtype``, its own first, then the common ones."""
        own = list(self.by_type.get(rtype, {}).values())
        codes = {p.code for p in own}
        common = [
            p
            for base in ("Resource", "DomainResource")
            for p in self.by_type.get(base, {}).values()
            if p.code not in codes
        ]
        return own + common

    def knows_type(self, rtype: str) -> bool:
        return rtype in self.types


def _value_paths(items: Iterable[dict[str, Any]]) -> tuple[ValuePath, ...]:
    return tuple(ValuePath(tuple(i["path"]), i["type"]) for i in items)


def load_registry(data: dict[str, Any]) -> Registry:
    """Build a registry from the generated data (a pure function, for tests too)."""
    reg = Registry(
        provenance=data.get("provenance", {}), types=frozenset(data.get("resource_types", ()))
    )
    for entry in data["parameters"]:
        bases: dict[str, Any] = entry.get("bases", {})
        for base in entry["base"]:
            compiled = bases.get(base)
            if compiled is None and base in ("Resource", "DomainResource"):
                compiled = bases.get("Resource")
            components: tuple[Component, ...] = ()
            if compiled and "components" in compiled:
                components = tuple(
                    Component(
                        definition=c["definition"],
                        expression=c["expression"],
                        type=c.get("type"),
                        paths=tuple(_value_paths(ctx) for ctx in c["paths"])
                        if "paths" in c
                        else None,
                    )
                    for c in compiled["components"]
                )
            param = SearchParam(
                code=entry["code"],
                type=entry["type"],
                rtype=base,
                url=entry["url"],
                expression=compiled["expression"] if compiled else None,
                paths=_value_paths(compiled["paths"]) if compiled and "paths" in compiled else None,
                targets=tuple(entry.get("target", ())),
                comparators=tuple(entry.get("comparator", ())),
                modifiers=tuple(entry.get("modifier", ())),
                components=components,
            )
            reg.by_type.setdefault(base, {})[param.code] = param
            reg.by_url.setdefault(param.url, param)
    reg.by_type.setdefault("Resource", {})
    reg.by_type.setdefault("DomainResource", {})
    return reg


@cache
def registry() -> Registry:
    """The registry of the FHIR R4 core search parameters (read once)."""
    with open(DATA_FILE, encoding="utf-8") as fh:
        return load_registry(json.load(fh))
