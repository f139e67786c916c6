"""One Bundle entry's request: parsed once, shared by batch and transaction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from fhir_server.definitions import R4_RESOURCE_TYPES
from fhir_server.errors import bad_request
from fhir_server.versioning import check_id, parse_etag

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


@dataclass(frozen=True, slots=True)
class EntryRequest:
    index: int
    method: str
    rtype: str | None  # None for system-level GETs (e.g. "metadata", "_history")
    id: str | None
    version: str | None  # GET Type/id/_history/vid
    criteria: str | None  # the query string of a conditional or search URL
    path: str  # the URL's path part, e.g. "Patient/1/_history"
    if_match: int | None
    if_none_exist: str | None
    if_none_match: str | None
    if_modified_since: str | None
    full_url: str | None
    resource: dict[str, Any] | None

    @property
    def where(self) -> str:
        return f"Bundle.entry[{self.index}]"


def parse_entry(index: int, entry: Any) -> EntryRequest:
    where = f"Bundle.entry[{index}]"
    if not isinstance(entry, dict):
        raise bad_request("A Bundle entry must be an object", where)
    request = entry.get("request")
    if not isinstance(request, dict):
        raise bad_request("A batch or transaction entry needs a request", f"{where}.request")
    method = request.get("method")
    if method not in METHODS:
        raise bad_request(f"Unsupported request.method {method!r}", f"{where}.request.method")
    url = request.get("url")
    if not isinstance(url, str) or not url:
        raise bad_request("request.url is required", f"{where}.request.url")
    parts = urlsplit(url)
    segments = [s for s in parts.path.split("/") if s]
    rtype = id = version = None
    if segments and segments[0] in R4_RESOURCE_TYPES:
        rtype = segments[0]
        if len(segments) >= 2 and not segments[1].startswith(("_", "$")):
            id = check_id(segments[1], f"{where}.request.url")
        if len(segments) == 4 and segments[2] == "_history":
            version = segments[3]
    elif segments and segments[0][:1].isupper():
        raise bad_request(f"Unknown resource type in {url!r}", f"{where}.request.url")
    resource = entry.get("resource")
    if resource is not None and not isinstance(resource, dict):
        raise bad_request("entry.resource must be a resource", f"{where}.resource")
    if method in ("POST", "PUT") and resource is None:
        raise bad_request(f"A {method} entry needs a resource", f"{where}.resource")
    if method in ("POST", "PUT", "PATCH", "DELETE") and rtype is None:
        raise bad_request(f"{method} {url!r} does not name a resource type", f"{where}.request.url")
    if method == "PUT" and id is None and not parts.query:
        raise bad_request("PUT needs Type/id or Type?criteria", f"{where}.request.url")
    if_match = request.get("ifMatch")
    full_url = entry.get("fullUrl")
    return EntryRequest(
        index=index,
        method=method,
        rtype=rtype,
        id=id,
        version=version,
        criteria=parts.query or None,
        path=parts.path.strip("/"),
        if_match=parse_etag(if_match, "ifMatch") if if_match else None,
        if_none_exist=request.get("ifNoneExist") or None,
        if_none_match=request.get("ifNoneMatch") or None,
        if_modified_since=request.get("ifModifiedSince") or None,
        full_url=full_url if isinstance(full_url, str) else None,
        resource=resource,
    )


def status_line(status: int) -> str:
    return f"{status} {_REASONS.get(status, '')}".strip()


_REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    304: "Not Modified",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    410: "Gone",
    412: "Precondition Failed",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Entity",
}
