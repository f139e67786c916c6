"""Compiled search statements, one per query *shape*: build and compile once, bind values.

Two searches have the same shape when they differ only in their values: the same
resource type, parameters (the same SearchParam definitions: a custom SearchParameter
changed is another definition, so another shape), modifiers, prefixes, number of OR
values, which values are absent, ``_sort``, paging direction and the shape of an access
restriction (fhir_server.search.restriction). The SQL of a page depends on the shape
alone (fhir_server.storage.search_sql builds it from the criteria's kinds, never from
their values), so the SQLAlchemy statement is built and compiled once per shape and
kept here with a recipe for its parameters; a repeated shape costs a walk of the query
and one driver call. Building the statement, SQLAlchemy's cache key and its parameter
processing were ~1 ms of the app query's ~1.3 ms of Python (bench/search_overhead.py).
The same cache holds the count (``_total``) and the include statements (shaped by the
include and the number of resources it starts from) and the access check on included
resources.

How: :func:`page_shape` walks the query and replaces every value by a :class:`Slot`
(its index in the list of values), giving the shape (a hashable key) and the values.
On a miss the SQL generator builds the page from the *slotted* query: wherever it binds
a value it calls :func:`bound`, which turns a slot into a ``bindparam``; a value the SQL
needs in another form (normalised, prefix successor, LIKE-escaped) goes through
:func:`derived` first, recorded as the function to apply to the slot's value. Values are
therefore always bound parameters, never SQL text (injection cannot reach the
statement). Values the SQL generator decides on (None or not, an empty string) are part
of the shape, not slots.

PostgreSQL: the statement is sent as text with its values, unprepared (psycopg's
``prepare_threshold`` is None, fhir_server.storage.database), so every execution is
still planned for its values; caching the text does not bring back the generic-plan
problem.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, bindparam
from sqlalchemy.engine import Dialect

from fhir_server.search.query import (
    AllOf,
    Chain,
    CodeSetValue,
    CompositeValue,
    Criterion,
    DateValue,
    Has,
    InCompartment,
    Node,
    NumberValue,
    Permitted,
    QuantityValue,
    ReferenceValue,
    SearchQuery,
    SortKey,
    TextValue,
    TokenValue,
    UriValue,
    Value,
)
from fhir_server.search.text import normalise

# --- slots and the builder's side -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Slot:
    """The ``n``-th value of a query, as the SQL generator sees it in a slotted query;
    ``via``: functions applied to the value before it is bound (see derived)."""

    n: int
    via: tuple[Callable[[Any], Any], ...] = ()

    def name(self) -> str:
        return "v" + "_".join([str(self.n), *(fn.__name__ for fn in self.via)])


_RECORDING: ContextVar[dict[str, Slot] | None] = ContextVar("search_slots", default=None)


def bound(value: Any, type_: Any = None) -> Any:
    """``value`` as the SQL generator binds it: a slot becomes a named bind parameter
    (its value given at execution), anything else is passed on as it is."""
    if isinstance(value, Slot):
        name = value.name()
        slots = _RECORDING.get()
        if slots is not None:
            slots[name] = value
        return bindparam(name, None, type_=type_)
    return value


def derived(fn: Callable[[Any], Any], value: Any) -> Any:
    """``fn(value)``; for a slot, a slot that applies ``fn`` when the values are bound."""
    if isinstance(value, Slot):
        return Slot(value.n, (*value.via, fn))
    return fn(value)


def like_escaped(text: str) -> str:
    """``text`` as a LIKE operand matching itself literally, with ``/`` as the escape
    character (what SQLAlchemy's ``autoescape`` does, which needs a literal string)."""
    return text.replace("/", "//").replace("%", "/%").replace("_", "/_")


# --- the shape of a query ----------------------------------------------------------------


class _Walk:
    """One walk of a query: the values found, the definitions the shape names by
    identity, and (on a miss) the slotted copy."""

    __slots__ = ("values", "held", "slotted")

    def __init__(self, slotted: bool) -> None:
        self.values: list[Any] = []
        self.held: list[Any] = []
        self.slotted = slotted

    def leaf(self, x: Any) -> tuple[Any, Any]:
        """(key part, slotted) for one value. None, booleans and empty strings decide
        what SQL is generated: they are shape, not values."""
        if x is None or x is True or x is False or x == "":
            return x, x
        self.values.append(x)
        return 1, Slot(len(self.values) - 1)

    def param(self, param: Any) -> int:
        # By identity: a SearchParam holds unhashable compiled paths, and a custom
        # SearchParameter changed is a new object (custom.LiveRegistry), so a new shape.
        # The entry keeps the object alive, so its id cannot be reused meanwhile.
        self.held.append(param)
        return id(param)

    def value(self, v: Value) -> tuple[Any, Any]:
        key: Any
        if isinstance(v, TokenValue):
            ks, s = self.leaf(v.system)
            kc, c = self.leaf(v.code)
            return (TokenValue, ks, kc, v.no_system), TokenValue(s, c, v.no_system)
        if isinstance(v, DateValue):
            klo, lo = self.leaf(v.lo)
            khi, hi = self.leaf(v.hi)
            return (DateValue, v.prefix, klo, khi), DateValue(v.prefix, lo, hi)
        if isinstance(v, TextValue):
            if not normalise(v.text):
                # The normalised prefix is empty: another predicate (search_sql._starts_with)
                return (TextValue, v.text), v
            kt, t = self.leaf(v.text)
            return (TextValue, kt), TextValue(t)
        if isinstance(v, NumberValue):
            return self.number(v)
        if isinstance(v, QuantityValue):
            kn, n = self.number(v.number)
            ks, s = self.leaf(v.system)
            kc, c = self.leaf(v.code)
            kcc, cc = self.leaf(v.canonical_code)
            if v.canonical is None:
                kcan, can = None, None
            else:
                kcan, can = self.number(v.canonical)
            key = (QuantityValue, kn, ks, kc, kcc, kcan)
            return key, QuantityValue(n, s, c, cc, can)
        if isinstance(v, ReferenceValue):
            parts = [self.leaf(x) for x in (v.type, v.id, v.version, v.url)]
            return (ReferenceValue, *(k for k, _ in parts)), ReferenceValue(*(s for _, s in parts))
        if isinstance(v, UriValue):
            ku, u = self.leaf(v.uri)
            return (UriValue, ku), UriValue(u)
        if isinstance(v, CodeSetValue):
            ks, s = self.leaf(v.system)
            codes = [self.leaf(code) for code in v.codes]
            key = (CodeSetValue, ks, tuple(k for k, _ in codes))
            return key, CodeSetValue(s, tuple(c for _, c in codes))
        if isinstance(v, CompositeValue):
            parts = [self.value(p) for p in v.parts]
            key = (CompositeValue, tuple(k for k, _ in parts))
            return key, CompositeValue(tuple(s for _, s in parts))
        raise TypeError(v)  # pragma: no cover - every Value kind is above

    def number(self, v: NumberValue) -> tuple[Any, NumberValue]:
        kv, value = self.leaf(v.value)
        klo, lo = self.leaf(v.lo)
        khi, hi = self.leaf(v.hi)
        return (NumberValue, v.prefix, kv, klo, khi), NumberValue(v.prefix, value, lo, hi)

    def node(self, node: Node) -> tuple[Any, Any]:
        key: Any
        slotted: Any
        if isinstance(node, Criterion):
            values = [self.value(v) for v in node.values]
            key = (
                Criterion,
                self.param(node.param),
                node.modifier,
                node.missing,
                tuple(k for k, _ in values),
            )
            slotted = (
                Criterion(node.param, node.modifier, tuple(s for _, s in values), node.missing)
                if self.slotted
                else None
            )
            return key, slotted
        if isinstance(node, Chain):
            targets = [(t, self.node(inner)) for t, inner in node.targets]
            key = (Chain, self.param(node.param), tuple((t, k) for t, (k, _) in targets))
            return key, Chain(node.param, tuple((t, s) for t, (_, s) in targets))
        if isinstance(node, Has):
            kin, inner = self.node(node.inner)
            return (Has, node.rtype, self.param(node.param), kin), Has(
                node.rtype, node.param, inner
            )
        if isinstance(node, InCompartment):
            kid, id_ = self.leaf(node.id)
            key = (InCompartment, node.compartment, kid, node.members)
            return key, InCompartment(node.compartment, id_, node.members)
        if isinstance(node, AllOf):
            nodes = [self.node(n) for n in node.nodes]
            return (AllOf, tuple(k for k, _ in nodes)), AllOf(tuple(s for _, s in nodes))
        if isinstance(node, Permitted):
            by_type = [
                (rtype, [[self.node(n) for n in alt] for alt in alternatives])
                for rtype, alternatives in node.by_type
            ]
            key = (
                Permitted,
                tuple(
                    (rtype, tuple(tuple(k for k, _ in alt) for alt in alts))
                    for rtype, alts in by_type
                ),
            )
            slotted = Permitted(
                tuple(
                    (rtype, tuple(tuple(s for _, s in alt) for alt in alts))
                    for rtype, alts in by_type
                )
            )
            return key, slotted
        raise TypeError(node)  # pragma: no cover - every Node kind is above

    def sort_key(self, key: SortKey) -> tuple[Any, ...]:
        return (key.code, key.descending, None if key.param is None else self.param(key.param))


def node_shape(node: Node, slotted: bool = False) -> tuple[Any, list[Any], tuple[Any, ...], Any]:
    """(key, values, held definitions, slotted node or None) of one query node: an access
    restriction applied on its own (search_sql._readable)."""
    walk = _Walk(slotted)
    key, slotted_node = walk.node(node)
    return key, walk.values, tuple(walk.held), slotted_node if slotted else None


@dataclass(frozen=True, slots=True)
class PageShape:
    """A page statement's shape (``key``), its values in slot order, the definitions
    the key names by identity (``held``), and, when asked for, the slotted query,
    position and LIMIT to build the statement from."""

    key: tuple[Any, ...]
    values: list[Any]
    held: tuple[Any, ...]
    query: SearchQuery | None = None
    position: Any = None
    limit: Any = None


def page_shape(query: SearchQuery, position: Any, count: int, slotted: bool = False) -> PageShape:
    """The shape and values of one page of ``query`` (search_sql.page_statement's
    arguments: ``position`` a search_sql.PagePosition or None, ``count`` the page size).

    Only what page_statement reads is walked: the type(s), criteria (access restriction
    included), ``_sort``, the cursor position and the page size. ``slotted``: also make
    the copies with slots for values (needed on a cache miss only)."""
    walk = _Walk(slotted)
    criteria = [walk.node(n) for n in query.criteria]
    sort = tuple(walk.sort_key(k) for k in query.sort)
    pos_key: Any = None
    slotted_position = None
    if position is not None:
        keys = [walk.leaf(v) for v in position.keys]
        kpk, pk = walk.leaf(position.pk)
        pos_key = (tuple(k for k, _ in keys), kpk, position.forward)
        slotted_position = type(position)(tuple(s for _, s in keys), pk, position.forward)
    _, limit = walk.leaf(count + 1)
    key = (query.rtype, query.types, tuple(k for k, _ in criteria), sort, pos_key)
    if not slotted:
        return PageShape(key, walk.values, tuple(walk.held))
    slotted_query = SearchQuery(
        rtype=query.rtype,
        criteria=tuple(s for _, s in criteria),
        types=query.types,
        sort=query.sort,
    )
    return PageShape(key, walk.values, tuple(walk.held), slotted_query, slotted_position, limit)


# --- the cache --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CompiledStatement:
    """A statement compiled for one dialect: the SQL text, how to make its driver
    parameters from a query's values, how many sort keys (``k0``...) a page returns, and
    the definitions its key names by identity (kept alive with it)."""

    sql: str
    # Per driver parameter, in order: (parameter name, slot index or -1 for a constant,
    # functions to apply to the slot's value, the constant, the type's bind processor).
    recipe: tuple[tuple[str, int, tuple[Callable[[Any], Any], ...], Any, Any], ...]
    positional: bool
    key_count: int
    held: tuple[Any, ...]

    def parameters(self, values: Sequence[Any]) -> Any:
        """The driver's parameters (a tuple, or a dict for named paramstyles)."""
        out = []
        for _name, n, via, constant, process in self.recipe:
            if n < 0:
                value = constant
            else:
                value = values[n]
                for fn in via:
                    value = fn(value)
            if process is not None:
                value = process(value)
            out.append(value)
        if self.positional:
            return tuple(out)
        return {name: value for (name, *_), value in zip(self.recipe, out, strict=True)}


def compile_statement(
    statement: Select[Any], slots: dict[str, Slot], key_count: int, dialect: Dialect
) -> CompiledStatement:
    """Compile a statement built from a slotted query (``slots``: its bind parameters'
    slots, see recording) into SQL text and a parameter recipe.

    Expanding IN lists (types, parameter codes: shape) are rendered into the text. Should
    the dialect render a parameter as a literal (``literal_execute``), the statement is
    refused rather than cached with a value in it."""
    compiled = statement.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    constants = compiled.construct_params()
    processors = compiled._bind_processors
    names: Sequence[str]
    if compiled.positiontup is not None:
        names, positional = compiled.positiontup, True
    else:
        names, positional = list(constants), False
    if compiled.literal_execute_params:
        raise ValueError("a search value would be rendered as SQL text")
    recipe: list[tuple[str, int, tuple[Callable[[Any], Any], ...], Any, Any]] = []
    for name in names:
        slot = slots.get(name)
        process = processors.get(name)
        if slot is None:
            recipe.append((name, -1, (), constants[name], process))
        else:
            recipe.append((name, slot.n, slot.via, None, process))
    return CompiledStatement(str(compiled), tuple(recipe), positional, key_count, ())


def compiled_for(
    statements: StatementCache,
    dialect: Dialect,
    key: Any,
    held: tuple[Any, ...],
    build: Callable[[], tuple[Select[Any], int]],
) -> CompiledStatement:
    """The compiled statement of shape ``key`` on ``dialect``: from ``statements``, or
    ``build()`` (a statement made of slots, and its sort-key count) compiled now."""
    full = (dialect.name, dialect.driver, dialect.paramstyle, dialect.server_version_info, key)
    found = statements.get(full)
    if found is None:
        with recording() as slots:
            statement, key_count = build()
        found = compile_statement(statement, slots, key_count, dialect)
        found = CompiledStatement(found.sql, found.recipe, found.positional, key_count, held)
        statements.put(full, found)
    return found


@contextmanager
def recording() -> Iterator[dict[str, Slot]]:
    """Collect the slots :func:`bound` turns into bind parameters, by parameter name."""
    token = _RECORDING.set({})
    try:
        yield _RECORDING.get()  # type: ignore[misc]
    finally:
        _RECORDING.reset(token)


def _configured_size() -> int:
    raw = os.environ.get("SELFBACK_SEARCH_STATEMENT_CACHE", "")
    try:
        return max(0, int(raw)) if raw else DEFAULT_SIZE
    except ValueError:
        return DEFAULT_SIZE


DEFAULT_SIZE = 512


class StatementCache:
    """Compiled page statements by shape and dialect: a bounded LRU shared by the threads
    of one process (``size`` 0: off, every search builds its statement).

    Entries keep the SearchParam definitions their key names by identity alive, so a key
    can never match a statement built for another definition; a changed registry brings
    new definitions and therefore new keys, and the old entries age out."""

    def __init__(self, size: int | None = None) -> None:
        self.size = _configured_size() if size is None else size
        self._entries: OrderedDict[Any, CompiledStatement] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Any) -> CompiledStatement | None:
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                self.hits += 1
            return found

    def put(self, key: Any, page: CompiledStatement) -> None:
        with self._lock:
            self.misses += 1
            self._entries[key] = page
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
