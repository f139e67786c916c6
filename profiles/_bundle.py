"""Rules of Bundle that no StructureDefinition states (FHIR R4 bundle.html).

- ``fullUrl`` is an absolute URL (bundle.html#fullUrl); a RESTful ``fullUrl``
  (``[base]/[type]/[id]``) agrees with the resource's type and id;
- the paging and identity links (self, first, previous, next, last) occur at most once
  (bundle.html#searchset, http.html#paging);
- references between entries resolve by the fullUrl rules (bundle.html#references): a
  relative reference is relative to the base of the referring entry's RESTful fullUrl; a
  resolved entry has the type the reference names;
- in a document, every reference resolves inside the Bundle, and every entry can be reached
  from the Composition by following references forwards or backwards (documents.html);
- in a search result, a ``match`` has an id and the type the search asked for (the self
  link's type or ``_type``), and an ``outcome`` is an OperationOutcome (bundle.html#searchset).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from profiles._definitions import is_resource_type
from profiles._issue import Issue
from profiles._primitives import is_absolute_uri

_RESTFUL = re.compile(
    r"(?P<base>.+)/(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})"
    r"(/_history/(?P<version>[^/]+))?"
)
_RELATIVE = re.compile(
    r"(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})(/_history/(?P<version>[^/]+))?"
)


_SINGLE_LINKS = frozenset({"self", "first", "previous", "prev", "next", "last"})


@dataclass(frozen=True, slots=True)
class _Entry:
    index: int
    full_url: str | None
    resource: dict[str, Any] | None


def _restful(url: str) -> re.Match[str] | None:
    match = _RESTFUL.fullmatch(url)
    if match is None or not is_resource_type(match["type"]):
        return None
    return match


def _references(value: Any, location: str) -> Iterator[tuple[str, str]]:
    """(location, reference) of every Reference.reference below ``value``, contained ones
    (``#id``) excepted."""
    if isinstance(value, dict):
        reference = value.get("reference")
        if isinstance(reference, str) and not reference.startswith("#"):
            yield location, reference
        for key, item in value.items():
            if key not in ("reference", "contained"):
                yield from _references(item, f"{location}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _references(item, f"{location}[{index}]")


def _version_of(resource: dict[str, Any] | None) -> str | None:
    meta = resource.get("meta") if resource else None
    version = meta.get("versionId") if isinstance(meta, dict) else None
    return version if isinstance(version, str) else None


def _resolve(reference: str, source: _Entry, entries: list[_Entry]) -> list[_Entry] | None:
    """The entries a reference resolves to; None when it is not a literal reference we can
    resolve (a search URL, a logical reference)."""
    version: str | None = None
    if is_absolute_uri(reference):
        restful = _restful(reference)
        target = reference
        if restful is not None and restful["version"]:
            target = reference.split("/_history/", 1)[0]
            version = restful["version"]
        found = [e for e in entries if e.full_url == target]
    else:
        relative = _RELATIVE.fullmatch(reference)
        if relative is None or not is_resource_type(relative["type"]):
            return None
        version = relative["version"]
        plain = reference.split("/_history/", 1)[0]
        identified = source.full_url and _identified_by_full_url(source)
        base = _restful(source.full_url) if source.full_url and identified else None
        # An entry whose (invalid, relative) fullUrl is the reference itself is what was meant;
        # the relative fullUrl is reported on its own.
        same = [e for e in entries if e.full_url == plain]
        if same:
            found = same
        elif base is not None:
            found = [e for e in entries if e.full_url == f"{base['base']}/{plain}"]
        else:
            found = [
                e
                for e in entries
                if e.full_url is None
                and isinstance(e.resource, dict)
                and e.resource.get("resourceType") == relative["type"]
                and e.resource.get("id") == relative["id"]
            ]
        if not found:
            # The HL7 validator also matches "Type/x" to an entry "urn:uuid:x".
            found = [e for e in entries if e.full_url == f"urn:uuid:{relative['id']}"]
    if version is not None:
        found = [e for e in found if _version_of(e.resource) in (None, version)]
    return found


def _identified_by_full_url(entry: _Entry) -> bool:
    """A RESTful fullUrl is a base for relative references only when the resource has
    that id (the HL7 validator's reading of bundle.html#references)."""
    restful = _restful(entry.full_url) if entry.full_url else None
    if restful is None or entry.resource is None:
        return True
    return entry.resource.get("id") == restful["id"]


def _implied_type(reference: str) -> str | None:
    parts = reference.split("/_history/", 1)[0].split("/")
    return parts[-2] if len(parts) >= 2 and is_resource_type(parts[-2]) else None


def bundle_findings(bundle: dict[str, Any], location: str) -> list[Issue]:
    findings: list[Issue] = []
    raw_entries = bundle.get("entry")
    entries: list[_Entry] = []
    for index, entry in enumerate(raw_entries if isinstance(raw_entries, list) else []):
        if not isinstance(entry, dict):
            continue
        full_url = entry.get("fullUrl") if isinstance(entry.get("fullUrl"), str) else None
        resource = entry.get("resource") if isinstance(entry.get("resource"), dict) else None
        entries.append(_Entry(index, full_url, resource))
        findings += _full_url_findings(entry, full_url, resource, f"{location}.entry[{index}]")
    findings += _link_findings(bundle, location)
    findings += _reference_findings(bundle, entries, location)
    if bundle.get("type") == "searchset":
        findings += _search_findings(bundle, location)
    return findings


def _searched_types(bundle: dict[str, Any]) -> set[str]:
    """The types a search asked for, from its self link (``Patient?...`` or ``?_type=A,B``)."""
    links = bundle.get("link")
    for link in links if isinstance(links, list) else []:
        if not isinstance(link, dict) or link.get("relation") != "self":
            continue
        url = link.get("url")
        if not isinstance(url, str):
            return set()
        path, _, query = url.partition("?")
        last = path.rstrip("/").rsplit("/", 1)[-1]
        if is_resource_type(last):
            return {last}
        for parameter in query.split("&"):
            name, _, value = parameter.partition("=")
            if name == "_type":
                return {t for t in value.split(",") if is_resource_type(t)}
    return set()


def _search_findings(bundle: dict[str, Any], location: str) -> list[Issue]:
    findings = []
    expected = _searched_types(bundle)
    entries = bundle.get("entry")
    for index, entry in enumerate(entries if isinstance(entries, list) else []):
        search = entry.get("search") if isinstance(entry, dict) else None
        resource = entry.get("resource") if isinstance(entry, dict) else None
        mode = search.get("mode") if isinstance(search, dict) else None
        if not isinstance(resource, dict) or mode not in ("match", "outcome"):
            continue
        where = f"{location}.entry[{index}].resource"
        kind = resource.get("resourceType")
        if mode == "outcome":
            if kind != "OperationOutcome":
                findings.append(
                    _finding(
                        "error",
                        "invalid",
                        f"This is not an OperationOutcome ({kind})",
                        where,
                        "bundle-search",
                    )
                )
            continue
        if not isinstance(resource.get("id"), str):
            findings.append(
                _finding("error", "invalid", "Search results must have ids", where, "bundle-search")
            )
        if expected and kind not in expected:
            findings.append(
                _finding(
                    "error",
                    "invalid",
                    f"This is not a matching resource type for the specified search ({kind} "
                    f"expecting {sorted(expected)})",
                    where,
                    "bundle-search",
                )
            )
    return findings


def _full_url_findings(
    entry: dict[str, Any], full_url: str | None, resource: dict[str, Any] | None, where: str
) -> list[Issue]:
    if full_url is None:
        return []
    if not is_absolute_uri(full_url):
        return [
            _finding(
                "error",
                "invalid",
                f"The fullUrl must be an absolute URL (not '{full_url}')",
                where,
                "bundle-fullurl",
            )
        ]
    restful = _restful(full_url)
    request = entry.get("request")
    creating = isinstance(request, dict) and request.get("method") == "POST"
    if restful is None or resource is None or creating:
        return []
    resource_id = resource.get("id")
    if not isinstance(resource_id, str):
        return [
            _finding(
                "error",
                "invalid",
                f"The fullUrl '{full_url}' looks like a RESTful server URL, but the resource "
                "has no id",
                where,
                "bundle-fullurl",
            )
        ]
    if restful["type"] != resource.get("resourceType") or restful["id"] != resource_id:
        return [
            _finding(
                "error",
                "invalid",
                f"The fullUrl '{full_url}' looks like a RESTful server URL, so it must end "
                f"with the correct type and id (/{resource.get('resourceType')}/{resource_id})",
                where,
                "bundle-fullurl",
            )
        ]
    return []


def _link_findings(bundle: dict[str, Any], location: str) -> list[Issue]:
    findings = []
    seen: set[str] = set()
    links = bundle.get("link")
    for index, link in enumerate(links if isinstance(links, list) else []):
        relation = link.get("relation") if isinstance(link, dict) else None
        if not isinstance(relation, str) or relation not in _SINGLE_LINKS:
            continue
        if relation in seen:
            findings.append(
                _finding(
                    "error",
                    "invalid",
                    f"The link relationship type '{relation}' can only occur once",
                    f"{location}.link[{index}]",
                    "bundle-link",
                )
            )
        seen.add(relation)
    return findings


def _reference_findings(
    bundle: dict[str, Any], entries: list[_Entry], location: str
) -> list[Issue]:
    findings: list[Issue] = []
    is_document = bundle.get("type") == "document"
    edges: dict[int, set[int]] = {e.index: set() for e in entries}
    for entry in entries:
        if entry.resource is None:
            continue
        base = f"{location}.entry[{entry.index}].resource"
        for where, reference in _references(entry.resource, base):
            found = _resolve(reference, entry, entries)
            if found is None:
                continue
            if len(found) == 1:
                target = found[0]
                edges[entry.index].add(target.index)
                edges[target.index].add(entry.index)
                implied = _implied_type(reference)
                actual = target.resource.get("resourceType") if target.resource else None
                if implied is not None and actual is not None and implied != actual:
                    findings.append(
                        _finding(
                            "error",
                            "required",
                            f"Matching reference for reference {reference} has resourceType "
                            f"{actual}",
                            where,
                            "bundle-reference-type",
                        )
                    )
            elif len(found) > 1 and is_document:
                findings.append(
                    _finding(
                        "error",
                        "invalid",
                        f"Found {len(found)} matches for '{reference}' in the bundle",
                        where,
                        "bundle-reference",
                    )
                )
            elif not found and is_document:
                findings.append(
                    _finding(
                        "error",
                        "not-found",
                        f"Can't find '{reference}' in the bundle",
                        where,
                        "bundle-reference",
                    )
                )
    if is_document and entries:
        reached = {entries[0].index}
        frontier = [entries[0].index]
        while frontier:
            for neighbour in edges[frontier.pop()]:
                if neighbour not in reached:
                    reached.add(neighbour)
                    frontier.append(neighbour)
        for entry in entries:
            if entry.index not in reached:
                findings.append(
                    _finding(
                        "error",
                        "informational",
                        f"Entry '{entry.full_url}' isn't reachable by traversing links (forward "
                        "or backward) from the Composition",
                        f"{location}.entry[{entry.index}]",
                        "bundle-document-reachable",
                    )
                )
    return findings


def _finding(severity: str, code: str, message: str, location: str, rule: str) -> Issue:
    return Issue(severity, code, message, (location,), rule)
