"""FHIR R4 search: the parameter registry, index extraction, search parsing and the
rewrite step that picks the driving criterion.

Pure code (no database, no HTTP); the SQL lives in ``fhir_server.storage.search_sql``.

Public API::

    registry()                         the R4 core search parameters: .get(rtype, code), .for_type(rtype)
    Registry.with_params(params)       a registry with more parameters (custom SearchParameters)
    LiveRegistry                       core + a database's active custom parameters, rebuilt on change
    custom_params(resources, core)     the parameters SearchParameter resources define, and problems
    compartments()                     the R4 CompartmentDefinitions: owner type -> members
    SearchParam                        one parameter as it applies to one resource type
    extract_index_rows(resource, reg=None)   index-table name -> rows for one resource (write path)
    parse_search(rtype, params, *, strict=False, now_us=None, base_url=None, reg=None,
                 compartment=None, explain=False) -> SearchQuery
    SearchQuery                        the parsed expression tree + result parameters
    driving_order(criteria)            the criteria, the one to drive the query first
    resolve_terminology(query, codes)  (fhir_server.search.terminology) token :in/:not-in/
                                       :above/:below -> code sets, with a CodeSource
"""

from fhir_server.search.compartments import CompartmentDefinition, compartments
from fhir_server.search.custom import LiveRegistry, custom_params
from fhir_server.search.extraction import extract_index_rows
from fhir_server.search.parsing import parse_search
from fhir_server.search.plan import driving_order
from fhir_server.search.query import (
    Chain,
    Criterion,
    Has,
    Include,
    InCompartment,
    SearchQuery,
    SortKey,
)
from fhir_server.search.registry import Registry, SearchParam, registry

__all__ = [
    "Chain",
    "CompartmentDefinition",
    "Criterion",
    "Has",
    "InCompartment",
    "Include",
    "LiveRegistry",
    "Registry",
    "SearchParam",
    "SearchQuery",
    "SortKey",
    "compartments",
    "custom_params",
    "driving_order",
    "extract_index_rows",
    "parse_search",
    "registry",
]
