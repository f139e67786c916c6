"""The one way a new version reaches storage: stamp, index, put.

Every write interaction (create, update, patch, delete, and their conditional forms)
ends here, so meta, index rows and history are always written together.
"""

from __future__ import annotations

from typing import Any

from fhir_server import conformance
from fhir_server.errors import FhirError
from fhir_server.interactions import access
from fhir_server.planning.override_bounds import override_issues
from fhir_server.search import Registry, extract_index_rows
from fhir_server.storage.repository import IndexRows, StoredResource, WriteSession
from fhir_server.storage.search_sql import live_registry
from fhir_server.versioning import stamp


def write_version(
    session: WriteSession,
    resource: dict[str, Any],
    *,
    id: str,
    now: int,
    method: str,
    previous: StoredResource | None,
    registry: Registry | None = None,
    index_rows: IndexRows | None = None,
) -> StoredResource:
    """``registry``: the search parameters to index with; by default the ones in force on
    the database (the R4 core plus active custom SearchParameters, checked once per
    transaction). ``index_rows``: rows the caller computed itself and proved equal to
    ``extract_index_rows`` under the parameters in force (the audit trail's AuditEvents,
    fhir_server.audit.balp.index_rows); extracted here when None."""
    # The access decision on the new content and the version it replaces (docs/AUTH.md):
    # a PUT onto nothing (or onto a deletion) creates.
    live = previous is not None and not previous.deleted
    interaction = {"POST": "create", "PATCH": "patch"}.get(method, "update" if live else "create")
    version = previous.version + 1 if previous else 1
    rtype = resource["resourceType"]
    access.check_write(interaction, rtype, resource, previous if live else None, id, version)
    # Profiles and, for a QuestionnaireResponse, its Questionnaire: 422 before anything
    # is stored (docs/VALIDATOR.md, write-time validation).
    conformance.check_write(session, resource)
    # Clinician overrides within the plan rules' bounds (docs/PLAN_ENGINE.md): 422 naming
    # the bound, before anything is stored.
    if bounds := override_issues(resource):
        raise FhirError(422, bounds)
    body = stamp(resource, id, version, now)
    return session.put(
        rtype=resource["resourceType"],
        id=id,
        version=version,
        last_updated=now,
        body=body,
        method=method,
        index_rows=index_rows
        if index_rows is not None
        else extract_index_rows(resource, registry or live_registry(session.conn)),
        previous=previous,
    )


def write_deletion(session: WriteSession, previous: StoredResource, *, now: int) -> StoredResource:
    """A delete is a new version with no content (http.html#delete: later reads are 410)."""
    access.check_write("delete", previous.rtype, None, previous, previous.id, previous.version + 1)
    return session.put(
        rtype=previous.rtype,
        id=previous.id,
        version=previous.version + 1,
        last_updated=now,
        body=b"",
        method="DELETE",
        deleted=True,
        index_rows=None,
        previous=previous,
    )
