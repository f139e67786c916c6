"""SQL for a parsed search: the last step of parse -> rewrite -> generate (ARCHITECTURE.md).

``match_pks(query)`` turns a :class:`SearchQuery` into one SQLAlchemy Core ``SELECT`` of
``resource.pk`` for the current, not deleted resources that match every criterion. Each
parameter is a semi-join ``pk IN (SELECT res_pk FROM sp_<kind> WHERE ...)`` whose values
are OR-ed; parameters are AND-ed; chains join the reference table to the target
resources, ``_has`` runs the other way. The same statement runs on SQLite and PostgreSQL
(prefix tests are byte-order ranges, never dialect-specific LIKE semantics).

Value semantics (FHIR R4 search.html), with [lo, hi] the stored value's range and
[plo, phi] the search value's:

- date (#date, #prefix): eq lo >= plo and hi <= phi; ne its negation; gt hi > phi;
  lt lo < plo; ge gt or eq; le lt or eq; sa lo > phi; eb hi < plo; ap the ranges overlap
  (the search range widened, see parsing.parse_date_value).
- number, quantity (#number): eq the value lies in [plo, phi) (the search value's
  significant figures); gt/lt/ge/le/sa/eb against the exact value; ap overlap with
  +-10%. Quantities with a UCUM unit we know also match in canonical units.
- token (#token): code | system|code | |code (no system) | system| ; :not excludes
  resources with a match (and keeps those with no value); :text is a prefix test on
  the normalised display/text.
- string (#string): prefix on the normalised value; :exact equality on the exact value;
  :contains anywhere in the normalised value.
- reference (#reference): id, Type/id, absolute URL, canonical URL[|version]; relative
  values match only relative (local) references.
- uri (#uri): equality; :below prefix; :above the stored value is a prefix of the search.
- composite (#composite): every component matched by rows of the same element (grp).
- chains (#chaining) join relative references to current targets (canonical references
  through the target's ``url``); ``_has`` (#has) runs the other way; both nest.

``execute_search(conn, query, ...)`` reads one page: ``_sort`` keys (search.html#sort),
keyset paging on (keys, pk) with signed cursors (never OFFSET), ``_total``, and
``_include``/``_revinclude`` (with ``:iterate``) as one IN query per include per round,
capped (fhir-server-anchors.md 6.4).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    and_,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
)

from fhir_server.errors import Issue, bad_request
from fhir_server.paging import decode_cursor, encode_cursor
from fhir_server.search.query import (
    Chain,
    CompositeValue,
    Criterion,
    DateValue,
    Has,
    Include,
    Node,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    SearchQuery,
    TextValue,
    TokenValue,
    UriValue,
    Value,
)
from fhir_server.search.registry import TABLE_OF_TYPE
from fhir_server.search.text import normalise
from fhir_server.storage.schema import INDEX_TABLES, resource, sp_reference, sp_token, sp_uri

Condition = ColumnElement[bool]


# --- helpers ------------------------------------------------------------------------


def successor(prefix: str) -> str:
    """The smallest string greater than every string that starts with ``prefix``.

    Strings starting with ``p`` are exactly those in [p, successor(p)) in code-point
    order (SQLite BINARY; PostgreSQL "C" collation on our text columns).
    """
    for i in range(len(prefix) - 1, -1, -1):
        code = ord(prefix[i]) + 1
        if 0xD800 <= code <= 0xDFFF:
            code = 0xE000
        if code <= 0x10FFFF:
            return prefix[:i] + chr(code)
    return prefix + "\U0010ffff"  # pragma: no cover - a prefix of only U+10FFFF


def _starts_with(column: Any, prefix: str) -> Condition:
    if not prefix:
        return column.is_not(None)
    return and_(column >= prefix, column < successor(prefix))


def _index_rows(table: Any, param: str, rtype: str | None) -> list[Condition]:
    conditions: list[Condition] = [table.c.param == param]
    if rtype is not None:
        conditions.append(table.c.rtype == rtype)
    return conditions


# --- value predicates ---------------------------------------------------------------


def _range_predicate(lo: Any, hi: Any, prefix: str, plo: Any, phi: Any) -> Condition:
    """Date semantics: both ranges inclusive (search.html#prefix)."""
    contained = and_(lo >= plo, hi <= phi)
    if prefix == "eq":
        return contained
    if prefix == "ne":
        return or_(lo < plo, hi > phi)
    if prefix == "gt":
        return hi > phi
    if prefix == "lt":
        return lo < plo
    if prefix == "ge":
        return or_(hi > phi, contained)
    if prefix == "le":
        return or_(lo < plo, contained)
    if prefix == "sa":
        return lo > phi
    if prefix == "eb":
        return hi < plo
    if prefix == "ap":
        return and_(lo <= phi, hi >= plo)
    raise bad_request(f"Unknown prefix {prefix!r}")  # pragma: no cover - parser checks


def date_predicate(lo: Any, hi: Any, value: DateValue) -> Condition:
    return _range_predicate(lo, hi, value.prefix, value.lo, value.hi)


def number_predicate(lo: Any, hi: Any, value: NumberValue) -> Condition:
    """Number semantics: eq within [plo, phi), others against the exact value."""
    p, v = value.prefix, value.value
    if p == "eq":
        return and_(lo >= value.lo, hi < value.hi)
    if p == "ne":
        return or_(lo < value.lo, hi >= value.hi)
    if p == "gt":
        return hi > v
    if p == "lt":
        return lo < v
    if p == "ge":
        return hi >= v
    if p == "le":
        return lo <= v
    if p == "sa":
        return lo > v
    if p == "eb":
        return hi < v
    if p == "ap":
        return and_(lo <= value.hi, hi >= value.lo)
    raise bad_request(f"Unknown prefix {p!r}")  # pragma: no cover - parser checks


def token_predicate(t: Any, value: TokenValue) -> Condition:
    if value.no_system:
        return and_(t.c.system.is_(None), t.c.code == value.code)
    if value.system is None:
        return t.c.code == value.code
    if value.code is None:
        return t.c.system == value.system
    return and_(t.c.system == value.system, t.c.code == value.code)


def string_predicate(t: Any, value: TextValue, modifier: str | None) -> Condition:
    if modifier == "exact":
        return and_(t.c.value_norm == normalise(value.text), t.c.value_exact == value.text)
    needle = normalise(value.text)
    if modifier == "contains":
        return t.c.value_norm.contains(needle, autoescape=True)
    return _starts_with(t.c.value_norm, needle)


def quantity_predicate(t: Any, value: QuantityValue) -> Condition:
    if value.system is not None and value.code is not None:
        unit: Condition = and_(t.c.system == value.system, t.c.code == value.code)
    elif value.code is not None:
        # search.html#quantity: with no system, the code matches code or unit.
        unit = or_(t.c.code == value.code, t.c.unit == value.code)
    elif value.system is not None:
        unit = t.c.system == value.system
    else:
        unit = true()
    as_written = and_(unit, number_predicate(t.c.lo, t.c.hi, value.number))
    if value.canonical is None:
        return as_written
    in_canonical = and_(
        t.c.canon_code == value.canonical_code,
        number_predicate(t.c.canon_lo, t.c.canon_hi, value.canonical),
    )
    return or_(as_written, in_canonical)


def reference_predicate(t: Any, value: ReferenceValue) -> Condition:
    if value.url is not None:
        conditions: list[Condition] = [t.c.url == value.url]
    else:
        conditions = [t.c.url.is_(None), t.c.target_id == value.id]
        if value.type is not None:
            conditions.append(t.c.target_type == value.type)
    if value.version is not None:
        conditions.append(t.c.target_version == value.version)
    return and_(*conditions)


def uri_predicate(t: Any, value: UriValue, modifier: str | None) -> Condition:
    if modifier == "below":
        return _starts_with(t.c.value, value.uri)
    if modifier == "above":
        # The stored URI is a prefix of the searched one (search.html#uri).
        return func.substr(literal(value.uri), 1, func.length(t.c.value)) == t.c.value
    return t.c.value == value.uri


def value_predicate(t: Any, ptype: str, modifier: str | None, value: Value) -> Condition:
    """The test one index row must pass for one search value."""
    if isinstance(value, TokenValue):
        return token_predicate(t, value)
    if isinstance(value, TextValue):
        if ptype == "token":  # :text
            return _starts_with(t.c.text_norm, normalise(value.text))
        return string_predicate(t, value, modifier)
    if isinstance(value, DateValue):
        return date_predicate(t.c.lo, t.c.hi, value)
    if isinstance(value, NumberValue):
        return number_predicate(t.c.lo, t.c.hi, value)
    if isinstance(value, QuantityValue):
        return quantity_predicate(t, value)
    if isinstance(value, ReferenceValue):
        return reference_predicate(t, value)
    if isinstance(value, UriValue):
        return uri_predicate(t, value, modifier)
    raise bad_request(f"Cannot search {ptype} with {type(value).__name__}")


# --- nodes --------------------------------------------------------------------------


def node_condition(node: Node, rtype: str | None, res: Any) -> Condition:
    """A condition on the resource alias ``res`` (of type ``rtype``) for one node."""
    if isinstance(node, Criterion):
        return _criterion(node, rtype, res)
    if isinstance(node, Chain):
        return _chain(node, rtype, res)
    if isinstance(node, Has):
        return _has(node, rtype, res)
    raise TypeError(node)  # pragma: no cover


def _criterion(node: Criterion, rtype: str | None, res: Any) -> Condition:
    param, modifier = node.param, node.modifier
    code = param.code
    # _id and _lastUpdated live on the resource row itself (search.html#all).
    if code == "_id":
        if node.missing is not None:
            return false() if node.missing else true()
        ids = [v.code for v in node.values if isinstance(v, TokenValue)]
        matched = res.c.id.in_(ids)
        return not_(matched) if modifier == "not" else matched
    if code == "_lastUpdated":
        if node.missing is not None:
            return false() if node.missing else true()
        col = res.c.last_updated
        return or_(*(date_predicate(col, col, v) for v in node.values if isinstance(v, DateValue)))
    if param.type == "composite":
        return _composite(node, rtype, res)

    if param.type == "reference" and modifier == "identifier":
        table, row_param = sp_token, code + ":identifier"
    elif modifier == "of-type":
        table, row_param = sp_token, code + ":of-type"
    else:
        table_name = TABLE_OF_TYPE.get(param.type)
        if table_name is None:
            raise bad_request(f"Search parameter {code!r} is not supported", code="not-supported")
        table, row_param = INDEX_TABLES[table_name], code

    t = table.alias()
    rows = _index_rows(t, row_param, rtype)
    if node.missing is not None:
        present = res.c.pk.in_(select(t.c.res_pk).where(*rows))
        return not_(present) if node.missing else present
    ptype = "token" if modifier == "identifier" else param.type
    matches = or_(*(value_predicate(t, ptype, modifier, v) for v in node.values))
    matched = res.c.pk.in_(select(t.c.res_pk).where(*rows, matches))
    # :not -- "the resource does not have a matching token", including resources
    # without the element (search.html#token).
    return not_(matched) if modifier == "not" else matched


def _composite(node: Criterion, rtype: str | None, res: Any) -> Condition:
    """search.html#composite: all component values from the same element (same grp)."""
    param = node.param
    tables: list[Any] = []
    for n, component in enumerate(param.components):
        table_name = TABLE_OF_TYPE.get(component.type or "")
        if table_name is None:
            raise bad_request(f"Composite {param.code!r} is not supported", code="not-supported")
        tables.append((INDEX_TABLES[table_name].alias(), f"{param.code}#{n}", component.type))
    first, first_param, _ = tables[0]
    stmt = select(first.c.res_pk)
    for t, row_param, _ in tables[1:]:
        stmt = stmt.join(
            t,
            and_(
                t.c.res_pk == first.c.res_pk,
                t.c.grp == first.c.grp,
                *_index_rows(t, row_param, rtype),
            ),
        )
    conditions = _index_rows(first, first_param, rtype)
    if node.missing is not None:
        present = res.c.pk.in_(stmt.where(*conditions))
        return not_(present) if node.missing else present
    alternatives: list[Condition] = []
    for value in node.values:
        assert isinstance(value, CompositeValue)
        alternatives.append(
            and_(
                *(
                    value_predicate(t, ctype, None, part)
                    for (t, _, ctype), part in zip(tables, value.parts, strict=True)
                )
            )
        )
    return res.c.pk.in_(stmt.where(*conditions, or_(*alternatives)))


def _chain(node: Chain, rtype: str | None, res: Any) -> Condition:
    """search.html#chaining: some relative reference of ``param`` points at a current
    resource of a target type that satisfies the inner node."""
    alternatives: list[Condition] = []
    for target_type, inner in node.targets:
        ref = sp_reference.alias()
        target = resource.alias()
        sub = (
            select(ref.c.res_pk)
            .join(
                target,
                and_(target.c.rtype == ref.c.target_type, target.c.id == ref.c.target_id),
            )
            .where(
                *_index_rows(ref, node.param.code, rtype),
                ref.c.url.is_(None),
                ref.c.target_type == target_type,
                target.c.deleted == false(),
                node_condition(inner, target_type, target),
            )
        )
        alternatives.append(res.c.pk.in_(sub))
        if not _holds_canonicals(node.param):
            continue
        # Canonical references resolve through the target's `url` element
        # (references.html#canonical); the |version is not used to pick one.
        ref_c = sp_reference.alias()
        uri = sp_uri.alias()
        target_c = resource.alias()
        canonical = (
            select(ref_c.c.res_pk)
            .join(
                uri,
                and_(uri.c.value == ref_c.c.url, uri.c.param == "url", uri.c.rtype == target_type),
            )
            .join(target_c, target_c.c.pk == uri.c.res_pk)
            .where(
                *_index_rows(ref_c, node.param.code, rtype),
                ref_c.c.url.is_not(None),
                target_c.c.deleted == false(),
                node_condition(inner, target_type, target_c),
            )
        )
        alternatives.append(res.c.pk.in_(canonical))
    return or_(*alternatives)


def _holds_canonicals(param: Any) -> bool:
    """Whether a reference parameter's values can be canonical URLs (not Reference)."""
    if param.paths is None:
        return True
    return any(p.type in ("canonical", "uri") for p in param.paths)


def _has(node: Has, rtype: str | None, res: Any) -> Condition:
    """search.html#has: a current ``node.rtype`` resource refers here through
    ``node.param`` and satisfies the inner node."""
    ref = sp_reference.alias()
    source = resource.alias()
    conditions = [
        ref.c.param == node.param.code,
        ref.c.rtype == node.rtype,
        ref.c.url.is_(None),
        source.c.deleted == false(),
        node_condition(node.inner, node.rtype, source),
    ]
    if rtype is not None:
        conditions.append(ref.c.target_type == rtype)
    sub = select(ref.c.target_id).join(source, source.c.pk == ref.c.res_pk).where(*conditions)
    return res.c.id.in_(sub)


def criteria_conditions(query: SearchQuery, res: Any = resource) -> list[Condition]:
    """Every condition of the query on the resource table (or an alias of it)."""
    conditions: list[Condition] = [res.c.deleted == false()]
    if query.rtype is not None:
        conditions.append(res.c.rtype == query.rtype)
    elif query.types:
        conditions.append(res.c.rtype.in_(query.types))
    conditions.extend(node_condition(node, query.rtype, res) for node in query.criteria)
    return conditions


def match_pks(query: SearchQuery) -> Select[Any]:
    """``SELECT resource.pk`` of the current resources matching ``query``."""
    return select(resource.c.pk).where(*criteria_conditions(query))


# --- sorting and keyset paging (search.html#sort, http.html#paging) ------------------

DEFAULT_COUNT = 20
MAX_COUNT = 1000
MAX_INCLUDES = 1000  # per page; more are cut with a warning (fhir-server-anchors.md 3.3)
MAX_ITERATE_DEPTH = 3

# The column a parameter sorts by, per index table. search.html#sort leaves multi-valued
# elements to the server: ascending uses the smallest value, descending the largest; for
# ranges (dates, numbers, quantities) the low bound ascending and the high bound
# descending. Resources without a value sort last either way.
_SORT_COLUMNS: dict[str, tuple[str, str]] = {
    "sp_string": ("value_norm", "value_norm"),
    "sp_token": ("code", "code"),
    "sp_date": ("lo", "hi"),
    "sp_number": ("lo", "hi"),
    "sp_quantity": ("lo", "hi"),
    "sp_reference": ("target_id", "target_id"),
    "sp_uri": ("value", "value"),
}


def sort_keys(query: SearchQuery) -> tuple[Any, list[tuple[Any, bool, bool]]]:
    """The FROM clause and (key expression, descending, nullable) per ``_sort`` key.

    A parameter's key is the min (ascending) or max (descending) of its index rows for
    the resource. With criteria, it is a correlated subquery, evaluated only for the
    matches through the res_pk index; without, a grouped LEFT JOIN that aggregates each
    key once (a 30 k-Observation ``_sort=-date`` went from 417 to 61 ms on PostgreSQL).
    """
    source: Any = resource
    out: list[tuple[Any, bool, bool]] = []
    for key in query.sort:
        if key.code == "_id":
            out.append((resource.c.id, key.descending, False))
        elif key.code == "_lastUpdated":
            out.append((resource.c.last_updated, key.descending, False))
        elif key.param is not None and key.param.table is not None:
            table = INDEX_TABLES[key.param.table].alias()
            asc_col, desc_col = _SORT_COLUMNS[key.param.table]
            column = table.c[desc_col if key.descending else asc_col]
            aggregate = func.max(column) if key.descending else func.min(column)
            conditions = [table.c.param == key.param.code]
            if query.rtype is not None:
                conditions.append(table.c.rtype == query.rtype)
            if query.criteria:
                correlated = (
                    select(aggregate)
                    .where(table.c.res_pk == resource.c.pk, *conditions)
                    .scalar_subquery()
                )
                out.append((correlated, key.descending, True))
                continue
            grouped = (
                select(table.c.res_pk, aggregate.label("key"))
                .where(*conditions)
                .group_by(table.c.res_pk)
                .subquery()
            )
            source = source.outerjoin(grouped, grouped.c.res_pk == resource.c.pk)
            out.append((grouped.c.key, key.descending, True))
    return source, out


def _order(column: Any, descending: bool, nulls_last: bool, nullable: bool) -> list[Any]:
    ordered = column.desc() if descending else column.asc()
    if not nullable:
        return [ordered]
    # `x IS NULL` orders false before true on both databases: a portable NULLS LAST.
    is_null = column.is_(None)
    return [is_null.asc() if nulls_last else is_null.desc(), ordered]


def _beyond(
    keys: list[tuple[Any, bool, bool]],
    values: tuple[Any, ...],
    pk: Any,
    pk_value: int,
    forward: bool,
) -> Condition:
    """Rows strictly after (forward) or before (backward) the edge row, in sort order.

    Lexicographic over (k1, ..., kn, pk); forward order is each key's direction with
    NULLs last, backward the exact reverse.
    """
    alternatives: list[Condition] = []
    equal_so_far: list[Condition] = []
    for (column, descending, nullable), value in zip(keys, values, strict=True):
        desc = descending if forward else not descending
        nulls_last = forward
        if value is None:
            after: Condition = false() if nulls_last else column.is_not(None)
            same: Condition = column.is_(None)
        else:
            after = column < value if desc else column > value
            if nulls_last and nullable:
                after = or_(after, column.is_(None))
            same = column == value
        alternatives.append(and_(*equal_so_far, after))
        equal_so_far.append(same)
    alternatives.append(and_(*equal_so_far, pk > pk_value if forward else pk < pk_value))
    beyond = or_(*alternatives)
    if keys and values[0] is not None and not keys[0][2]:
        # A redundant bound on the leading key, so the database can seek an index on it
        # instead of testing the OR above on every row.
        column, descending, _ = keys[0]
        desc = descending if forward else not descending
        beyond = and_(column <= values[0] if desc else column >= values[0], beyond)
    elif not keys:
        beyond = pk > pk_value if forward else pk < pk_value
    return beyond


@dataclass(frozen=True, slots=True)
class FoundResource:
    """A stored resource in a result: its identity and the canonical JSON bytes."""

    rtype: str
    id: str
    version: int
    last_updated: int
    body: bytes


@dataclass(slots=True)
class SearchResult:
    matches: list[FoundResource]
    includes: list[FoundResource] = field(default_factory=list)
    next_cursor: str | None = None
    previous_cursor: str | None = None
    total: int | None = None
    warnings: list[Issue] = field(default_factory=list)


def _fingerprint(query: SearchQuery) -> str:
    """A digest of what decides membership and order (criteria, _sort, _type), signed
    into every cursor so a cursor cannot be replayed against another search; _count and
    includes may change from page to page."""
    kept = sorted(
        (k, v)
        for k, v in query.canonical
        if k.split(":", 1)[0]
        not in ("_count", "_include", "_revinclude", "_total", "_summary", "_elements")
    )
    digest = hashlib.sha256(orjson.dumps([query.rtype, kept])).digest()
    return base64.urlsafe_b64encode(digest[:12]).decode()


@dataclass(frozen=True, slots=True)
class PagePosition:
    """Where a page starts: strictly after (forward) or before (backward) this row."""

    keys: tuple[Any, ...]  # sort-key values of the edge row (str, int, float or None)
    pk: int
    forward: bool


def _encode_position(position: PagePosition, fingerprint: str, secret: bytes) -> str:
    return encode_cursor(
        {"k": list(position.keys), "p": position.pk, "f": position.forward, "q": fingerprint},
        secret,
    )


def _decode_position(token: str, fingerprint: str, secret: bytes) -> PagePosition:
    data = decode_cursor(token, secret)
    if data.get("q") != fingerprint or not isinstance(data.get("k"), list):
        raise bad_request("The paging cursor belongs to another search")
    return PagePosition(tuple(data["k"]), int(data["p"]), bool(data["f"]))


def _fetch(conn: Connection, pks: Sequence[int]) -> dict[int, FoundResource]:
    if not pks:
        return {}
    stmt = select(
        resource.c.pk,
        resource.c.rtype,
        resource.c.id,
        resource.c.version,
        resource.c.last_updated,
        resource.c.body,
    ).where(resource.c.pk.in_(list(pks)))
    return {
        row.pk: FoundResource(row.rtype, row.id, row.version, row.last_updated, bytes(row.body))
        for row in conn.execute(stmt)
    }


def count_matches(conn: Connection, query: SearchQuery) -> int:
    """The number of matches (``_total=accurate``, ``_summary=count``)."""
    sub = match_pks(query).subquery()
    return int(conn.execute(select(func.count()).select_from(sub)).scalar_one())


def execute_search(
    conn: Connection,
    query: SearchQuery,
    *,
    base_url: str,
    page_cursor: str | None,
    secret: bytes,
) -> SearchResult:
    """One page of a search: matches in sort order, their includes, cursors and total.

    ``base_url`` is accepted for symmetry with the Bundle builder (links are built there);
    ``secret`` signs and checks the paging cursors.
    """
    del base_url  # links are the Bundle's business; kept in the signature for callers
    count = DEFAULT_COUNT if query.count is None else query.count
    warnings: list[Issue] = []
    if count > MAX_COUNT:
        warnings.append(
            Issue(
                "too-costly",
                f"_count={count} is above {MAX_COUNT}; pages hold {MAX_COUNT}",
                "warning",
            )
        )
        count = MAX_COUNT
    fingerprint = _fingerprint(query)
    position = _decode_position(page_cursor, fingerprint, secret) if page_cursor else None

    source, keys = sort_keys(query)
    labelled = [expr.label(f"k{i}") for i, (expr, _, _) in enumerate(keys)]
    inner = (
        select(resource.c.pk, *labelled)
        .select_from(source)
        .where(*criteria_conditions(query))
        .subquery()
    )
    inner_keys = [(inner.c[f"k{i}"], desc, nullable) for i, (_, desc, nullable) in enumerate(keys)]
    forward = position is None or position.forward
    stmt = select(inner)
    if position is not None:
        if len(position.keys) != len(keys):
            raise bad_request("The paging cursor belongs to another search")
        stmt = stmt.where(_beyond(inner_keys, position.keys, inner.c.pk, position.pk, forward))
    order: list[Any] = []
    for column, descending, nullable in inner_keys:
        order.extend(_order(column, descending if forward else not descending, forward, nullable))
    order.append(inner.c.pk.asc() if forward else inner.c.pk.desc())

    rows: list[Any] = []
    if count > 0 and query.summary != "count":
        rows = list(conn.execute(stmt.order_by(*order).limit(count + 1)))
    more = len(rows) > count
    rows = rows[:count]
    if not forward:
        rows.reverse()

    def edge(row: Any, ahead: bool) -> str:
        values = tuple(row._mapping[f"k{i}"] for i in range(len(keys)))
        return _encode_position(PagePosition(values, row.pk, ahead), fingerprint, secret)

    result = SearchResult(matches=[], warnings=warnings)
    if rows:
        if (forward and more) or (not forward and position is not None):
            result.next_cursor = edge(rows[-1], True)
        if (forward and position is not None) or (not forward and more):
            result.previous_cursor = edge(rows[0], False)
    pks = [row.pk for row in rows]
    found = _fetch(conn, pks)
    result.matches = [found[pk] for pk in pks if pk in found]

    if query.total == "accurate" or query.total == "estimate" or query.summary == "count":
        result.total = count_matches(conn, query)
    elif position is None and not more and count > 0:
        # The whole result is on this one page: the total costs nothing.
        result.total = len(result.matches)

    if query.include or query.revinclude:
        result.includes = _includes(conn, query, found, result.warnings)
    return result


# --- _include and _revinclude (search.html#include) ----------------------------------


def _forward_targets(conn: Connection, source_pks: Sequence[int], inc: Include) -> set[int]:
    """pks of the current resources the sources refer to through ``inc``."""
    ref = sp_reference.alias()
    target = resource.alias()
    conditions: list[Condition] = [
        ref.c.res_pk.in_(list(source_pks)),
        target.c.deleted == false(),
    ]
    if inc.source != "*":
        conditions.append(ref.c.rtype == inc.source)
    if inc.param is not None:
        conditions.append(ref.c.param == inc.param.code)
    if inc.target is not None:
        conditions.append(target.c.rtype == inc.target)
    literal_refs = (
        select(target.c.pk)
        .select_from(ref)
        .join(
            target,
            and_(
                ref.c.url.is_(None),
                target.c.rtype == ref.c.target_type,
                target.c.id == ref.c.target_id,
            ),
        )
        .where(*conditions)
    )
    # Canonical references resolve through the target's `url` (references.html#canonical).
    uri = sp_uri.alias()
    canonical_refs = (
        select(target.c.pk)
        .select_from(ref)
        .join(uri, and_(uri.c.param == "url", uri.c.value == ref.c.url))
        .join(target, target.c.pk == uri.c.res_pk)
        .where(*conditions, ref.c.url.is_not(None))
    )
    found = {pk for (pk,) in conn.execute(literal_refs)}
    found |= {pk for (pk,) in conn.execute(canonical_refs)}
    return found


def _reverse_sources(conn: Connection, targets: Sequence[FoundResource], inc: Include) -> set[int]:
    """pks of the current resources that refer to the targets through ``inc``."""
    ref = sp_reference.alias()
    source = resource.alias()
    by_type: dict[str, list[str]] = {}
    for t in targets:
        if inc.target is None or inc.target == t.rtype:
            by_type.setdefault(t.rtype, []).append(t.id)
    if not by_type:
        return set()
    which = or_(
        *(
            and_(ref.c.target_type == rtype, ref.c.target_id.in_(ids))
            for rtype, ids in by_type.items()
        )
    )
    conditions: list[Condition] = [ref.c.url.is_(None), which, source.c.deleted == false()]
    if inc.source != "*":
        conditions.append(ref.c.rtype == inc.source)
    if inc.param is not None:
        conditions.append(ref.c.param == inc.param.code)
    stmt = (
        select(source.c.pk)
        .select_from(ref)
        .join(source, source.c.pk == ref.c.res_pk)
        .where(*conditions)
    )
    return {pk for (pk,) in conn.execute(stmt)}


def _includes(
    conn: Connection, query: SearchQuery, matches: dict[int, FoundResource], warnings: list[Issue]
) -> list[FoundResource]:
    """One IN query per include per round; :iterate repeats on what was just added,
    at most MAX_ITERATE_DEPTH more rounds and MAX_INCLUDES resources in all."""
    seen: set[int] = set(matches)
    included: dict[int, FoundResource] = {}
    frontier = dict(matches)
    for depth in range(MAX_ITERATE_DEPTH + 1):
        includes = [i for i in query.include if depth == 0 or i.iterate]
        revincludes = [i for i in query.revinclude if depth == 0 or i.iterate]
        if not frontier or not (includes or revincludes):
            break
        new: set[int] = set()
        for inc in includes:
            new |= _forward_targets(conn, sorted(frontier), inc)
        for inc in revincludes:
            new |= _reverse_sources(conn, list(frontier.values()), inc)
        new -= seen
        room = MAX_INCLUDES - len(included)
        if len(new) > room:
            warnings.append(
                Issue(
                    "too-costly",
                    f"More than {MAX_INCLUDES} included resources; the rest were left out",
                    "warning",
                )
            )
            new = set(sorted(new)[:room])
        frontier = _fetch(conn, sorted(new))
        included.update(frontier)
        seen |= new
    return [included[pk] for pk in sorted(included)]
