"""Finding the resources a conditional interaction's criteria select.

FHIR R4 http.html#cond-update / #ccreate / #cdelete: the criteria are a search on the
type; 0, 1 or several matches decide the outcome. The criteria must be understood in full
(an ignored parameter would widen the match), so they are parsed strictly.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from fhir_server.errors import bad_request
from fhir_server.search import parse_search
from fhir_server.storage.repository import StoredResource, WriteSession


def criteria_params(query_string: str) -> list[tuple[str, str]]:
    params = parse_qsl(query_string.lstrip("?"), keep_blank_values=True)
    if not params:
        raise bad_request("A conditional interaction needs search criteria")
    return params


def find_matches(session: WriteSession, rtype: str, query_string: str) -> list[StoredResource]:
    """At most two matches: enough to tell none, one and several apart."""
    params = criteria_params(query_string)
    # Serialise writers that use the same criteria (two identical conditional creates
    # must never both create): lock on the normalised criteria before searching.
    session.lock(rtype + "?" + "&".join(f"{k}={v}" for k, v in sorted(params)))
    query = parse_search(rtype, params, strict=True)
    return session.find(query, limit=2)
