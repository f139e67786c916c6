"""read and vread (FHIR R4 http.html#read, #vread). Served from the stored bytes."""

from __future__ import annotations

from typing import Protocol

from fhir_server.errors import gone, not_found
from fhir_server.storage.repository import StoredResource
from fhir_server.versioning import check_id


class ResourceSource(Protocol):
    """The repository outside a transaction, or a write session inside one."""

    def read(self, rtype: str, id: str) -> StoredResource | None: ...
    def vread(self, rtype: str, id: str, version: int) -> StoredResource | None: ...


def read(repo: ResourceSource, rtype: str, id: str) -> StoredResource:
    check_id(id)
    return live(repo.read(rtype, id), rtype, id)


def vread(repo: ResourceSource, rtype: str, id: str, version: str) -> StoredResource:
    check_id(id)
    if not version.isdigit():
        raise not_found(f"{rtype}/{id} has no version '{version}'")
    stored = repo.vread(rtype, id, int(version))
    if stored is None:
        raise not_found(f"{rtype}/{id} has no version {version}")
    if stored.deleted:
        raise gone(f"{rtype}/{id} version {version} is a deletion")
    return stored


def live(stored: StoredResource | None, rtype: str, id: str) -> StoredResource:
    """404 for what never existed, 410 for what was deleted (http.html#read)."""
    if stored is None:
        raise not_found(f"{rtype}/{id} is not known")
    if stored.deleted:
        raise gone(f"{rtype}/{id} was deleted")
    return stored
