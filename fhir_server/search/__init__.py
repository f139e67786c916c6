"""FHIR R4 search: the parameter registry, index extraction and search parsing.

Pure code (no database, no HTTP); the SQL lives in ``fhir_server.storage.search_sql``.

Public API::

    registry()                         the R4 search parameters: .get(rtype, code), .for_type(rtype)
    SearchParam                        one parameter as it applies to one resource type
    extract_index_rows(resource)       index-table name -> rows for one resource (write path)
    parse_search(rtype, params, *, strict=False, now_us=None, base_url=None) -> SearchQuery
    SearchQuery                        the parsed expression tree + result parameters
"""

from fhir_server.search.extraction import extract_index_rows
from fhir_server.search.parsing import parse_search
from fhir_server.search.query import (
    Chain,
    Criterion,
    Has,
    Include,
    SearchQuery,
    SortKey,
)
from fhir_server.search.registry import Registry, SearchParam, registry

__all__ = [
    "Chain",
    "Criterion",
    "Has",
    "Include",
    "Registry",
    "SearchParam",
    "SearchQuery",
    "SortKey",
    "extract_index_rows",
    "parse_search",
    "registry",
]
