"""create and conditional create (FHIR R4 http.html#create, http.html#ccreate)."""

from __future__ import annotations

from typing import Any

from fhir_server.errors import precondition_failed
from fhir_server.interactions.conditional import find_matches
from fhir_server.interactions.outcome import WriteOutcome
from fhir_server.interactions.write import write_version
from fhir_server.storage.repository import WriteSession
from fhir_server.validation import validate_resource
from fhir_server.versioning import new_id


def create(
    session: WriteSession,
    rtype: str,
    resource: dict[str, Any],
    *,
    now: int,
    if_none_exist: str | None = None,
    assigned_id: str | None = None,
    validated: bool = False,
) -> WriteOutcome:
    """Store ``resource`` under a server-assigned id.

    Any id in the body is ignored (http.html#create). ``assigned_id`` lets a transaction
    fix the id in advance so ``urn:uuid:`` references can be rewritten before writing.
    With ``If-None-Exist``: one match answers 200 with that resource and writes nothing,
    several matches answer 412. ``validated`` says the caller already ran structural
    validation (outside the write transaction, to keep the write lock short).
    """
    if not validated:
        validate_resource(resource, expected_type=rtype)
    if if_none_exist:
        matches = find_matches(session, rtype, if_none_exist)
        if len(matches) == 1:
            return WriteOutcome(200, matches[0])
        if len(matches) > 1:
            raise precondition_failed(
                f"If-None-Exist criteria '{if_none_exist}' match more than one {rtype}"
            )
    id = assigned_id or new_id()
    stored = write_version(session, resource, id=id, now=now, method="POST", previous=None)
    return WriteOutcome(201, stored)
