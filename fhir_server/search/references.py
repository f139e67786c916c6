"""What a reference string points at (FHIR R4 references.html, search.html#reference).

One parser for the values stored in the index and the values a client searches with, so
both sides agree on what ``Patient/1``, ``http://x/fhir/Patient/1/_history/2``,
``urn:uuid:...`` and ``http://x/Questionnaire/q|2.0`` mean.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# references.html#literal: [type]/[id] with an optional /_history/[vid]; ids are
# [A-Za-z0-9\-\.]{1,64} (datatypes.html#id).
_TAIL = re.compile(
    r"(?:^|/)(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})"
    r"(?:/_history/(?P<version>[A-Za-z0-9\-.]{1,64}))?$"
)
_ABSOLUTE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.\-]*:")

URL_WIDTH = 1024


@dataclass(frozen=True, slots=True)
class Target:
    """A reference target. ``url`` is None for a reference relative to this server."""

    type: str | None
    id: str | None
    version: str | None
    url: str | None


def parse_reference(value: str) -> Target | None:
    """Parse a literal reference; None for contained (``#x``) and empty references."""
    if not value or value.startswith("#"):
        return None
    if _ABSOLUTE.match(value):
        m = _TAIL.search(value)
        if m and value.startswith(("http://", "https://")):
            # Keep the URL without /_history so a versioned and an unversioned
            # reference to the same resource share it.
            url = value[: m.start("version") - len("/_history/")] if m["version"] else value
            return Target(m["type"], m["id"], m["version"], url[:URL_WIDTH])
        return Target(None, None, None, value[:URL_WIDTH])
    m = _TAIL.fullmatch(value) if "/" in value else None
    if m and m.start() == 0:
        return Target(m["type"], m["id"], m["version"], None)
    return None


def parse_canonical(value: str) -> Target | None:
    """A canonical URL with an optional ``|version`` (references.html#canonical)."""
    if not value or value.startswith("#"):
        return None
    url, _, version = value.partition("|")
    m = _TAIL.search(url)
    # The tail of a canonical URL names the type but is not a resource id here: a
    # canonical resolves through the target's `url` element, not its id.
    return Target(m["type"] if m else None, None, version or None, url[:URL_WIDTH])
