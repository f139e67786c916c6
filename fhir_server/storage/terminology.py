"""The terminology service over this server's database and the shipped R4 core content.

The terminology library (``terminology``) is pure: it asks a ``Source`` for CodeSystems,
ValueSets and ConceptMaps by canonical URL. Here is the source over the database -- the
resources clients stored and the programme content loaded at start-up, found by their
``url`` (and ``version``) through the search engine like any other search -- chained
before the packaged content (the programme's own resources and the R4 core terminology),
so a stored resource wins over a packaged one with the same URL.

One :class:`StoredSource` serves one request on one connection and remembers what it
found, so an expansion that names a CodeSystem five times searches for it once. The
per-process expansion cache lives in the library, keyed by what each source reports as a
resource's version (``Type/id/_history/n`` here).

``SELFBACK_TERMINOLOGY_MAX_EXPANSION`` (default 10,000) caps how many codes an expansion
may have, for ``$expand`` and for the token ``:in``/``:not-in`` search modifiers alike.
"""

from __future__ import annotations

import os
from typing import Any

import orjson
from sqlalchemy import Connection, select

from fhir_server.search import parse_search
from fhir_server.storage.schema import resource
from fhir_server.storage.search_sql import match_pks
from terminology import TerminologyError
from terminology.service import DEFAULT_MAX_EXPANSION, TerminologyService
from terminology.sources import ChainSource, Found, packaged_source, version_key

# Enough for every version of one canonical a server plausibly holds.
_MAX_VERSIONS = 100


def max_expansion() -> int:
    raw = os.environ.get("SELFBACK_TERMINOLOGY_MAX_EXPANSION", "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else DEFAULT_MAX_EXPANSION


def _escape(value: str) -> str:
    """A search value with FHIR's special characters escaped (search.html#escaping)."""
    for ch in ("\\", ",", "|", "$"):
        value = value.replace(ch, "\\" + ch)
    return value


class StoredSource:
    """CodeSystems, ValueSets and ConceptMaps stored in the database (current versions)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._found: dict[tuple[str, str, str | None], Found | None] = {}

    def _search(self, rtype: str, params: list[tuple[str, str]]) -> list[Found]:
        query = parse_search(rtype, params, strict=True)
        pks = self.conn.execute(match_pks(query).limit(_MAX_VERSIONS)).scalars().all()
        if not pks:
            return []
        rows = self.conn.execute(select(*_COLUMNS).where(resource.c.pk.in_(pks))).all()
        return [Found(orjson.loads(row.body), _marker(rtype, row)) for row in rows]

    def find(self, resource_type: str, url: str, version: str | None = None) -> Found | None:
        key = (resource_type, url, version)
        if key not in self._found:
            params = [("url", _escape(url))]
            if version is not None:
                params.append(("version", _escape(version)))
            candidates = self._search(resource_type, params)
            # Several resources may share a URL (versions of one canonical): the latest.
            self._found[key] = (
                max(candidates, key=lambda f: version_key(f.resource.get("version")))
                if candidates
                else None
            )
        return self._found[key]

    def concept_maps(self, system: str, reverse: bool = False) -> list[Found]:
        param = "target-system" if reverse else "source-system"
        return self._search("ConceptMap", [(param, _escape(system))])

    def read(self, resource_type: str, id: str) -> Found | None:
        row = self.conn.execute(
            select(*_COLUMNS).where(
                resource.c.rtype == resource_type, resource.c.id == id, ~resource.c.deleted
            )
        ).first()
        if row is None:
            return None
        return Found(orjson.loads(row.body), _marker(resource_type, row))


_COLUMNS = (resource.c.id, resource.c.version, resource.c.last_updated, resource.c.body)


def _marker(rtype: str, row: Any) -> str:
    """A stored version, for the expansion cache: type, id, version and when it was written
    (so two databases served by one process never share an entry)."""
    return f"{rtype}/{row.id}/_history/{row.version}@{row.last_updated}"


def terminology_service(conn: Connection) -> tuple[TerminologyService, StoredSource]:
    """The service for one request: stored resources first, then the packaged content."""
    stored = StoredSource(conn)
    service = TerminologyService(
        ChainSource(stored, packaged_source()), max_expansion=max_expansion()
    )
    return service, stored


class SearchCodes:
    """The code sets the token search modifiers need (fhir_server.search.terminology)."""

    def __init__(self, conn: Connection) -> None:
        self.service, self.stored = terminology_service(conn)
        self.max_codes = self.service.max_expansion

    def value_set_codes(self, reference: str) -> dict[str, set[str]]:
        if reference.startswith("ValueSet/"):
            found = self.stored.read("ValueSet", reference.removeprefix("ValueSet/"))
            if found is None:
                raise TerminologyError(f"{reference} is not known here")
        else:
            found = self.service.find("ValueSet", reference)
        codes: dict[str, set[str]] = {}
        for entry in self.service.expansion(found.resource, found.marker):
            codes.setdefault(entry.system, set()).add(entry.code)
        return codes

    def related_codes(self, system: str, code: str, direction: str) -> set[str]:
        return self.service.related_codes(system, code, direction)
