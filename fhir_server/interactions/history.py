"""history at instance, type and system level (FHIR R4 http.html#history).

Newest version first; ``_since``, ``_at`` and ``_count``; keyset paging through a signed
cursor on (lastUpdated, history row), so pages stay stable while new versions arrive.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from urllib.parse import urlencode

from fhir_server.errors import bad_request
from fhir_server.interactions.bundle_json import bundle_bytes, entry_bytes
from fhir_server.paging import decode_cursor, encode_cursor
from fhir_server.search import dates
from fhir_server.storage.repository import HistoryQuery, Repository, StoredResource
from fhir_server.versioning import etag, instant

# A restricted token's page skips at most this many rows it may not see; then it is short.
MAX_SKIPPED = 5000
_BATCH = 200  # rows read per query while a restricted page fills


def history_bundle(
    repo: Repository,
    params: list[tuple[str, str]],
    *,
    rtype: str | None,
    id: str | None,
    base_url: str,
    secret: bytes,
    now: int,
    default_count: int,
    max_count: int,
    admit: Callable[[StoredResource], bool] | None = None,
) -> bytes:
    """``admit``: the access decision per version (None: every version). History rows
    have no search index, so a restricted token's history is decided entry by entry on
    the stored bodies; further rows are read until the page holds ``_count`` admitted
    entries, and the ``next`` link continues after the last row examined. At most
    :data:`MAX_SKIPPED` rows the token may not see are skipped for one page: past that the
    page is short and ``next`` goes on from there (docs/AUTH.md), so one request's cost
    stays bounded whatever the history of others holds."""
    query, cursor = _parse(params, rtype, id, secret, default_count, max_count)
    picked: list[tuple[StoredResource, tuple[int, int]]] = []
    last: tuple[int, int] | None = None  # position of the last row examined
    more = False
    skipped = 0
    batch = query
    while True:
        rows = repo.history(batch)
        for stored, position in rows:
            if len(picked) == query.count:
                break
            last = position
            if admit is None or admit(stored):
                picked.append((stored, position))
            else:
                skipped += 1
        if len(rows) < batch.count:
            more = len(picked) == query.count and rows[-1][1] != last if rows else False
            break
        if len(picked) == query.count or skipped >= MAX_SKIPPED:
            more = True
            break
        assert last is not None
        # Read on after the last row examined, in batches at least a page long.
        batch = replace(query, after=last, count=max(query.count, _BATCH))
    if query.count == 0:
        more = False
    entries = []
    for stored, _position in picked:
        fields: dict[str, object] = {"fullUrl": f"{base_url}/{stored.rtype}/{stored.id}"}
        url = stored.rtype if stored.method == "POST" else f"{stored.rtype}/{stored.id}"
        fields["request"] = {"method": stored.method, "url": url}
        status = {"POST": "201", "DELETE": "204"}.get(stored.method, "200")
        fields["response"] = {
            "status": status,
            "etag": etag(stored.version),
            "lastModified": instant(stored.last_updated),
        }
        entries.append(entry_bytes(fields, None if stored.deleted else stored.body))

    path = "/".join(p for p in (rtype, id) if p)
    here = f"{base_url}/{path}/_history" if path else f"{base_url}/_history"
    plain = [(k, v) for k, v in params if k != "_cursor"]
    links = [("self", here + ("?" + urlencode(params) if params else ""))]
    if more and last is not None:
        lu, hpk = last
        token = encode_cursor({"lu": lu, "pk": hpk}, secret)
        links.append(("next", here + "?" + urlencode([*plain, ("_cursor", token)])))
    if cursor:
        links.append(("first", here + ("?" + urlencode(plain) if plain else "")))
    return bundle_bytes("history", entries, now=now, links=links)


def _parse(
    params: list[tuple[str, str]],
    rtype: str | None,
    id: str | None,
    secret: bytes,
    default_count: int,
    max_count: int,
) -> tuple[HistoryQuery, bool]:
    since = at = after = None
    count = default_count
    for name, value in params:
        if name == "_since":
            since = date_range(value, name)[0]
        elif name == "_at":
            at = date_range(value, name)
        elif name == "_count":
            if not value.isdigit():
                raise bad_request(f"_count must be a non-negative integer, not {value!r}", "_count")
            count = min(int(value), max_count)
        elif name == "_cursor":
            position = decode_cursor(value, secret)
            after = (int(position["lu"]), int(position["pk"]))
        elif name in ("_format", "_pretty", "_summary", "_elements"):
            continue
        else:
            raise bad_request(f"Unknown history parameter {name!r}", name)
    query = HistoryQuery(rtype=rtype, id=id, since=since, at=at, count=max(count, 0), after=after)
    return query, after is not None


def date_range(value: str, where: str) -> tuple[int, int]:
    """The instants (µs, UTC) a FHIR date/dateTime/instant of any precision covers, with
    the search module's time-zone rule (no zone means UTC)."""
    try:
        return dates.date_range(value.strip())
    except dates.InvalidDate as exc:
        raise bad_request(
            f"{where}: {value!r} is not a FHIR date, dateTime or instant", where
        ) from exc
