"""update, create-on-update and conditional update (FHIR R4 http.html#update, #cond-update)."""

from __future__ import annotations

from typing import Any

from fhir_server.errors import bad_request, not_found, precondition_failed
from fhir_server.interactions.access import may_create_at, may_target
from fhir_server.interactions.conditional import find_matches
from fhir_server.interactions.outcome import WriteOutcome
from fhir_server.interactions.write import write_version
from fhir_server.storage.repository import StoredResource, WriteSession
from fhir_server.validation import validate_resource
from fhir_server.versioning import check_id, new_id, same_content


def update(
    session: WriteSession,
    rtype: str,
    id: str,
    resource: dict[str, Any],
    *,
    now: int,
    if_match: int | None = None,
    method: str = "PUT",
    validated: bool = False,
    assigned: bool = False,
) -> WriteOutcome:
    """Replace the current version, or create the resource under the client's id.

    The body's id must equal the URL's (http.html#update: 400 otherwise). An update whose
    content equals the current version writes nothing and answers 200 with that version.
    ``assigned``: the id is the server's (a conditional update that creates), not the
    client's choice.
    """
    check_id(id)
    if not validated:
        validate_resource(resource, expected_type=rtype)
    body_id = resource.get("id")
    if body_id is None:
        raise bad_request(f"The {rtype} in an update must carry id '{id}'", f"{rtype}.id")
    if body_id != id:
        raise bad_request(
            f"The body's id '{body_id}' does not match the URL's id '{id}'", f"{rtype}.id"
        )
    current = session.current(rtype, id)
    if not may_target("patch" if method == "PATCH" else "update", current, session):
        # A resource the token cannot see answers as unknown (docs/AUTH.md).
        raise not_found(f"{rtype}/{id} is not known")
    if current is None and not assigned and not may_create_at(rtype, id):
        # Update as create under a client-chosen id, refused to a token confined to
        # compartments with the very answer a hidden resource gets: a 201 here would tell
        # it that the ids it is refused exist (docs/AUTH.md, issue 4 item 7).
        raise not_found(f"{rtype}/{id} is not known")
    check_version(current, if_match, rtype, id)
    if current is not None and not current.deleted and same_content(current.body, resource):
        return WriteOutcome(200, current)
    stored = write_version(session, resource, id=id, now=now, method=method, previous=current)
    return WriteOutcome(201 if current is None or current.deleted else 200, stored)


def conditional_update(
    session: WriteSession,
    rtype: str,
    criteria: str,
    resource: dict[str, Any],
    *,
    now: int,
    if_match: int | None = None,
    validated: bool = False,
) -> WriteOutcome:
    """PUT [type]?criteria: none matches -> create, one -> update it, several -> 412."""
    if not validated:
        validate_resource(resource, expected_type=rtype)
    matches = find_matches(session, rtype, criteria)
    if len(matches) > 1:
        raise precondition_failed(f"Criteria '{criteria}' match more than one {rtype}")
    body_id = resource.get("id")
    if matches:
        target = matches[0].id
        if body_id is not None and body_id != target:
            raise bad_request(
                f"The body's id '{body_id}' is not the id of the matching {rtype} '{target}'",
                f"{rtype}.id",
            )
    else:
        target = body_id or new_id()
    return update(
        session,
        rtype,
        target,
        {**resource, "id": target},
        now=now,
        if_match=if_match,
        validated=True,
        # No match and no id in the body: the server chose the id, so creating it
        # reveals nothing. A body id is the client's choice (see update()).
        assigned=not matches and body_id is None,
    )


def check_version(
    current: StoredResource | None, if_match: int | None, rtype: str, id: str
) -> None:
    """If-Match (http.html#concurrency): the write applies only to that version."""
    if if_match is None:
        return
    if current is None or current.deleted:
        raise precondition_failed(f'If-Match W/"{if_match}" given but {rtype}/{id} does not exist')
    if current.version != if_match:
        raise precondition_failed(
            f"{rtype}/{id} is at version {current.version}, not {if_match} (If-Match)"
        )
