"""Finding the resources a conditional interaction's criteria select.

FHIR R4 http.html#cond-update / #ccreate / #cdelete: the criteria are a search on the
type; 0, 1 or several matches decide the outcome. The criteria must be understood in full
(an ignored parameter would widen the match), so they are parsed strictly, with the
parameters in force on the database as a search would be -- the R4 core plus the active
custom SearchParameters, checked inside the write transaction (live_registry), so a
parameter posted a moment ago by any process is already usable.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from fhir_server.errors import bad_request
from fhir_server.interactions.access import restrict_criteria
from fhir_server.search import parse_search
from fhir_server.search.limits import SearchLimits, check_search
from fhir_server.search.terminology import resolve_terminology
from fhir_server.storage.repository import StoredResource, WriteSession
from fhir_server.storage.search_sql import live_registry
from fhir_server.storage.terminology import SearchCodes
from fhir_server.versioning import now_us


def criteria_params(query_string: str) -> list[tuple[str, str]]:
    params = parse_qsl(query_string.lstrip("?"), keep_blank_values=True)
    if not params:
        raise bad_request("A conditional interaction needs search criteria")
    # Criteria pick one resource: the default search limits bound them (a URL, a header
    # or a Bundle entry could otherwise carry thousands of conditions), and a character
    # R4 strings forbid never reaches the database (fhir_server/search/limits.py).
    check_search(params, CRITERIA_LIMITS)
    return params


CRITERIA_LIMITS = SearchLimits()


def find_matches(session: WriteSession, rtype: str, query_string: str) -> list[StoredResource]:
    """At most two matches: enough to tell none, one and several apart."""
    params = criteria_params(query_string)
    # Serialise writers that use the same criteria (two identical conditional creates
    # must never both create): lock on the normalised criteria before searching.
    session.lock(rtype + "?" + "&".join(f"{k}={v}" for k, v in sorted(params)))
    query = parse_search(rtype, params, strict=True, reg=live_registry(session.conn))
    query = resolve_terminology(query, SearchCodes(session.search_connection()))
    # Only what the token may read can match (fhir_server.interactions.access): criteria
    # must not reveal whether another patient's data exists.
    query = restrict_criteria(rtype, query, reg=live_registry(session.conn), now_us=now_us())
    return session.find(query, limit=2)
