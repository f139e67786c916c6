"""The web origins registered clients speak from: who may call the API from a browser
(CORS) and who may frame the sign-in pages (``frame-ancestors``).

Both sets come from the ``auth_client`` table (docs/AUTH.md "Browsers: CORS and framing"):

- **CORS origins**: every enabled client's ``origins`` -- the origins of its redirect URIs
  plus what ``selfback client register --origin`` added.
- **Frame ancestors**: the ``origins`` of enabled *EHR clients* (those registered with the
  ``__ehr-launch`` scope: the systems that create launch contexts and embed apps), plus
  ``SELFBACK_FRAME_ANCESTORS``.

Clients change rarely and are registered by another process (the CLI), so the sets are
read in one small query and kept for :data:`FRESH_SECONDS`; an origin not in the kept set
reloads it at most every :data:`MISS_RELOAD_SECONDS`, so a client registered while the
server runs is seen within a second or two, while a flood of unknown ``Origin`` headers
costs at most one query per interval.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import orjson
from sqlalchemy import select

from fhir_server.auth.policy import EHR_LAUNCH_SCOPE
from fhir_server.auth.tables import auth_client
from fhir_server.storage.database import Database

FRESH_SECONDS = 30.0
MISS_RELOAD_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class OriginSets:
    cors: frozenset[str]
    frame_ancestors: tuple[str, ...]  # sorted: it is rendered into a header


def origin_sets(rows: list[tuple[str, str, bool]], configured: tuple[str, ...]) -> OriginSets:
    """Pure: (origins JSON, scope, disabled) per client -> the two sets."""
    cors: set[str] = set()
    frames: set[str] = set(configured)
    for origins_json, scope, disabled in rows:
        if disabled:
            continue
        origins = orjson.loads(origins_json or "[]")
        cors.update(origins)
        if EHR_LAUNCH_SCOPE in scope.split():
            frames.update(origins)
    return OriginSets(frozenset(cors), tuple(sorted(frames)))


class RegisteredOrigins:
    """The two sets, cached; thread-safe enough by replacing one immutable tuple."""

    def __init__(self, db: Database, configured_frame_ancestors: tuple[str, ...] = ()) -> None:
        self.db = db
        self.configured = configured_frame_ancestors
        self._loaded: tuple[float, OriginSets] | None = None

    def load(self) -> OriginSets:
        """Read the table now (blocking: call it from a worker thread in async code)."""
        with self.db.reader.connect() as conn:
            rows = conn.execute(
                select(auth_client.c.origins, auth_client.c.scope, auth_client.c.disabled)
            ).all()
        sets = origin_sets([(r[0], r[1], bool(r[2])) for r in rows], self.configured)
        self._loaded = (time.monotonic(), sets)
        return sets

    def cached(self, origin: str | None = None) -> OriginSets | None:
        """The kept sets when they may be used as they are for ``origin``; None when the
        caller should :meth:`load` first (stale, never loaded, or a miss worth a reload)."""
        loaded = self._loaded
        if loaded is None:
            return None
        age = time.monotonic() - loaded[0]
        if age >= FRESH_SECONDS:
            return None
        if origin is not None and origin not in loaded[1].cors and age >= MISS_RELOAD_SECONDS:
            return None
        return loaded[1]

    def current(self, origin: str | None = None) -> OriginSets:
        """Blocking: the sets, reloaded when :meth:`cached` says so."""
        return self.cached(origin) or self.load()
