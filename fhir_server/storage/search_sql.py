"""SQL for a parsed search: the last step of parse -> rewrite -> generate (ARCHITECTURE.md).

``match_pks(query)`` turns a :class:`SearchQuery` into one SQLAlchemy Core ``SELECT`` of
``resource.pk`` for the current, not deleted resources that match every criterion. The
values of a parameter are OR-ed, parameters AND-ed. The rewrite step
(fhir_server.search.plan) names the driving criterion: it becomes the set the query
starts from, ``pk IN (SELECT res_pk FROM sp_<kind> WHERE ...)``; every other criterion
is a test per candidate, a correlated ``EXISTS`` through the ``res_pk`` index, fenced
with ``OFFSET 0`` so PostgreSQL plans it as SQLite does. Chains join the reference table
to the target resources, ``_has`` runs the other way; compartments (InCompartment) read
the reverse reference index. When the index tables alone answer a query
(``index_driven``), pages and counts never read the resource table. The same statement
runs on SQLite and PostgreSQL (prefix tests are byte-order ranges, never
dialect-specific LIKE semantics).

Measured on the search benchmark (bench/search_dataset.py: 1.1 M resources, 1 M step
Observations; docs in bench/search_latency.py): the app's patient query went from 2.5 s
(every criterion as ``IN``: SQLite materialised the million-row code set) to ~1 ms of
SQL; a chain went from 5 s to ~30 ms on PostgreSQL (the fence); the million-match count
is one index range.

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
  the normalised display/text; :in/:not-in/:above/:below arrive as code sets (one IN
  list per system, fhir_server.search.terminology), :not-in as :not.
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
capped (fhir-server-anchors.md 6.4); ``_explain`` adds the SQL and the database's plan.
The page and its resources' bodies are one statement; a search needing more statements
(a total, includes) runs them in one snapshot (fhir_server.storage.database.snapshot).
Every statement execute_search runs is built and compiled once per query shape and then
only bound (fhir_server.storage.search_shapes): the builders below take each value
through ``bound``/``derived``, so the same code builds a statement for a query's values
(match_pks, _explain) or for its slots (the cache).

Also here, because they are the SQL of the search room: ``live_registry(conn)`` (the
registry with the database's custom SearchParameters), ``SearchRegistryCache`` (the same
for searches, checked at most every ``SEARCH_REGISTRY_TTL_S``) and ``reindex_batch``
($reindex).
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import orjson
from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    and_,
    delete,
    exists,
    false,
    func,
    insert,
    literal,
    not_,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import CompileError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.elements import ClauseElement
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import Integer, String

from fhir_server.errors import Issue, bad_request
from fhir_server.paging import decode_cursor, encode_cursor
from fhir_server.search.custom import LiveRegistry
from fhir_server.search.extraction import extract_index_rows
from fhir_server.search.plan import drives, driving_order
from fhir_server.search.query import (
    ONLY_PATIENTS,
    AllOf,
    Chain,
    CodeSetValue,
    CompositeValue,
    Criterion,
    DateValue,
    Has,
    Include,
    InCompartment,
    Node,
    NumberValue,
    Permitted,
    QuantityValue,
    ReferenceValue,
    SearchQuery,
    TextValue,
    TokenValue,
    UriValue,
    Value,
)
from fhir_server.search.registry import TABLE_OF_TYPE, Registry
from fhir_server.search.text import normalise
from fhir_server.storage.database import snapshot
from fhir_server.storage.schema import INDEX_TABLES, resource, sp_reference, sp_token, sp_uri
from fhir_server.storage.search_shapes import (
    CompiledStatement,
    Slot,
    StatementCache,
    bound,
    compiled_for,
    derived,
    like_escaped,
    node_shape,
    page_shape,
)

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
    if not prefix:  # a Slot (search_shapes) is never empty: emptiness is shape
        return column.is_not(None)
    return and_(column >= bound(prefix), column < bound(derived(successor, prefix)))


# --- table aliases --------------------------------------------------------------------
#
# Every subquery reads its index table through an alias of its own. Making an alias builds
# its column collection, which was a third of the Python time of a search; within one
# statement (see _statement) the n-th alias of a table is taken from a pool kept across
# statements, so the same few alias objects serve every search. SQLAlchemy expressions are
# immutable once built, so threads can share them.

_ALIAS_POOL: dict[tuple[str, int], Any] = {}
_ALIAS_POOL_DEPTH = 32  # aliases per table per statement worth keeping
_ALIAS_COUNT: ContextVar[dict[str, int] | None] = ContextVar("search_alias_count", default=None)


def _alias(table: Any) -> Any:
    counts = _ALIAS_COUNT.get()
    if counts is None:
        return table.alias()
    n = counts.get(table.name, 0)
    counts[table.name] = n + 1
    if n >= _ALIAS_POOL_DEPTH:
        return table.alias()
    key = (table.name, n)
    found = _ALIAS_POOL.get(key)
    if found is None:
        found = _ALIAS_POOL.setdefault(key, table.alias())
    return found


@contextmanager
def _statement() -> Iterator[None]:
    """Build one statement: its aliases are distinct, and pooled (see _alias)."""
    token = _ALIAS_COUNT.set({})
    try:
        yield
    finally:
        _ALIAS_COUNT.reset(token)


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
    return _range_predicate(lo, hi, value.prefix, bound(value.lo), bound(value.hi))


def number_predicate(lo: Any, hi: Any, value: NumberValue) -> Condition:
    """Number semantics: eq within [plo, phi), others against the exact value."""
    p, v, plo, phi = value.prefix, bound(value.value), bound(value.lo), bound(value.hi)
    if p == "eq":
        return and_(lo >= plo, hi < phi)
    if p == "ne":
        return or_(lo < plo, hi >= phi)
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
        return and_(lo <= phi, hi >= plo)
    raise bad_request(f"Unknown prefix {p!r}")  # pragma: no cover - parser checks


def token_predicate(t: Any, value: TokenValue) -> Condition:
    if value.no_system:
        return and_(t.c.system.is_(None), t.c.code == bound(value.code))
    if value.system is None:
        return t.c.code == bound(value.code)
    if value.code is None:
        return t.c.system == bound(value.system)
    return and_(t.c.system == bound(value.system), t.c.code == bound(value.code))


def string_predicate(t: Any, value: TextValue, modifier: str | None) -> Condition:
    needle = derived(normalise, value.text)
    if modifier == "exact":
        return and_(t.c.value_norm == bound(needle), t.c.value_exact == bound(value.text))
    if modifier == "contains":
        # % and _ in the value match themselves (escaped, never interpolated)
        return t.c.value_norm.contains(bound(derived(like_escaped, needle)), escape="/")
    return _starts_with(t.c.value_norm, needle)


def quantity_predicate(t: Any, value: QuantityValue) -> Condition:
    system, code = bound(value.system), bound(value.code)
    if value.system is not None and value.code is not None:
        unit: Condition = and_(t.c.system == system, t.c.code == code)
    elif value.code is not None:
        # search.html#quantity: with no system, the code matches code or unit.
        unit = or_(t.c.code == code, t.c.unit == code)
    elif value.system is not None:
        unit = t.c.system == system
    else:
        unit = true()
    as_written = and_(unit, number_predicate(t.c.lo, t.c.hi, value.number))
    if value.canonical is None:
        return as_written
    in_canonical = and_(
        t.c.canon_code == bound(value.canonical_code),
        number_predicate(t.c.canon_lo, t.c.canon_hi, value.canonical),
    )
    return or_(as_written, in_canonical)


def reference_predicate(t: Any, value: ReferenceValue) -> Condition:
    if value.url is not None:
        conditions: list[Condition] = [t.c.url == bound(value.url)]
    else:
        conditions = [t.c.url.is_(None), t.c.target_id == bound(value.id)]
        if value.type is not None:
            conditions.append(t.c.target_type == bound(value.type))
    if value.version is not None:
        conditions.append(t.c.target_version == bound(value.version))
    return and_(*conditions)


def uri_predicate(t: Any, value: UriValue, modifier: str | None) -> Condition:
    if modifier == "below":
        return _starts_with(t.c.value, value.uri)
    if modifier == "above":
        # The stored URI is a prefix of the searched one (search.html#uri).
        uri = bound(value.uri, String()) if isinstance(value.uri, Slot) else literal(value.uri)
        return func.substr(uri, 1, func.length(t.c.value)) == t.c.value
    return t.c.value == bound(value.uri)


def value_predicate(t: Any, ptype: str, modifier: str | None, value: Value) -> Condition:
    """The test one index row must pass for one search value."""
    if isinstance(value, TokenValue):
        return token_predicate(t, value)
    if isinstance(value, CodeSetValue):
        # An expanded ValueSet or hierarchy (token :in/:not-in/:above/:below): one IN list
        # per system, not an OR per code (SQLite caps expression depth at 1000). ``code``
        # elements (Observation.status) are indexed without a system -- theirs is the
        # binding's -- so a row with no system matches on its code.
        system = or_(t.c.system == bound(value.system), t.c.system.is_(None))
        return and_(t.c.code.in_([bound(code) for code in value.codes]), system)
    if isinstance(value, TextValue):
        if ptype == "token":  # :text
            return _starts_with(t.c.text_norm, derived(normalise, value.text))
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
#
# Each node becomes a condition on the resource alias ``res``, in one of two forms
# (fhir_server.search.plan): the driving node as ``res.pk IN (SELECT res_pk ...)``, a set
# the database builds first; every other node as a correlated ``EXISTS (... WHERE
# res_pk = res.pk)``, a seek per candidate through the ``res_pk`` index. ``scope`` is the
# resource type searched, the ``_type`` list of a system search, or None (any type).

Scope = str | tuple[str, ...] | None


def _scoped(column: Any, scope: Scope) -> list[Condition]:
    if scope is None:
        return []
    if isinstance(scope, str):
        return [column == scope]
    return [column.in_(scope)]


def _index_rows(table: Any, param: str, scope: Scope, probe: bool = False) -> list[Condition]:
    """The rows of one parameter (of the types in scope). ``probe``: the rows are reached
    another way -- through ``res_pk`` for a test of one candidate, or from a driving set
    -- so the (rtype, param) prefix of the value indexes must not be used (unindexed)."""
    if probe:
        return [unindexed(table.c.param) == param, *_scoped(unindexed(table.c.rtype), scope)]
    return [table.c.param == param, *_scoped(table.c.rtype, scope)]


class unindexed(FunctionElement[str]):  # noqa: N801 - reads as a SQL function
    """A column as an operand no index can serve: ``+col`` on SQLite (its documented way
    to keep a term from an index), ``(col || '')`` on PostgreSQL.

    Without statistics SQLite takes the index with the most equality terms, and for a
    test through ``res_pk`` that is the wrong one: ``(rtype, param)`` of a value index,
    which reads every date of every Observation for each candidate (44 s for the app
    query on the benchmark before ANALYZE, 1 ms after; the server never runs ANALYZE).
    PostgreSQL misjudges the same prefixes (correlated columns). With the prefix out of
    reach, both seek ``res_pk`` whatever their statistics say."""

    name = "unindexed"
    inherit_cache = True
    type = String()


@compiles(unindexed)
def _unindexed(element: unindexed, compiler: Any, **kw: Any) -> str:
    return f"({compiler.process(element.clauses, **kw)} || '')"


@compiles(unindexed, "sqlite")
def _unindexed_sqlite(element: unindexed, compiler: Any, **kw: Any) -> str:
    return "+" + compiler.process(element.clauses, **kw)


def _member(res: Any, pk_column: Any, sub: Select[Any], drive: bool) -> Condition:
    """``res`` is one of the resources ``sub`` (a SELECT of ``pk_column``) finds."""
    if drive:
        return res.c.pk.in_(sub.with_only_columns(pk_column))
    return _test(sub.with_only_columns(literal(1)).where(pk_column == res.c.pk))


def _test(sub: Select[Any]) -> Condition:
    """``EXISTS (sub)`` evaluated per candidate row, on both databases.

    ``OFFSET 0`` is PostgreSQL's optimisation fence: it keeps the planner from pulling the
    subquery up into a semi-join and driving the query from it (simplify_EXISTS_query).
    It would, with estimates that are wrong for index tables -- (rtype, param, code) are
    correlated, so ``Patient.gender=female`` (3,000 rows) was estimated at 1, and a
    chain on it drove from 600,000 Observations: 5 s instead of ~40 ms. The rewrite step
    (fhir_server.search.plan) has chosen the driver; PostgreSQL then plans as SQLite does.
    """
    return exists(sub.offset(0))


def node_condition(node: Node, scope: Scope, res: Any, drive: bool = False) -> Condition:
    """A condition on the resource alias ``res`` for one node; ``drive``: as the set the
    query starts from (``IN``), else as a test per row (``EXISTS``)."""
    if isinstance(node, Criterion):
        return _criterion(node, scope, res, drive)
    if isinstance(node, Chain):
        return _chain(node, scope, res, drive)
    if isinstance(node, Has):
        return _has(node, scope, res, drive)
    if isinstance(node, InCompartment):
        return _in_compartment(node, res, drive)
    if isinstance(node, AllOf):
        return _all_of(node.nodes, scope, res, drive)
    if isinstance(node, Permitted):
        return _permitted(node, scope, res, drive)
    raise TypeError(node)  # pragma: no cover


def _criterion(node: Criterion, scope: Scope, res: Any, drive: bool) -> Condition:
    param, modifier = node.param, node.modifier
    code = param.code
    # _id and _lastUpdated live on the resource row itself (search.html#all).
    if code == "_id":
        if node.missing is not None:
            return false() if node.missing else true()
        ids = [bound(v.code) for v in node.values if isinstance(v, TokenValue)]
        matched = res.c.id.in_(ids)
        return not_(matched) if modifier == "not" else matched
    if code == "_lastUpdated":
        if node.missing is not None:
            return false() if node.missing else true()
        col = res.c.last_updated
        return or_(*(date_predicate(col, col, v) for v in node.values if isinstance(v, DateValue)))
    if modifier == ONLY_PATIENTS:
        return _only_patients(node, scope, res)
    # :missing=true and :not are negations: tests, never the driving set (plan.drives).
    # :not -- "the resource does not have a matching token", including resources without
    # the element (search.html#token).
    negated = node.missing is True or (node.missing is None and modifier == "not")
    as_set = drive and not negated
    pk_column, rows = criterion_rows(node, scope, probe=not as_set)
    matched = _member(res, pk_column, rows, as_set)
    return not_(matched) if negated else matched


def _only_patients(node: Criterion, scope: Scope, res: Any) -> Condition:
    """The access restriction "every patient this resource's ``node.param`` names is one
    of ``node.values``" (fhir_server.search.restriction, ONLY_PATIENTS): no local
    reference through the parameter points at another Patient. A test, never a driving
    set: it says what must not be there (ARCHITECTURE.md "Access control": a resource in
    several compartments needs every one of them to permit the reader)."""
    t = _alias(sp_reference)
    ids = [bound(v.id) for v in node.values if isinstance(v, ReferenceValue)]
    outside = select(t.c.res_pk).where(
        *_index_rows(t, node.param.code, scope, probe=True),
        t.c.url.is_(None),
        t.c.target_type == "Patient",
        t.c.target_id.not_in(ids),
    )
    return not_(_member(res, t.c.res_pk, outside, False))


def criterion_rows(node: Criterion, scope: Scope, probe: bool = False) -> tuple[Any, Select[Any]]:
    """``SELECT res_pk`` of the index rows that satisfy ``node`` (its values, or for
    ``:missing`` any value at all), and that res_pk column; ``:not`` is the caller's.
    ``probe``: for a test through ``res_pk`` (see _index_rows)."""
    param, modifier = node.param, node.modifier
    code = param.code
    if param.type == "composite":
        return _composite_rows(node, scope, probe)
    if param.type == "reference" and modifier == "identifier":
        table, row_param = sp_token, code + ":identifier"
    elif modifier == "of-type":
        table, row_param = sp_token, code + ":of-type"
    else:
        table_name = TABLE_OF_TYPE.get(param.type)
        if table_name is None:
            raise bad_request(f"Search parameter {code!r} is not supported", code="not-supported")
        table, row_param = INDEX_TABLES[table_name], code
    t = _alias(table)
    # system|code tokens: (rtype, param, code, system, res_pk) reaches the one row itself.
    rows = _index_rows(t, row_param, scope, probe and not _exact_tokens(node, table))
    if node.missing is not None:
        return t.c.res_pk, select(t.c.res_pk).where(*rows)
    ptype = "token" if modifier == "identifier" else param.type
    matches = or_(*(value_predicate(t, ptype, modifier, v) for v in node.values))
    return t.c.res_pk, select(t.c.res_pk).where(*rows, matches)


def _exact_tokens(node: Criterion, table: Any) -> bool:
    """Whether every value is a system|code token (the value index ends in res_pk)."""
    return (
        table is sp_token
        and node.missing is None
        and node.modifier in (None, "not", "identifier")
        and bool(node.values)
        and all(
            isinstance(v, CodeSetValue)
            or (isinstance(v, TokenValue) and v.system is not None and v.code is not None)
            for v in node.values
        )
    )


def _composite_rows(node: Criterion, scope: Scope, probe: bool = False) -> tuple[Any, Select[Any]]:
    """search.html#composite: all component values from the same element (same grp)."""
    param = node.param
    tables: list[Any] = []
    for n, component in enumerate(param.components):
        table_name = TABLE_OF_TYPE.get(component.type or "")
        if table_name is None:
            raise bad_request(f"Composite {param.code!r} is not supported", code="not-supported")
        tables.append((_alias(INDEX_TABLES[table_name]), f"{param.code}#{n}", component.type))
    first, first_param, _ = tables[0]
    stmt = select(first.c.res_pk)
    for t, row_param, _ in tables[1:]:
        # No type test on the other components: the same res_pk is the same resource, and
        # leaving rtype out lets (res_pk, param, grp, lo, hi) answer a quantity component
        # from the index alone (schema.sp_quantity).
        stmt = stmt.join(
            t,
            and_(
                t.c.res_pk == first.c.res_pk,
                t.c.grp == first.c.grp,
                *_index_rows(t, row_param, None, probe=True),
            ),
        )
    conditions = _index_rows(first, first_param, scope, probe)
    if node.missing is not None:
        return first.c.res_pk, stmt.where(*conditions)
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
    return first.c.res_pk, stmt.where(*conditions, or_(*alternatives))


def _inner(node: Node, scope: Scope, res: Any, drive: bool) -> Condition:
    """The condition a chain's target or a ``_has`` source must meet. When the chain (or
    ``_has``) drives the query, so does its inner node: the few targets that match, then
    the references to them. When it is a test of one candidate, the inner node is a test
    of the one target (or source) that candidate's reference names."""
    return node_condition(node, scope, res, drive=drive and drives(node))


def _chain(node: Chain, scope: Scope, res: Any, drive: bool) -> Condition:
    """search.html#chaining: some relative reference of ``param`` points at a current
    resource of a target type that satisfies the inner node.

    Driving, it is a nested set: the ids of the targets the inner node finds, then the
    references to them through (target_type, target_id, param) -- written as ``IN`` so no
    database can start from the reference rows instead (SQLite without statistics read
    every ``subject`` reference, 0.7-1.2 s, for a chain on one patient's identifier). As a
    test of one candidate: its reference rows through ``res_pk``, then their target."""
    alternatives: list[Condition] = []
    for target_type, inner in node.targets:
        ref = _alias(sp_reference)
        target = _alias(resource)
        if drive:
            by_pk = drives(inner) and _drives_by_pk(inner)
            target_is = unindexed(target.c.rtype) if by_pk else target.c.rtype
            targets = select(target.c.id).where(
                target_is == target_type,
                target.c.deleted == false(),
                _inner(inner, target_type, target, drive),
            )
            sub = select(ref.c.res_pk).where(
                ref.c.param == node.param.code,
                *_scoped(unindexed(ref.c.rtype), scope),
                ref.c.url.is_(None),
                ref.c.target_type == target_type,
                ref.c.target_id.in_(targets),
            )
        else:
            sub = (
                select(ref.c.res_pk)
                .join(
                    target,
                    and_(target.c.rtype == ref.c.target_type, target.c.id == ref.c.target_id),
                )
                .where(
                    *_index_rows(ref, node.param.code, scope, probe=True),
                    ref.c.url.is_(None),
                    unindexed(ref.c.target_type) == target_type,
                    target.c.deleted == false(),
                    _inner(inner, target_type, target, drive),
                )
            )
        alternatives.append(_member(res, ref.c.res_pk, sub, drive))
        if not _holds_canonicals(node.param):
            continue
        # Canonical references resolve through the target's `url` element
        # (references.html#canonical); the |version is not used to pick one.
        ref_c = _alias(sp_reference)
        uri = _alias(sp_uri)
        target_c = _alias(resource)
        canonical = (
            select(ref_c.c.res_pk)
            .join(
                uri,
                and_(uri.c.value == ref_c.c.url, uri.c.param == "url", uri.c.rtype == target_type),
            )
            .join(target_c, target_c.c.pk == uri.c.res_pk)
            .where(
                *_index_rows(ref_c, node.param.code, scope, probe=not drive),
                ref_c.c.url.is_not(None),
                target_c.c.deleted == false(),
                _inner(inner, target_type, target_c, drive),
            )
        )
        alternatives.append(_member(res, ref_c.c.res_pk, canonical, drive))
    return or_(*alternatives)


def _holds_canonicals(param: Any) -> bool:
    """Whether a reference parameter's values can be canonical URLs (not Reference)."""
    if param.paths is None:
        return True
    return any(p.type in ("canonical", "uri") for p in param.paths)


def _has(node: Has, scope: Scope, res: Any, drive: bool) -> Condition:
    """search.html#has: a current ``node.rtype`` resource refers here through
    ``node.param`` and satisfies the inner node.

    When the index tables answer the inner node, the referring resources are never read:
    their reference rows exist only while they are current (see index_driven), which on
    the benchmark saves a random read of the resource table per referring Observation."""
    ref = _alias(sp_reference)
    # Driving: the sources the inner node finds, then their reference rows by res_pk.
    # A test: the reference rows that point at this candidate, by (type, id).
    by_source = drive and drives(node.inner)
    conditions = [
        *_index_rows(ref, node.param.code, node.rtype, probe=by_source),
        ref.c.url.is_(None),
        *_scoped(unindexed(ref.c.target_type) if by_source else ref.c.target_type, scope),
    ]
    if _index_only(node.inner):
        conditions.append(_inner(node.inner, node.rtype, _PkOf(ref.c.res_pk), drive))
        sub = select(ref.c.target_id).where(*conditions)
    else:
        source = _alias(resource)
        conditions += [source.c.deleted == false(), _inner(node.inner, node.rtype, source, drive)]
        sub = select(ref.c.target_id).join(source, source.c.pk == ref.c.res_pk).where(*conditions)
    if drive:
        return res.c.id.in_(sub)
    return _test(
        sub.with_only_columns(literal(1)).where(
            ref.c.target_id == res.c.id, ref.c.target_type == res.c.rtype
        )
    )


def _in_compartment(node: InCompartment, res: Any, drive: bool) -> Condition:
    """compartmentdefinition.html: a listed parameter of the resource's type refers to the
    owner -- found through the reverse reference index, (target_type, target_id, param) --
    or, where the definition says ``{def}``, the resource is the owner itself."""
    ref = _alias(sp_reference)
    by_params: dict[tuple[str, ...], list[str]] = {}
    for rtype, params, _ in node.members:
        if params:
            by_params.setdefault(params, []).append(rtype)
    referring = or_(
        *(
            and_(
                ref.c.param.in_(params),
                ref.c.rtype == types[0] if len(types) == 1 else ref.c.rtype.in_(types),
            )
            for params, types in by_params.items()
        )
    )
    alternatives: list[Condition] = []
    if by_params:
        sub = select(ref.c.res_pk).where(
            ref.c.target_type == node.compartment,
            ref.c.target_id == bound(node.id),
            ref.c.url.is_(None),
            referring,
        )
        alternatives.append(_member(res, ref.c.res_pk, sub, drive))
    if any(itself for _, _, itself in node.members):
        alternatives.append(and_(res.c.rtype == node.compartment, res.c.id == bound(node.id)))
    return or_(*alternatives) if alternatives else false()


def _all_of(nodes: tuple[Node, ...], scope: Scope, res: Any, drive: bool) -> Condition:
    """Every node holds: the most selective drives (when asked to), the rest are tests."""
    ordered = driving_order(nodes)
    return and_(
        true(),
        *(
            node_condition(n, scope, res, drive=drive and i == 0 and drives(n))
            for i, n in enumerate(ordered)
        ),
    )


def _permitted(node: Permitted, scope: Scope, res: Any, drive: bool) -> Condition:
    """An access-control restriction (ARCHITECTURE.md "Access control": a search never
    returns what a read would refuse). Driving, it is the union of every alternative's
    matches, ``pk IN (SELECT ... UNION ALL SELECT ...)`` -- a patient's compartment is a
    set as small as a compartment search; as a test, the alternatives OR-ed on the row."""
    single = isinstance(scope, str) and node.types() == (scope,)
    if drive:
        subs: list[Select[Any]] = []
        for rtype, alternatives in node.by_type:
            for alternative in alternatives:
                r = _alias(resource)
                ordered = driving_order(alternative)
                by_pk = bool(ordered) and drives(ordered[0]) and _drives_by_pk(ordered[0])
                subs.append(
                    select(r.c.pk).where(
                        (unindexed(r.c.rtype) if by_pk else r.c.rtype) == rtype,
                        r.c.deleted == false(),
                        *(
                            node_condition(n, rtype, r, drive=i == 0 and drives(n))
                            for i, n in enumerate(ordered)
                        ),
                    )
                )
        if not subs:
            return false()
        return res.c.pk.in_(subs[0] if len(subs) == 1 else union_all(*subs))
    tests: list[Condition] = []
    for rtype, alternatives in node.by_type:
        if not alternatives:
            continue
        matched = or_(
            *(
                and_(true(), *(node_condition(n, rtype, res) for n in alternative))
                for alternative in alternatives
            )
        )
        tests.append(matched if single else and_(res.c.rtype == rtype, matched))
    return or_(*tests) if tests else false()


def query_scope(query: SearchQuery) -> Scope:
    return query.rtype if query.rtype is not None else (query.types or None)


def criteria_conditions(query: SearchQuery, res: Any = resource) -> list[Condition]:
    """Every condition of the query on the resource table (or an alias of it): the
    driving criterion first, as a set; the others as tests (fhir_server.search.plan)."""
    conditions: list[Condition] = [res.c.deleted == false()]
    scope = query_scope(query)
    ordered = driving_order(query.criteria)
    by_pk = bool(ordered) and drives(ordered[0]) and _drives_by_pk(ordered[0])
    # With a driving set of pks, the type is checked on the rows it names; without one,
    # the (rtype, last_updated, pk) index is where the scan starts.
    conditions.extend(_scoped(unindexed(res.c.rtype) if by_pk else res.c.rtype, scope))
    for n, node in enumerate(ordered):
        conditions.append(node_condition(node, scope, res, drive=n == 0 and drives(node)))
    return conditions


def _drives_by_pk(node: Node) -> bool:
    """Whether ``node`` as driver is ``res.pk IN (...)`` (not ``_id``/``_has``, which
    name the resource by (type, id), nor ``_lastUpdated``, a column of its own)."""
    if isinstance(node, Criterion):
        return node.param.code not in RESOURCE_COLUMNS
    if isinstance(node, AllOf):
        ordered = driving_order(node.nodes)
        return bool(ordered) and _drives_by_pk(ordered[0])
    return not isinstance(node, Has)


def match_pks(query: SearchQuery) -> Select[Any]:
    """``SELECT resource.pk`` of the current resources matching ``query``."""
    with _statement():
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
            table = _alias(INDEX_TABLES[key.param.table])
            asc_col, desc_col = _SORT_COLUMNS[key.param.table]
            column = table.c[desc_col if key.descending else asc_col]
            aggregate = func.max(column) if key.descending else func.min(column)
            # a correlated lookup through res_pk, or a grouped scan of the whole parameter
            conditions = _index_rows(
                table, key.param.code, query_scope(query), probe=bool(query.criteria)
            )
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
    # NULLS FIRST/LAST (PostgreSQL; SQLite since 3.30): the two databases put NULLs at
    # opposite ends by default. As the very expression of the select list, SQLite reuses
    # the sort key it computed instead of running its subquery again (an `x IS NULL`
    # term did, a third of the app query's index probes).
    return [ordered.nulls_last() if nulls_last else ordered.nulls_first()]


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
            bound_value = bound(value)
            after = column < bound_value if desc else column > bound_value
            if nulls_last and nullable:
                after = or_(after, column.is_(None))
            same = column == bound_value
        alternatives.append(and_(*equal_so_far, after))
        equal_so_far.append(same)
    edge_pk = bound(pk_value)
    alternatives.append(and_(*equal_so_far, pk > edge_pk if forward else pk < edge_pk))
    beyond = or_(*alternatives)
    if keys and values[0] is not None and not keys[0][2]:
        # A redundant bound on the leading key, so the database can seek an index on it
        # instead of testing the OR above on every row.
        column, descending, _ = keys[0]
        desc = descending if forward else not descending
        first = bound(values[0])
        beyond = and_(column <= first if desc else column >= first, beyond)
    elif not keys:
        beyond = pk > edge_pk if forward else pk < edge_pk
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
    # _explain: (what, SQL, plan) for each statement the page needed
    explained: list[tuple[str, str, str]] = field(default_factory=list)


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
    digest = hashlib.sha256(orjson.dumps([query.rtype, query.compartment, kept])).digest()
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


def _fetch(
    conn: Connection, pks: Sequence[int], statements: StatementCache
) -> dict[int, FoundResource]:
    if not pks:
        return {}

    def build(values: Sequence[Any]) -> Select[Any]:
        return select(
            resource.c.pk,
            resource.c.rtype,
            resource.c.id,
            resource.c.version,
            resource.c.last_updated,
            resource.c.body,
        ).where(resource.c.pk.in_([bound(pk) for pk in values]))

    rows = _execute(conn, statements, ("fetch", len(pks)), (), pks, build)
    return {
        row.pk: FoundResource(row.rtype, row.id, row.version, row.last_updated, bytes(row.body))
        for row in rows
    }


def index_driven(query: SearchQuery) -> tuple[Any, Select[Any]] | None:
    """The matches read from the index tables alone, when the query allows it: the driving
    criterion's index rows, each tested against the other criteria through its res_pk, as
    (res_pk column, ``SELECT ... WHERE ...`` with no columns chosen yet).

    Sound because index rows exist only for current, not deleted resources (the repository
    deletes them with each new version) and carry the resource type. Needs every criterion
    to be answered by index tables (no ``_id``, ``_lastUpdated``, ``_has`` or ``{def}``).
    With one equality token as driver the rows come in res_pk order straight from the
    index, so a page is a bounded index range and a count reads one range: on a million
    Observations sharing a code, 0.1 ms and ~0.2 s (the ``pk IN (...)`` form builds the
    million-row set first: ~0.8 s for the page).
    """
    ordered = driving_order(query.criteria)
    first = ordered[0] if ordered else None
    if not (
        isinstance(first, Criterion) and drives(first) and all(_index_only(n) for n in ordered)
    ):
        return None
    scope = query_scope(query)
    pk_column, rows = criterion_rows(first, scope)
    candidate = _PkOf(pk_column)
    tests = [node_condition(node, scope, candidate) for node in ordered[1:]]
    return pk_column, rows.where(*tests)


class _PkOf:
    """Stands for the resource table where a node only needs ``res.c.pk`` (index_driven)."""

    def __init__(self, pk_column: Any) -> None:
        self.c = SimpleNamespace(pk=pk_column)


def count_statement(query: SearchQuery) -> Select[Any]:
    """``SELECT count(*)`` of the matches (``_total``, ``_summary=count``): the distinct
    res_pk of the index rows when the index tables answer the query (index_driven)."""
    with _statement():
        driven = index_driven(query)
        if driven is not None:
            pk_column, rows = driven
            candidates = rows.with_only_columns(pk_column.label("pk")).distinct().subquery()
            return select(func.count()).select_from(candidates)
        return select(func.count()).select_from(
            select(resource.c.pk).where(*criteria_conditions(query)).subquery()
        )


# Parameters answered from columns of the resource table (search.html#all).
RESOURCE_COLUMNS = frozenset({"_id", "_lastUpdated"})


def _index_only(node: Node) -> bool:
    """Whether ``node`` is answered from index tables alone (no resource-table column)."""
    if isinstance(node, Criterion):
        return node.param.code not in RESOURCE_COLUMNS
    if isinstance(node, Chain):
        return True
    if isinstance(node, InCompartment):
        return not any(itself for _, _, itself in node.members)
    if isinstance(node, AllOf):
        return all(_index_only(n) for n in node.nodes)
    return False  # _has compares the resource's own type and id; Permitted its type


def page_statement(
    query: SearchQuery, position: PagePosition | None, count: int, limit: Any = None
) -> tuple[Select[Any], int]:
    """The statement for one page -- ``count + 1`` rows after (or before) ``position`` in
    sort order, each with its pk, sort-key values ``k0``... and the resource's own columns
    (see _with_bodies) -- and the number of keys. ``limit``: the LIMIT (``count + 1``) as
    a slot, when building from a slotted query (search_shapes)."""
    forward = position is None or position.forward
    rows_limit = bound(limit, Integer()) if limit is not None else count + 1
    with _statement():
        source, keys = sort_keys(query)
        if position is not None and len(position.keys) != len(keys):
            raise bad_request("The paging cursor belongs to another search")
        driven = index_driven(query) if not keys else None
        if driven is not None:
            # In res_pk order straight from the driving index: one flat statement, so the
            # database stops after count + 1 rows (a subquery would be read in full first).
            pk_column, found_rows = driven
            stmt = found_rows.with_only_columns(pk_column.label("pk")).distinct()
            if position is not None:
                edge = bound(position.pk)
                stmt = stmt.where(pk_column > edge if forward else pk_column < edge)
            order: list[Any] = [pk_column.asc() if forward else pk_column.desc()]
            return _with_bodies(stmt.order_by(*order).limit(rows_limit), [], forward), 0
        labelled = [expr.label(f"k{i}") for i, (expr, _, _) in enumerate(keys)]
        inner = (
            select(resource.c.pk, *labelled)
            .select_from(source)
            .where(*criteria_conditions(query))
            .subquery()
        )
    inner_keys = [(inner.c[f"k{i}"], desc, nullable) for i, (_, desc, nullable) in enumerate(keys)]
    stmt = select(inner)
    if position is not None:
        stmt = stmt.where(_beyond(inner_keys, position.keys, inner.c.pk, position.pk, forward))
    page = stmt.order_by(*_page_order(inner_keys, inner.c.pk, forward)).limit(rows_limit)
    key_specs = [(desc, nullable) for _, desc, nullable in keys]
    return _with_bodies(page, key_specs, forward), len(keys)


def _page_order(keys: list[tuple[Any, bool, bool]], pk: Any, forward: bool) -> list[Any]:
    """ORDER BY terms for (column, descending, nullable) sort keys then pk, read forward
    or backward."""
    order = []
    for column, descending, nullable in keys:
        order.extend(_order(column, descending if forward else not descending, forward, nullable))
    order.append(pk.asc() if forward else pk.desc())
    return order


# The resource rows of a page, joined outside the page's own statement (_with_bodies).
_PAGE_RESOURCE = resource.alias("found")


def _with_bodies(page: Select[Any], keys: list[tuple[bool, bool]], forward: bool) -> Select[Any]:
    """``page`` (pk and k0... in order, LIMITed) joined to the resource rows it names, in
    the same order: the page and its bodies in one statement, one round trip instead of
    two, and nothing can change between them. The page stays a LIMITed subquery, which
    neither database merges into the join (PostgreSQL never pulls up a subquery with
    LIMIT; SQLite's flattener refuses one in a join), so it still stops after count + 1
    rows; the join reads just those rows by primary key, and the outer ORDER BY sorts
    count + 1 rows."""
    inner = page.subquery("page")
    found = _PAGE_RESOURCE
    inner_keys = [(inner.c[f"k{i}"], desc, nullable) for i, (desc, nullable) in enumerate(keys)]
    return (
        select(
            inner,
            found.c.rtype,
            found.c.id,
            found.c.version,
            found.c.last_updated,
            found.c.body,
        )
        .join_from(inner, found, found.c.pk == inner.c.pk)
        .order_by(*_page_order(inner_keys, inner.c.pk, forward))
    )


# The search statements of this process, compiled once per query shape (search_shapes).
STATEMENTS = StatementCache()


def prepared_page(
    dialect: Dialect,
    query: SearchQuery,
    position: PagePosition | None,
    count: int,
    statements: StatementCache,
) -> tuple[CompiledStatement, list[Any]]:
    """The compiled page statement of ``query``'s shape, from ``statements`` or built
    and compiled now from the slotted query, and this query's values for it."""
    shape = page_shape(query, position, count)

    def build() -> tuple[Select[Any], int]:
        slotted = page_shape(query, position, count, slotted=True)
        assert slotted.query is not None
        return page_statement(slotted.query, slotted.position, count, limit=slotted.limit)

    return compiled_for(statements, dialect, ("page", shape.key), shape.held, build), shape.values


def count_matches(
    conn: Connection, query: SearchQuery, statements: StatementCache | None = None
) -> int:
    """The number of matches (``_total=accurate``, ``_summary=count``)."""
    statements = STATEMENTS if statements is None else statements
    if statements.size == 0:
        return int(conn.execute(count_statement(query)).scalar_one())
    shape = page_shape(query, None, 0)

    def build() -> tuple[Select[Any], int]:
        slotted = page_shape(query, None, 0, slotted=True)
        assert slotted.query is not None
        return count_statement(slotted.query), 0

    found = compiled_for(statements, conn.dialect, ("count", shape.key), shape.held, build)
    return int(conn.exec_driver_sql(found.sql, found.parameters(shape.values)).scalar_one())


def matching_pks(
    conn: Connection, query: SearchQuery, limit: int, statements: StatementCache | None = None
) -> list[int]:
    """``pk`` of at most ``limit`` current resources matching ``query``, in no order: the
    lookups the server makes for itself (conditional interactions, the planner's reads,
    access lookups), compiled once per shape like a page (search_shapes)."""
    statements = STATEMENTS if statements is None else statements
    if statements.size == 0:
        return list(conn.execute(match_pks(query).limit(limit)).scalars())
    shape = page_shape(query, None, 0)

    def build() -> tuple[Select[Any], int]:
        slotted = page_shape(query, None, 0, slotted=True)
        assert slotted.query is not None
        return match_pks(slotted.query).limit(limit), 0

    key = ("match", shape.key, limit)  # the limit is a constant of the statement
    found = compiled_for(statements, conn.dialect, key, shape.held, build)
    return [pk for (pk,) in conn.exec_driver_sql(found.sql, found.parameters(shape.values))]


def _execute(
    conn: Connection,
    statements: StatementCache,
    key: Any,
    held: tuple[Any, ...],
    values: Sequence[Any],
    build: Callable[[Sequence[Any]], Select[Any]],
) -> Any:
    """Run the statement ``build(values)`` makes: built for these values when the cache is
    off, else compiled once per ``key`` from ``build`` applied to slots (search_shapes)."""
    if statements.size == 0:
        return conn.execute(build(values))

    def slotted() -> tuple[Select[Any], int]:
        return build([Slot(n) for n in range(len(values))]), 0

    found = compiled_for(statements, conn.dialect, key, held, slotted)
    return conn.exec_driver_sql(found.sql, found.parameters(values))


def execute_search(
    conn: Connection,
    query: SearchQuery,
    *,
    base_url: str,
    page_cursor: str | None,
    secret: bytes,
    statements: StatementCache | None = None,
) -> SearchResult:
    """One page of a search: matches in sort order, their includes, cursors and total.

    ``base_url`` is accepted for symmetry with the Bundle builder (links are built there);
    ``secret`` signs and checks the paging cursors. ``statements``: the compiled page
    statements by shape (default: this process's STATEMENTS; size 0 builds every page).
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

    forward = position is None or position.forward
    statements = STATEMENTS if statements is None else statements
    compiled: CompiledStatement | None = None
    if statements.size > 0 and not query.explain:
        compiled, values = prepared_page(conn.dialect, query, position, count, statements)
        key_count = compiled.key_count
    else:
        page, key_count = page_statement(query, position, count)
    reads_page = count > 0 and query.summary != "count"
    counts = query.total in ("accurate", "estimate") or query.summary == "count"
    includes = bool(query.include or query.revinclude)
    # The usual search is one statement (the page with its bodies): it needs no
    # transaction, and on PostgreSQL runs in autocommit, one round trip. Several
    # statements must agree -- the total with the page, includes with the matches -- so
    # they share one snapshot (fhir_server.storage.database.snapshot).
    several = (reads_page and counts) or includes or bool(query.explain)
    explained: list[tuple[str, str, str]] = []
    result = SearchResult(matches=[], warnings=warnings, explained=explained)
    with snapshot(conn) if several else nullcontext():
        if query.explain:
            analyze = query.explain == "analyze"
            explained.append(("page", *explain(conn, page, analyze=analyze)))
            if counts:
                explained.append(("total", *explain(conn, count_statement(query), analyze=analyze)))
        if not reads_page:
            rows = []
        elif compiled is not None:
            rows = list(conn.exec_driver_sql(compiled.sql, compiled.parameters(values)))
        else:
            rows = list(conn.execute(page))
        more = len(rows) > count
        rows = rows[:count]
        if not forward:
            rows.reverse()
        found = {
            row.pk: FoundResource(row.rtype, row.id, row.version, row.last_updated, bytes(row.body))
            for row in rows
        }
        result.matches = list(found.values())
        if counts:
            result.total = count_matches(conn, query, statements)
        elif position is None and not more and count > 0:
            # The whole result is on this one page: the total costs nothing.
            result.total = len(result.matches)
        if includes:
            result.includes = _includes(conn, query, found, result.warnings, statements)

    def edge(row: Any, ahead: bool) -> str:
        values = tuple(row._mapping[f"k{i}"] for i in range(key_count))
        return _encode_position(PagePosition(values, row.pk, ahead), fingerprint, secret)

    if rows:
        if (forward and more) or (not forward and position is not None):
            result.next_cursor = edge(rows[-1], True)
        if (forward and position is not None) or (not forward and more):
            result.previous_cursor = edge(rows[0], False)
    return result


# --- _include and _revinclude (search.html#include) ----------------------------------


def _forward_targets(
    conn: Connection, source_pks: Sequence[int], inc: Include, statements: StatementCache
) -> set[int]:
    """pks of the current resources the sources refer to through ``inc``: literal
    references and canonical ones, one statement."""

    def build(pks: Sequence[Any]) -> Select[Any]:
        ref = _alias(sp_reference)
        target = _alias(resource)
        conditions: list[Condition] = [
            ref.c.res_pk.in_([bound(pk) for pk in pks]),
            target.c.deleted == false(),
        ]
        # the page's own rows by res_pk: no (rtype, param) prefix (see _index_rows)
        if inc.source != "*":
            conditions.append(unindexed(ref.c.rtype) == inc.source)
        if inc.param is not None:
            conditions.append(unindexed(ref.c.param) == inc.param.code)
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
        uri = _alias(sp_uri)
        canonical_refs = (
            select(target.c.pk)
            .select_from(ref)
            .join(uri, and_(uri.c.param == "url", uri.c.value == ref.c.url))
            .join(target, target.c.pk == uri.c.res_pk)
            .where(*conditions, ref.c.url.is_not(None))
        )
        return select(union_all(literal_refs, canonical_refs).subquery())

    key = ("include", inc.source, _identity(inc.param), inc.target, len(source_pks))
    with _statement():
        rows = _execute(conn, statements, key, (inc.param,), source_pks, build)
    return {pk for (pk,) in rows}


def _identity(param: Any) -> int | None:
    """A search parameter definition in a statement key (see search_shapes._Walk.param)."""
    return None if param is None else id(param)


def _reverse_sources(
    conn: Connection, targets: Sequence[FoundResource], inc: Include, statements: StatementCache
) -> set[int]:
    """pks of the current resources that refer to the targets through ``inc``."""
    by_type: dict[str, list[str]] = {}
    for t in targets:
        if inc.target is None or inc.target == t.rtype:
            by_type.setdefault(t.rtype, []).append(t.id)
    if not by_type:
        return set()
    values = [target_id for ids in by_type.values() for target_id in ids]
    sizes = tuple((rtype, len(ids)) for rtype, ids in by_type.items())

    def build(ids: Sequence[Any]) -> Select[Any]:
        ref = _alias(sp_reference)
        source = _alias(resource)
        which: list[Condition] = []
        start = 0
        for rtype, size in sizes:
            these = [bound(target_id) for target_id in ids[start : start + size]]
            which.append(and_(ref.c.target_type == rtype, ref.c.target_id.in_(these)))
            start += size
        conditions: list[Condition] = [
            ref.c.url.is_(None),
            or_(*which),
            source.c.deleted == false(),
        ]
        if inc.source != "*":
            conditions.append(ref.c.rtype == inc.source)
        if inc.param is not None:
            conditions.append(ref.c.param == inc.param.code)
        return (
            select(source.c.pk)
            .select_from(ref)
            .join(source, source.c.pk == ref.c.res_pk)
            .where(*conditions)
        )

    key = ("revinclude", inc.source, _identity(inc.param), inc.target, sizes)
    with _statement():
        rows = _execute(conn, statements, key, (inc.param,), values, build)
    return {pk for (pk,) in rows}


def _includes(
    conn: Connection,
    query: SearchQuery,
    matches: dict[int, FoundResource],
    warnings: list[Issue],
    statements: StatementCache,
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
            new |= _forward_targets(conn, sorted(frontier), inc, statements)
        for inc in revincludes:
            new |= _reverse_sources(conn, list(frontier.values()), inc, statements)
        new -= seen
        if query.readable is not None and new:
            # An included resource the token could not read is left out, and :iterate
            # never walks on through it (access control, search.html#include).
            seen |= new
            new = _readable(conn, new, query.readable, statements)
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
        frontier = _fetch(conn, sorted(new), statements)
        included.update(frontier)
        seen |= new
    return [included[pk] for pk in sorted(included)]


def _readable(
    conn: Connection, pks: set[int], readable: Permitted, statements: StatementCache
) -> set[int]:
    """The pks among ``pks`` the access restriction ``readable`` lets through."""
    ordered = sorted(pks)
    if statements.size == 0:
        with _statement():
            stmt = select(resource.c.pk).where(
                resource.c.pk.in_(ordered), _permitted(readable, None, resource, False)
            )
        return {pk for (pk,) in conn.execute(stmt)}
    node_key, values, held, _ = node_shape(readable)
    first_pk = len(values)

    def build() -> tuple[Select[Any], int]:
        _, _, _, slotted = node_shape(readable, slotted=True)
        slots = [bound(Slot(first_pk + n)) for n in range(len(ordered))]
        with _statement():
            stmt = select(resource.c.pk).where(
                resource.c.pk.in_(slots), _permitted(slotted, None, resource, False)
            )
        return stmt, 0

    key = ("readable", node_key, len(ordered))
    found = compiled_for(statements, conn.dialect, key, held, build)
    rows = conn.exec_driver_sql(found.sql, found.parameters([*values, *ordered]))
    return {pk for (pk,) in rows}


# --- _explain (a debug parameter; the server decides who may use it) ------------------


class _Explain(Executable, ClauseElement):
    """``EXPLAIN QUERY PLAN <select>`` on SQLite, ``EXPLAIN [(ANALYZE, BUFFERS)] <select>``
    on PostgreSQL, with the statement's own bound parameters."""

    inherit_cache = False

    def __init__(self, statement: Select[Any], analyze: bool) -> None:
        self.statement = statement
        self.analyze = analyze


@compiles(_Explain)
def _compile_explain(element: _Explain, compiler: Any, **kw: Any) -> str:
    if compiler.dialect.name == "sqlite":
        prefix = "EXPLAIN QUERY PLAN "
    elif element.analyze:
        prefix = "EXPLAIN (ANALYZE, BUFFERS) "
    else:
        prefix = "EXPLAIN "
    return prefix + compiler.process(element.statement, **kw)


def explain(conn: Connection, statement: Select[Any], *, analyze: bool = False) -> tuple[str, str]:
    """The SQL of ``statement`` (bound values inlined for reading) and the database's plan."""
    try:
        sql = str(statement.compile(conn, compile_kwargs={"literal_binds": True}))
    except (CompileError, NotImplementedError):
        sql = str(statement.compile(conn))
    rows = conn.execute(_Explain(statement, analyze)).all()
    if conn.dialect.name == "sqlite":
        # (id, parent, notused, detail): indent each step under its parent.
        depth: dict[int, int] = {0: 0}
        lines = []
        for row in rows:
            depth[row[0]] = depth.get(row[1], 0) + 1
            lines.append("  " * (depth[row[0]] - 1) + str(row[3]))
        return sql, "\n".join(lines)
    return sql, "\n".join(str(row[0]) for row in rows)


# --- custom search parameters and $reindex ------------------------------------------------

# A digest of the stored SearchParameter resources that changes with every write to one:
# a create adds a row, an update or delete raises a version. One range of the
# (rtype, last_updated, pk) index and the few rows it names.
_SEARCH_PARAMETER_STAMP = select(
    func.count(), func.coalesce(func.sum(resource.c.version), 0)
).where(resource.c.rtype == "SearchParameter")
_SEARCH_PARAMETER_BODIES = select(resource.c.body).where(
    resource.c.rtype == "SearchParameter", resource.c.deleted == false()
)
_LIVE: dict[str, LiveRegistry] = {}
_LIVE_LOCK = threading.Lock()
# One check per connection checkout (a request's read, or one write transaction).
_CHECKED: weakref.WeakKeyDictionary[Connection, Registry] = weakref.WeakKeyDictionary()


def live_registry(conn: Connection) -> Registry:
    """The registry in force on the database behind ``conn``: the R4 core parameters plus
    the active SearchParameter resources stored there (fhir_server.search.custom).

    Asked once per write transaction (and by SearchRegistryCache for searches, at most
    once per its ttl); the answer is rebuilt only when the stored SearchParameters
    changed, so a parameter written through one process is used by every process's next
    write, and by its searches within the cache's bound."""
    known = _CHECKED.get(conn)
    if known is not None:
        return known
    key = conn.engine.url.render_as_string(hide_password=False)
    live = _LIVE.get(key)
    if live is None:
        with _LIVE_LOCK:
            live = _LIVE.setdefault(key, LiveRegistry())
    count, versions = conn.execute(_SEARCH_PARAMETER_STAMP).one()
    reg = live.current(
        (int(count), int(versions)),
        lambda: [orjson.loads(body) for body in conn.execute(_SEARCH_PARAMETER_BODIES).scalars()],
    )
    _CHECKED[conn] = reg
    return reg


# How stale the registry of a search may be (SearchRegistryCache): the bound within which
# a SearchParameter written through another process is in force in this one's searches.
SEARCH_REGISTRY_TTL_S = 0.5


class SearchRegistryCache:
    """The registry searches use on one database in one process (one per Repository):
    live_registry's digest query at most once every ``ttl`` seconds of ``clock``.

    The digest is a round trip of its own; asked on every search it was one of five per
    search on PostgreSQL (docs/BENCHMARKS.md, "Search"). The bound it buys: a custom
    SearchParameter created, changed or retired through another server process is in force
    in this process's searches within ``ttl`` seconds of its commit; written through this
    process, from the next search on (the repository calls :meth:`changed` after such a
    commit). Writes never use this cache: a write transaction checks the digest itself
    (live_registry), so index rows are always extracted with the parameters in force.
    """

    def __init__(
        self, ttl: float = SEARCH_REGISTRY_TTL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl = ttl
        self._clock = clock
        self._generation = 0
        # (clock at the check, generation at the check, registry): replaced whole
        self._state: tuple[float, int, Registry] | None = None

    def registry(self, conn: Connection) -> Registry:
        now = self._clock()
        state = self._state
        if state is not None:
            checked_at, generation, reg = state
            if generation == self._generation and now - checked_at < self._ttl:
                return reg
        # Read the generation before the check: a change committed meanwhile leaves the
        # stored state already outdated, so the next search checks again.
        generation = self._generation
        reg = live_registry(conn)
        self._state = (now, generation, reg)
        return reg

    def changed(self) -> None:
        """This process committed a change to a SearchParameter: check on the next search."""
        self._generation += 1


@dataclass(frozen=True, slots=True)
class ReindexBatch:
    resources: int
    index_rows: int
    # where the next batch starts (keyset: last_updated and pk of the last row, or the pk
    # alone for every type), None when done
    after: tuple[int, int] | None


def reindex_batch(
    conn: Connection,
    reg: Registry,
    *,
    rtype: str | None,
    after: tuple[int, int] | None,
    limit: int,
) -> ReindexBatch:
    """Re-extract the index rows of the next ``limit`` current resources after ``after``
    (keyset paging, never OFFSET), inside the caller's write transaction.

    Every type: in pk order (the table itself). One type: in (last_updated, pk) order, the
    (rtype, last_updated, pk) index, so a batch reads only rows of that type -- in pk order
    a type spread thin among a million Observations was a scan of the whole table (5,867
    Patients took 7.9 s, now 1.8 s). A resource updated meanwhile moves behind the cursor and is
    indexed again, never skipped.

    PostgreSQL: the rows are locked (``FOR UPDATE``), so a concurrent update of one of them
    waits for this batch, then writes its own rows over ours; SQLite's write transaction
    holds the database lock already."""
    columns = (resource.c.pk, resource.c.rtype, resource.c.last_updated, resource.c.body)
    stmt = select(*columns).where(resource.c.deleted == false()).limit(limit)
    if rtype is None:
        stmt = stmt.order_by(resource.c.pk)
        if after is not None:
            stmt = stmt.where(resource.c.pk > after[1])
    else:
        stmt = stmt.where(resource.c.rtype == rtype).order_by(
            resource.c.last_updated, resource.c.pk
        )
        if after is not None:
            lu, pk = after
            stmt = stmt.where(
                resource.c.last_updated >= lu,
                or_(resource.c.last_updated > lu, resource.c.pk > pk),
            )
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    found = conn.execute(stmt).all()
    if not found:
        return ReindexBatch(0, 0, None)
    pks = [row.pk for row in found]
    fresh: dict[str, list[dict[str, Any]]] = {name: [] for name in INDEX_TABLES}
    for row in found:
        for name, rows in extract_index_rows(orjson.loads(row.body), reg).items():
            template = _INDEX_TEMPLATES[name]
            fresh[name].extend(
                {**template, **r, "res_pk": row.pk, "rtype": row.rtype} for r in rows
            )
    written = 0
    for name, table in INDEX_TABLES.items():
        conn.execute(delete(table).where(table.c.res_pk.in_(pks)))
        if fresh[name]:
            conn.execute(insert(table), fresh[name])
            written += len(fresh[name])
    last = found[-1]
    more = len(found) == limit
    return ReindexBatch(len(found), written, (last.last_updated, last.pk) if more else None)


# Every row of one executemany must name the same columns: absent values become NULL.
_INDEX_TEMPLATES = {
    name: {c.name: None for c in table.columns} for name, table in INDEX_TABLES.items()
}
