"""Where the terminology service finds CodeSystems, ValueSets and ConceptMaps.

A :class:`Source` answers "the resource of this type with this canonical URL (and
version)" and "the ConceptMaps from or to this system". The library ships two: the
packaged content (the programme's own resources and the R4 core terminology that
``fhir_server.definitions.generate_terminology`` extracted into ``terminology/data``) and
a list of resources a caller holds. The server adds one over its database;
:class:`ChainSource` asks several in order, the first answer winning.

Every answer carries a ``marker`` that names the version of what was found (the stored
``meta.versionId``/``lastUpdated``, or the packaged content's name): the service caches
expansions under it and re-checks the markers of everything an expansion used.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Protocol

from terminology._content import _packaged

Resource = dict[str, Any]

CORE_DATA = "r4-core-terminology.json.gz"


@dataclass(frozen=True, slots=True)
class Found:
    """A resource and the marker of its version (None: not cacheable)."""

    resource: Resource
    marker: str | None


class Source(Protocol):
    def find(self, resource_type: str, url: str, version: str | None = None) -> Found | None:
        """The resource with this canonical URL; the latest version when none is given."""
        ...

    def concept_maps(self, system: str, reverse: bool = False) -> list[Found]:
        """ConceptMaps with a group from ``system`` (``reverse``: to ``system``)."""
        ...


def version_key(version: str | None) -> tuple[tuple[int, int | str], ...]:
    """Orders versions so that 1.10.0 comes after 1.9.2 (numbers compare as numbers)."""
    parts = re.split(r"[.\-+]", version or "")
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in parts)


def marker_of(resource: Resource) -> str | None:
    meta = resource.get("meta") or {}
    if "versionId" in meta or "lastUpdated" in meta:
        return f"{meta.get('versionId', '')}@{meta.get('lastUpdated', '')}"
    return None


def _latest(candidates: Sequence[Resource], version: str | None) -> Resource | None:
    if version is not None:
        return next((r for r in candidates if r.get("version") == version), None)
    if not candidates:
        return None
    return max(candidates, key=lambda r: version_key(r.get("version")))


def _maps_touching(resource: Resource, system: str, reverse: bool) -> bool:
    side = "target" if reverse else "source"
    return any(group.get(side) == system for group in resource.get("group", []))


class ResourceListSource:
    """Resources a caller holds (a test, a Parameters body); markers from their meta."""

    def __init__(self, resources: Iterable[Resource], marker: str | None = None) -> None:
        self._marker = marker
        self._by_url: dict[tuple[str, str], list[Resource]] = {}
        for r in resources:
            if isinstance(r, dict) and isinstance(r.get("url"), str):
                self._by_url.setdefault((r.get("resourceType", ""), r["url"]), []).append(r)

    def _found(self, resource: Resource) -> Found:
        return Found(resource, self._marker if self._marker is not None else marker_of(resource))

    def find(self, resource_type: str, url: str, version: str | None = None) -> Found | None:
        found = _latest(self._by_url.get((resource_type, url), []), version)
        return None if found is None else self._found(found)

    def concept_maps(self, system: str, reverse: bool = False) -> list[Found]:
        return [
            self._found(r)
            for (rtype, _), versions in self._by_url.items()
            if rtype == "ConceptMap"
            for r in versions
            if _maps_touching(r, system, reverse)
        ]


class ChainSource:
    """Ask each source in turn; the first that knows the URL answers."""

    def __init__(self, *sources: Source) -> None:
        self.sources = sources

    def find(self, resource_type: str, url: str, version: str | None = None) -> Found | None:
        for source in self.sources:
            found = source.find(resource_type, url, version)
            if found is not None:
                return found
        return None

    def concept_maps(self, system: str, reverse: bool = False) -> list[Found]:
        seen: set[tuple[str, str | None]] = set()
        out: list[Found] = []
        for source in self.sources:
            for found in source.concept_maps(system, reverse):
                key = (found.resource.get("url", ""), found.resource.get("version"))
                if key not in seen:
                    seen.add(key)
                    out.append(found)
        return out


@cache
def core_resources() -> tuple[Resource, ...]:
    """The R4 core CodeSystems, ValueSets and ConceptMaps (read once, on first use)."""
    raw = resources.files("terminology").joinpath("data", CORE_DATA).read_bytes()
    data = json.loads(gzip.decompress(raw))
    return tuple(data["resources"])


@cache
def core_provenance() -> dict[str, Any]:
    raw = resources.files("terminology").joinpath("data", CORE_DATA).read_bytes()
    provenance: dict[str, Any] = json.loads(gzip.decompress(raw))["provenance"]
    return provenance


@cache
def packaged_source() -> ResourceListSource:
    """The programme's content first (it is ours to change), then the R4 core."""
    return ResourceListSource([*_packaged(), *core_resources()], marker="packaged")


@cache
def core_source() -> ResourceListSource:
    return ResourceListSource(core_resources(), marker="r4-core")


@cache
def programme_source() -> ResourceListSource:
    return ResourceListSource(_packaged(), marker="programme")
