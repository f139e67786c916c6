"""The access hooks the interaction rooms call (HAPI-style pointcuts, without the weight).

The rooms know nothing about tokens. The HTTP layer (fhir_server.api.access) decides who
is asking and sets a :class:`InteractionAccess` for the request's work with
:func:`acting_as`; the rooms then ask it at four points:

- ``restrict``: a conditional interaction's criteria (http.html#cond-update, #ccreate,
  #cdelete, conditional references in a transaction) search only what the token may
  read, so criteria cannot probe other patients' data;
- ``target``: a stored resource about to be updated, patched or deleted -- visible to the
  token or not (a resource the token cannot see is answered as if it did not exist);
- ``write``: the new version (its content, and the stored one it replaces) -- every
  write ends in fhir_server.interactions.write, which asks here;
- ``read``: a resource read inside a batch or transaction;
- ``precheck_entry``: a Bundle entry's type is out of reach (403 whatever the id, as on the
  direct interaction);
- ``create_at``: may an update create a resource under an id the client chose?
- a deletion has no body: ``target`` and ``read_deleted`` decide on the version before it,
  so 410 is answered only to a token that could have seen what was deleted.

Without an access set (the events worker, the CLI, ``--auth none`` tests that build the
repository themselves) every hook allows. The access is a context variable so it also
reaches writes made by operations, which receive only the repository.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Protocol, TypeVar

from fhir_server.search.query import SearchQuery
from fhir_server.search.registry import Registry
from fhir_server.storage.repository import StoredResource

T = TypeVar("T")


class InteractionAccess(Protocol):
    def restrict(
        self, rtype: str, query: SearchQuery, *, reg: Registry, now_us: int
    ) -> SearchQuery: ...

    def target(self, interaction: str, current: StoredResource) -> bool:
        """True when the token may act on ``current``; False when it cannot see it (the
        caller answers as for a missing resource); raises a 403 FhirError when it sees
        it but may never do this."""
        ...

    def precheck_entry(self, interaction: str, rtype: str, chosen_id: bool = False) -> None:
        """Raise a 403 FhirError when no resource of ``rtype`` may get ``interaction``
        (for ``update``: a PUT, under a client-chosen id when ``chosen_id``)."""
        ...

    def create_at(self, rtype: str, id: str) -> bool:
        """True when an update may create ``rtype/id`` under this client-chosen id."""
        ...

    def read_deleted(
        self, interaction: str, current: StoredResource, before: StoredResource | None
    ) -> bool:
        """True when the token could have read the deleted resource (``before``: the
        version before the deletion)."""
        ...

    def write(
        self,
        interaction: str,
        rtype: str,
        resource: dict[str, Any] | None,
        previous: StoredResource | None,
        id: str,
        version: int,
    ) -> None:
        """Raise a FhirError (403) when the token may not write this version (``id``,
        ``version``: what it is about to be stored as)."""
        ...

    def read(self, interaction: str, stored: StoredResource) -> bool:
        """True when the token may read ``stored``."""
        ...


_ACCESS: ContextVar[InteractionAccess | None] = ContextVar("interaction_access", default=None)


def current_access() -> InteractionAccess | None:
    return _ACCESS.get()


@contextmanager
def acting_as(access: InteractionAccess | None) -> Iterator[None]:
    token = _ACCESS.set(access)
    try:
        yield
    finally:
        _ACCESS.reset(token)


def run_as(access: InteractionAccess | None, work: Callable[..., T], *args: Any) -> T:
    """Call ``work(*args)`` with ``access`` in force (run in the worker thread itself)."""
    with acting_as(access):
        return work(*args)


def restrict_criteria(rtype: str, query: SearchQuery, *, reg: Registry, now_us: int) -> SearchQuery:
    access = _ACCESS.get()
    return query if access is None else access.restrict(rtype, query, reg=reg, now_us=now_us)


class VersionSource(Protocol):
    def vread(self, rtype: str, id: str, version: int) -> StoredResource | None: ...


def version_before(source: VersionSource, deletion: StoredResource) -> StoredResource | None:
    """The version a deletion ended (a delete of a deleted resource writes nothing, so the
    version before a deletion holds a body)."""
    if deletion.version <= 1:
        return None
    return source.vread(deletion.rtype, deletion.id, deletion.version - 1)


def may_target(
    interaction: str, current: StoredResource | None, source: VersionSource | None = None
) -> bool:
    """May the token act on ``current``? A deletion is decided on the version before it
    (looked up in ``source``): one the token could not have seen is, for it, unknown."""
    access = _ACCESS.get()
    if access is None or current is None:
        return True
    if current.deleted:
        if source is None:
            return True  # the caller treats a deletion as absent (delete: 204 either way)
        return access.read_deleted(interaction, current, version_before(source, current))
    return access.target(interaction, current)


def may_create_at(rtype: str, id: str) -> bool:
    access = _ACCESS.get()
    return True if access is None else access.create_at(rtype, id)


def precheck(interaction: str, rtype: str, *, chosen_id: bool = False) -> None:
    access = _ACCESS.get()
    if access is not None:
        access.precheck_entry(interaction, rtype, chosen_id)


def check_write(
    interaction: str,
    rtype: str,
    resource: dict[str, Any] | None,
    previous: StoredResource | None,
    id: str,
    version: int,
) -> None:
    access = _ACCESS.get()
    if access is not None:
        access.write(interaction, rtype, resource, previous, id, version)


def may_read(interaction: str, stored: StoredResource) -> bool:
    access = _ACCESS.get()
    return True if access is None else access.read(interaction, stored)


def may_read_deleted(interaction: str, current: StoredResource, source: VersionSource) -> bool:
    """Whether a read of deleted ``current`` may answer 410 (else: 404, as if unknown)."""
    access = _ACCESS.get()
    if access is None:
        return True
    return access.read_deleted(interaction, current, version_before(source, current))
