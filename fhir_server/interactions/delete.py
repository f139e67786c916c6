"""delete and conditional delete (FHIR R4 http.html#delete, #cdelete)."""

from __future__ import annotations

from fhir_server.errors import precondition_failed
from fhir_server.interactions.access import may_target
from fhir_server.interactions.conditional import find_matches
from fhir_server.interactions.outcome import WriteOutcome
from fhir_server.interactions.update import check_version
from fhir_server.interactions.write import write_deletion
from fhir_server.storage.repository import WriteSession
from fhir_server.versioning import check_id


def delete(
    session: WriteSession, rtype: str, id: str, *, now: int, if_match: int | None = None
) -> WriteOutcome:
    """Deleting an absent or already-deleted resource succeeds too and writes nothing
    (http.html#delete: 204 "if the resource does not exist at all")."""
    check_id(id)
    current = session.current(rtype, id)
    if not may_target("delete", current):
        # A resource the token cannot see is, for it, absent: the same 204 and nothing
        # written, so a delete cannot probe for other patients' ids (docs/AUTH.md).
        current = None
    check_version(current, if_match, rtype, id)
    if current is None or current.deleted:
        return WriteOutcome(204, None)
    return WriteOutcome(204, write_deletion(session, current, now=now))


def conditional_delete(
    session: WriteSession, rtype: str, criteria: str, *, now: int
) -> WriteOutcome:
    """One match is deleted, none is a success, several are refused with 412 (this server
    does not delete several resources on one request)."""
    matches = find_matches(session, rtype, criteria)
    if len(matches) > 1:
        raise precondition_failed(f"Criteria '{criteria}' match more than one {rtype}")
    if not matches:
        return WriteOutcome(204, None)
    return delete(session, rtype, matches[0].id, now=now)
