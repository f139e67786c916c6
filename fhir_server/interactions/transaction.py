"""batch and transaction Bundles (FHIR R4 http.html#transaction, bundle.html#transaction).

A transaction is one database transaction: every entry succeeds or the whole Bundle is
rolled back and the client gets one OperationOutcome naming the failing entry. Entries
run in the order the spec fixes -- DELETE, POST, PUT/PATCH, GET/HEAD -- and answer in the
order they were given. Before anything is written, every ``fullUrl`` a POST or PUT
declares is bound to the resource's final id, and every reference to it (``urn:uuid:...``
or an absolute URL), and every conditional reference (``Patient?identifier=s|v``), is
rewritten to ``Type/id``.

A batch runs each entry on its own: one failing entry answers with its own error in the
response Bundle and the others still happen.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from fhir_server import conformance
from fhir_server.errors import FhirError, bad_request, error, not_found, precondition_failed
from fhir_server.formats.fhir_json import parse_fhir_json
from fhir_server.interactions.access import may_read, may_read_deleted, precheck
from fhir_server.interactions.bundle_entry import EntryRequest, parse_entry, status_line
from fhir_server.interactions.bundle_json import bundle_bytes, entry_bytes
from fhir_server.interactions.conditional import find_matches
from fhir_server.interactions.create import create
from fhir_server.interactions.delete import conditional_delete, delete
from fhir_server.interactions.outcome import WriteOutcome
from fhir_server.interactions.patch import PatchKind, conditional_patch, patch
from fhir_server.interactions.read import live, vread
from fhir_server.interactions.update import update
from fhir_server.storage.repository import Repository, StoredResource, WriteSession
from fhir_server.validation import validate_resource
from fhir_server.versioning import check_id, etag, instant, new_id, parse_http_date

# bundle.html#transaction: "process any DELETE interactions, then POST, then PUT or PATCH,
# then GET or HEAD".
_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}


@dataclass(frozen=True, slots=True)
class BundleOptions:
    base_url: str
    now: int
    return_minimal: bool = False
    # GET entries that are searches are answered by the search room when it is wired in.
    search: Callable[[WriteSession, str, str], bytes] | None = None


@dataclass(slots=True)
class _EntryResult:
    status: int
    stored: StoredResource | None = None
    body: bytes | None = None  # a GET's answer (resource or Bundle) when not a StoredResource
    outcome: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def process_bundle(repo: Repository, bundle: Any, options: BundleOptions) -> bytes:
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise bad_request("POST to the base URL needs a Bundle", "Bundle")
    kind = bundle.get("type")
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise bad_request("Bundle.entry must be a list", "Bundle.entry")
    if kind == "transaction":
        return _transaction(repo, entries, options)
    if kind == "batch":
        return _batch(repo, entries, options)
    raise bad_request(
        f"Bundle.type must be 'transaction' or 'batch' to be processed, not {kind!r}", "Bundle.type"
    )


# -- transaction ------------------------------------------------------------------------


def _transaction(repo: Repository, raw_entries: list[Any], options: BundleOptions) -> bytes:
    requests = [parse_entry(i, e) for i, e in enumerate(raw_entries)]
    _check_unique_full_urls(requests)
    # Structural validation needs no database: do it before taking the write lock, so a
    # large Bundle holds the lock only for the work that needs it.
    for request in requests:
        if request.method in ("POST", "PUT") and request.resource is not None:
            try:
                validate_resource(request.resource, expected_type=request.rtype)
            except FhirError as exc:
                raise exc.with_location(request.where) from None

    def work(session: WriteSession) -> list[_EntryResult]:
        bindings = _bind_full_urls(session, requests)
        by_url = {
            r.full_url: bindings[r.index].reference
            for r in requests
            if r.full_url and r.index in bindings
        }
        results: dict[int, _EntryResult] = {}
        for request in sorted(requests, key=lambda r: _ORDER[r.method]):
            try:
                rewritten = _rewrite(request, by_url, bindings, session, requests)
                results[request.index] = _run_entry(
                    session, rewritten, options, bindings, validated=True
                )
                warnings = conformance.take_warnings(session)
                if warnings:  # write-time validation warnings (docs/VALIDATOR.md)
                    results[request.index].outcome = conformance.entry_outcome(
                        warnings, request.where
                    )
            except FhirError as exc:
                raise exc.with_location(request.where) from None
        return [results[i] for i in range(len(requests))]

    results = repo.write(work)
    return _response_bundle("transaction-response", results, options)


def _check_unique_full_urls(requests: list[EntryRequest]) -> None:
    seen: set[str] = set()
    for request in requests:
        if request.full_url and request.method in ("POST", "PUT"):
            if request.full_url in seen:
                raise bad_request(
                    f"fullUrl {request.full_url!r} appears twice", f"{request.where}.fullUrl"
                )
            seen.add(request.full_url)


@dataclass(slots=True)
class _Binding:
    """Where a POST/PUT entry's resource ends up: ``Type/id``, and for a POST whether
    ``If-None-Exist`` already found it (then nothing is written)."""

    rtype: str
    id: str
    existing: StoredResource | None = None

    @property
    def reference(self) -> str:
        return f"{self.rtype}/{self.id}"


def _bind_full_urls(session: WriteSession, requests: list[EntryRequest]) -> dict[int, _Binding]:
    bindings: dict[int, _Binding] = {}
    for request in requests:
        rtype = request.rtype
        if rtype is None:
            continue
        if request.method == "POST":
            existing = None
            if request.if_none_exist:
                where = f"{request.where}.request.ifNoneExist"
                existing = _at_most_one(session, rtype, request.if_none_exist, where)
            bindings[request.index] = _Binding(
                rtype, existing.id if existing else new_id(), existing
            )
        elif request.method == "PUT":
            if request.id:
                bindings[request.index] = _Binding(rtype, request.id)
            elif request.criteria:
                match = _at_most_one(
                    session, rtype, request.criteria, f"{request.where}.request.url"
                )
                body_id = (request.resource or {}).get("id")
                bindings[request.index] = _Binding(
                    rtype, match.id if match else (body_id or new_id())
                )
    return bindings


def _at_most_one(
    session: WriteSession, rtype: str, criteria: str, where: str
) -> StoredResource | None:
    """The one resource conditional criteria select, None for none; several are 412."""
    try:
        matches = find_matches(session, rtype, criteria)
    except FhirError as exc:
        raise exc.with_location(where) from None
    if len(matches) > 1:
        raise precondition_failed(
            f"Criteria '{criteria}' match more than one {rtype}"
        ).with_location(where)
    return matches[0] if matches else None


def _rewrite(
    request: EntryRequest,
    by_url: dict[str, str],
    bindings: dict[int, _Binding],
    session: WriteSession,
    requests: list[EntryRequest],
) -> EntryRequest:
    """The entry with every reference to a bundle-local fullUrl or a conditional
    reference replaced by the final ``Type/id`` (a new object; inputs stay untouched,
    so a retried transaction starts clean)."""
    if request.resource is None:
        return request

    def resolve(reference: str) -> str:
        if reference in by_url:
            return by_url[reference]
        if "?" in reference and not reference.startswith(("#", "urn:", "http:", "https:")):
            return _conditional_reference(session, reference, requests, bindings)
        if reference.startswith("urn:uuid:") or reference.startswith("urn:oid:"):
            raise bad_request(
                f"Reference {reference!r} names no fullUrl in this Bundle",
                f"{request.where}.resource",
            )
        return reference

    return replace(request, resource=_map_references(request.resource, resolve))


def _conditional_reference(
    session: WriteSession,
    reference: str,
    requests: list[EntryRequest],
    bindings: dict[int, _Binding],
) -> str:
    """``Type?criteria`` must resolve to exactly one resource (http.html#trules). A POST
    in the same Bundle whose ifNoneExist is the same criteria counts as that resource."""
    rtype, _, criteria = reference.partition("?")
    for other in requests:
        if other.method == "POST" and other.rtype == rtype and other.if_none_exist == criteria:
            return bindings[other.index].reference
    matches = find_matches(session, rtype, criteria)
    if len(matches) != 1:
        raise precondition_failed(
            f"Conditional reference {reference!r} matches {len(matches) or 'no'}"
            f"{'+' if len(matches) > 1 else ''} resources; it must match exactly one"
        )
    return f"{rtype}/{matches[0].id}"


def _map_references(node: Any, resolve: Callable[[str], str]) -> Any:
    """``node`` with every ``Reference.reference`` passed through ``resolve``.

    Copy-on-write: a subtree in which nothing changes is returned as it is (the input is
    never mutated), so a resource with few references is not copied whole.
    """
    if isinstance(node, dict):
        changed: dict[str, Any] | None = None
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                new = resolve(value)
                if new == value:
                    continue
            elif isinstance(value, dict | list):
                new = _map_references(value, resolve)
                if new is value:
                    continue
            else:
                continue
            if changed is None:
                changed = dict(node)
            changed[key] = new
        return node if changed is None else changed
    if isinstance(node, list):
        items = [
            _map_references(item, resolve) if isinstance(item, dict | list) else item
            for item in node
        ]
        return node if all(a is b for a, b in zip(items, node, strict=True)) else items
    return node


def _run_entry(
    session: WriteSession,
    request: EntryRequest,
    options: BundleOptions,
    bindings: dict[int, _Binding],
    *,
    validated: bool = False,
) -> _EntryResult:
    now = options.now
    rtype = request.rtype
    if rtype is not None and request.method in _ENTRY_INTERACTIONS:
        # As on the direct interaction: a type out of the token's reach is a 403 whatever
        # the id, before anything is looked up, so the answer never says whether it exists.
        chosen_id = request.method == "PUT" and (
            request.id is not None or (request.resource or {}).get("id") is not None
        )
        precheck(_ENTRY_INTERACTIONS[request.method], rtype, chosen_id=chosen_id)
    if request.method == "POST":
        assert rtype and request.resource is not None
        binding = bindings[request.index]
        if binding.existing is not None:
            return _EntryResult(200, binding.existing)
        result = create(
            session, rtype, request.resource, now=now, assigned_id=binding.id, validated=validated
        )
        return _from_outcome(result)
    if request.method == "PUT":
        assert rtype and request.resource is not None
        target = bindings[request.index].id
        resource = request.resource
        # A conditional update with no match and no body id gets a server-assigned id.
        assigned = request.id is None and resource.get("id") is None
        if request.id is None:
            # conditional update: bound to the match (or a new id) in _bind_full_urls
            if resource.get("id") not in (None, target):
                raise bad_request(
                    f"The body's id {resource.get('id')!r} is not the matching {rtype} {target!r}",
                    f"{rtype}.id",
                )
            resource = {**resource, "id": target}
        return _from_outcome(
            update(
                session,
                rtype,
                target,
                resource,
                now=now,
                if_match=request.if_match,
                validated=validated,
                assigned=assigned,
            )
        )
    if request.method == "PATCH":
        assert rtype
        document, kind = _patch_document(request)
        if request.id:
            outcome = patch(
                session, rtype, request.id, document, kind, now=now, if_match=request.if_match
            )
        else:
            outcome = conditional_patch(
                session, rtype, request.criteria or "", document, kind, now=now
            )
        return _from_outcome(outcome)
    if request.method == "DELETE":
        assert rtype
        if request.id:
            outcome = delete(session, rtype, request.id, now=now, if_match=request.if_match)
        else:
            outcome = conditional_delete(session, rtype, request.criteria or "", now=now)
        return _from_outcome(outcome)
    return _run_get(session, request, options)


_ENTRY_INTERACTIONS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def _run_get(session: WriteSession, request: EntryRequest, options: BundleOptions) -> _EntryResult:
    rtype = request.rtype
    if rtype and request.id and request.version is None and request.path.count("/") == 1:
        precheck("read", rtype)
        check_id(request.id)
        current = session.read(rtype, request.id)
        if (
            current is not None
            and current.deleted
            and not may_read_deleted("read", current, session)
        ):
            current = None  # a deletion it could not have seen: as if unknown (docs/AUTH.md)
        stored = live(current, rtype, request.id)
        if not may_read("read", stored):  # as if unknown (docs/AUTH.md)
            raise not_found(f"{rtype}/{request.id} is not known")
        if request.if_none_match and _etag_matches(request.if_none_match, stored.version):
            return _EntryResult(304, stored, extra={"omit_resource": True})
        if request.if_modified_since:
            since = parse_http_date(request.if_modified_since)
            if since is not None and stored.last_updated // 1_000_000 <= since // 1_000_000:
                return _EntryResult(304, stored, extra={"omit_resource": True})
        return _EntryResult(200, stored)
    if rtype and request.id and request.version is not None:
        precheck("vread", rtype)
        try:
            stored = vread(session, rtype, request.id, request.version)
        except FhirError as exc:
            # A deletion version: 410 only to who could see the version it ended.
            if exc.status == 410:
                deletion = session.vread(rtype, request.id, int(request.version))
                if deletion is not None and not may_read_deleted("vread", deletion, session):
                    raise not_found(
                        f"{rtype}/{request.id} has no version {request.version}"
                    ) from None
            raise
        if not may_read("vread", stored):
            raise not_found(f"{rtype}/{request.id} has no version {request.version}")
        return _EntryResult(200, stored)
    if rtype and request.id is None and request.path == rtype and options.search is not None:
        return _EntryResult(200, body=options.search(session, rtype, request.criteria or ""))
    raise error(
        400,
        "not-supported",
        f"GET {request.path!r} is not supported inside a Bundle",
        f"{request.where}.request.url",
    )


def _etag_matches(header: str, version: int) -> bool:
    return header.strip() in (f'W/"{version}"', f'"{version}"', "*")


def _patch_document(request: EntryRequest) -> tuple[Any, PatchKind]:
    """In a Bundle, a JSON Patch travels as a Binary, a FHIRPath Patch as Parameters
    (http.html#patch, "Patch using JSON Patch in a transaction")."""
    resource = request.resource
    where = f"{request.where}.resource"
    if not isinstance(resource, dict):
        raise bad_request("A PATCH entry needs a Binary or Parameters resource", where)
    if resource.get("resourceType") == "Parameters":
        return resource, "fhirpath-patch"
    if resource.get("resourceType") == "Binary":
        if resource.get("contentType") != "application/json-patch+json":
            raise bad_request(
                "A Binary patch must have contentType application/json-patch+json", where
            )
        try:
            return parse_fhir_json(
                base64.b64decode(resource.get("data") or "", validate=True)
            ), "json-patch"
        except (binascii.Error, orjson.JSONDecodeError) as exc:
            raise bad_request(
                f"The Binary's data is not a JSON Patch document: {exc}", where
            ) from exc
    raise bad_request("A PATCH entry needs a Binary or Parameters resource", where)


def _from_outcome(outcome: WriteOutcome) -> _EntryResult:
    return _EntryResult(outcome.status, outcome.stored)


# -- batch ------------------------------------------------------------------------------


def _batch(repo: Repository, raw_entries: list[Any], options: BundleOptions) -> bytes:
    results: list[_EntryResult] = []
    for index, raw in enumerate(raw_entries):
        try:
            request = parse_entry(index, raw)
            if request.method == "POST" and request.if_none_exist:
                # The same rule as a plain conditional create, but on its own.
                def work(session: WriteSession, r: EntryRequest = request) -> _EntryResult:
                    assert r.rtype and r.resource is not None
                    return _from_outcome(
                        create(
                            session,
                            r.rtype,
                            r.resource,
                            now=options.now,
                            if_none_exist=r.if_none_exist,
                        )
                    )
            else:

                def work(session: WriteSession, r: EntryRequest = request) -> _EntryResult:
                    bindings = _bind_full_urls(session, [r])
                    return _run_entry(session, r, options, bindings)

            result, warnings = repo.write(conformance.with_warnings(work))
            if warnings:  # write-time validation warnings (docs/VALIDATOR.md)
                result.outcome = conformance.entry_outcome(warnings, f"Bundle.entry[{index}]")
            results.append(result)
        except FhirError as exc:
            located = exc.with_location(f"Bundle.entry[{index}]")
            results.append(_EntryResult(exc.status, outcome=located.to_operation_outcome()))
    return _response_bundle("batch-response", results, options)


# -- response ---------------------------------------------------------------------------


def _response_bundle(kind: str, results: list[_EntryResult], options: BundleOptions) -> bytes:
    entries = []
    for result in results:
        fields: dict[str, Any] = {}
        response: dict[str, Any] = {"status": status_line(result.status)}
        body: bytes | None = result.body
        stored = result.stored
        if stored is not None:
            fields["fullUrl"] = f"{options.base_url}/{stored.rtype}/{stored.id}"
            if result.status in (200, 201) and not stored.deleted:
                response["location"] = f"{stored.rtype}/{stored.id}/_history/{stored.version}"
            response["etag"] = etag(stored.version)
            response["lastModified"] = instant(stored.last_updated)
            if not stored.deleted and not result.extra.get("omit_resource"):
                body = None if options.return_minimal else stored.body
        if result.outcome is not None:
            response["outcome"] = result.outcome
        fields["response"] = response
        entries.append(entry_bytes(fields, body))
    return bundle_bytes(kind, entries, now=options.now)
