"""Loading the packaged FHIR content (the only I/O in this package)."""

import copy
import json
from functools import cache
from importlib import resources
from typing import Any

Resource = dict[str, Any]


@cache
def _packaged() -> tuple[Resource, ...]:
    folder = resources.files("terminology").joinpath("content")
    names = sorted(entry.name for entry in folder.iterdir() if entry.name.endswith(".json"))
    return tuple(json.loads(folder.joinpath(name).read_text(encoding="utf-8")) for name in names)


def load_content() -> list[Resource]:
    """All CodeSystems, ValueSets and ConceptMaps, as fresh dicts the caller may change."""
    return [copy.deepcopy(r) for r in _packaged()]


@cache
def _by_url() -> dict[str, Resource]:
    return {r["url"]: r for r in _packaged()}


def split_canonical(canonical: str) -> tuple[str, str | None]:
    """``url|version`` -> (url, version); FHIR R4 references.html#canonical."""
    url, _, version = canonical.partition("|")
    return url, version or None


def resource_by_url(canonical: str) -> Resource | None:
    """The packaged resource with this canonical URL (``|version`` must match when given)."""
    url, version = split_canonical(canonical)
    found = _by_url().get(url)
    if found is None or (version is not None and found.get("version") != version):
        return None
    return copy.deepcopy(found)
