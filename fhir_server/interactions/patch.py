"""patch and conditional patch (FHIR R4 http.html#patch): JSON Patch or FHIRPath Patch."""

from __future__ import annotations

from typing import Any, Literal

from fhir_server.errors import bad_request, not_found, precondition_failed
from fhir_server.formats.fhir_json import parse_fhir_json
from fhir_server.interactions.access import may_target
from fhir_server.interactions.conditional import find_matches
from fhir_server.interactions.outcome import WriteOutcome
from fhir_server.interactions.read import live
from fhir_server.interactions.update import check_version, update
from fhir_server.patch.fhirpath_patch import apply_fhirpath_patch
from fhir_server.patch.json_patch import apply_json_patch
from fhir_server.storage.repository import WriteSession

PatchKind = Literal["json-patch", "fhirpath-patch"]


def patch(
    session: WriteSession,
    rtype: str,
    id: str,
    document: Any,
    kind: PatchKind,
    *,
    now: int,
    if_match: int | None = None,
) -> WriteOutcome:
    current = session.current(rtype, id)
    if not may_target("patch", current, session):
        raise not_found(f"{rtype}/{id} is not known")  # unseen: as if unknown (docs/AUTH.md)
    current = live(current, rtype, id)
    check_version(current, if_match, rtype, id)
    before = parse_fhir_json(current.body)  # decimals as stored, not rounded
    if kind == "json-patch":
        after = apply_json_patch(before, document)
    else:
        if not isinstance(document, dict) or document.get("resourceType") != "Parameters":
            raise bad_request("A FHIRPath Patch must be a Parameters resource")
        after = apply_fhirpath_patch(before, document)
    return update(session, rtype, id, after, now=now, if_match=if_match, method="PATCH")


def conditional_patch(
    session: WriteSession, rtype: str, criteria: str, document: Any, kind: PatchKind, *, now: int
) -> WriteOutcome:
    matches = find_matches(session, rtype, criteria)
    if len(matches) != 1:
        raise precondition_failed(
            f"Criteria '{criteria}' match {'no' if not matches else 'more than one'} {rtype}"
        )
    return patch(session, rtype, matches[0].id, document, kind, now=now)
