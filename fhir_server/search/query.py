"""A parsed search: an expression tree the SQL generator walks (FHIR R4 search.html).

Parameters are AND-ed (search.html#combining: repeating a parameter), the values of one
parameter OR-ed (a comma-separated list). A node is a :class:`Criterion` (one parameter
with its modifier and values), a :class:`Chain` (search.html#chaining: a reference
parameter whose targets must match an inner node) or a :class:`Has` (search.html#has:
resources referred to by others that match an inner node). Result parameters (``_count``,
``_sort``, ``_include``...) are kept apart; they shape the page, not the match.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fhir_server.errors import Issue
from fhir_server.search.registry import SearchParam

# --- values, one class per parameter type -------------------------------------------


@dataclass(frozen=True, slots=True)
class TokenValue:
    """``code``, ``system|code``, ``|code`` (no system) or ``system|`` (search.html#token)."""

    system: str | None  # None: any system (or, with no_system, none)
    code: str | None  # None: any code in the system
    no_system: bool = False  # ``|code``: the token has no system


@dataclass(frozen=True, slots=True)
class TextValue:
    """A string value (string parameters, token :text, normalised as needed)."""

    text: str


@dataclass(frozen=True, slots=True)
class DateValue:
    """``[prefix]date``: the search value's inclusive microsecond range."""

    prefix: str
    lo: int
    hi: int


@dataclass(frozen=True, slots=True)
class NumberValue:
    """``[prefix]number``: the exact value and the [lo, hi) its precision implies."""

    prefix: str
    value: float
    lo: float
    hi: float


@dataclass(frozen=True, slots=True)
class QuantityValue:
    """``[prefix]number|system|code`` (search.html#quantity)."""

    number: NumberValue
    system: str | None
    code: str | None
    # The same search in canonical UCUM units when the unit converts.
    canonical_code: str | None = None
    canonical: NumberValue | None = None


@dataclass(frozen=True, slots=True)
class ReferenceValue:
    """A reference search value: relative (type/id) or absolute/canonical (url)."""

    type: str | None
    id: str | None
    version: str | None
    url: str | None


@dataclass(frozen=True, slots=True)
class UriValue:
    uri: str


@dataclass(frozen=True, slots=True)
class CodeSetValue:
    """Any of ``codes`` in ``system``: what token ``:in``/``:not-in``/``:above``/``:below``
    become once the terminology service has expanded them (fhir_server.search.terminology)."""

    system: str
    codes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CompositeValue:
    """``a$b``: one value per component, all from the same element."""

    parts: tuple[Value, ...]


Value = (
    TokenValue
    | TextValue
    | DateValue
    | NumberValue
    | QuantityValue
    | ReferenceValue
    | UriValue
    | CompositeValue
    | CodeSetValue
)

# --- the tree -----------------------------------------------------------------------


# An internal modifier no client can send (the parser knows only the spec's): a reference
# Criterion with it holds when every local Patient the parameter names is one of its
# values. The access restriction (fhir_server.search.restriction) adds it so a resource in
# several patients' compartments is found only when every one of them is readable.
ONLY_PATIENTS = "_only-patients"


@dataclass(frozen=True, slots=True)
class Criterion:
    """One parameter test. ``missing`` is set for ``:missing`` (and values is empty)."""

    param: SearchParam
    modifier: str | None
    values: tuple[Value, ...]
    missing: bool | None = None


@dataclass(frozen=True, slots=True)
class Chain:
    """``param[:Type].inner``: some target of ``param`` (one of ``targets``) matches."""

    param: SearchParam
    targets: tuple[tuple[str, Node], ...]  # (target type, condition on that type)


@dataclass(frozen=True, slots=True)
class Has:
    """``_has:Type:param:inner``: some ``rtype`` resource refers here by ``param`` and
    matches ``inner``."""

    rtype: str
    param: SearchParam
    inner: Node


@dataclass(frozen=True, slots=True)
class InCompartment:
    """compartmentdefinition.html: the resource is in the compartment of ``compartment/id``
    -- one of its parameters listed for its type refers there, or (``{def}``) it is the
    owner itself. ``members``: (resource type, parameter codes, is the owner's own type)."""

    compartment: str
    id: str
    members: tuple[tuple[str, tuple[str, ...], bool], ...]


@dataclass(frozen=True, slots=True)
class AllOf:
    """Every node holds (a chain target or ``_has`` source with its access restriction)."""

    nodes: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Permitted:
    """An access-control restriction (fhir_server.search.restriction): the resource is of
    a listed type and matches one alternative of that type, each alternative a tuple of
    nodes that must all hold (an empty one holds for every resource of the type). A type
    that is not listed, or listed with no alternatives, matches nothing."""

    by_type: tuple[tuple[str, tuple[tuple[Node, ...], ...]], ...]

    def types(self) -> tuple[str, ...]:
        return tuple(t for t, alternatives in self.by_type if alternatives)


Node = Criterion | Chain | Has | InCompartment | AllOf | Permitted

# --- result parameters --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SortKey:
    """One ``_sort`` key; ``param`` None for ``_id``/``_lastUpdated``-like columns."""

    code: str
    descending: bool
    param: SearchParam | None


@dataclass(frozen=True, slots=True)
class Include:
    """``_include=Source:param[:Target]`` or ``_revinclude`` (search.html#include)."""

    source: str  # the type that holds the reference ("*" for every type)
    param: SearchParam | None  # None for the wildcard ``*``
    target: str | None
    iterate: bool = False


@dataclass(slots=True)
class SearchQuery:
    """A parsed search on ``rtype`` (None: every type, search.html#system)."""

    rtype: str | None
    criteria: tuple[Node, ...] = ()
    types: tuple[str, ...] = ()  # ``_type`` on a system search
    count: int | None = None
    sort: tuple[SortKey, ...] = ()
    include: tuple[Include, ...] = ()
    revinclude: tuple[Include, ...] = ()
    total: str | None = None  # none | estimate | accurate
    summary: str | None = None
    elements: tuple[str, ...] = ()
    cursor: str | None = None  # ``_cursor``: the signed page position of a next/previous link
    compartment: tuple[str, str] | None = None  # (owner type, id) of a compartment search
    explain: str | None = None  # ``_explain`` (debug, when the server allows it): true | analyze
    # What ``_include``/``_revinclude`` may add (fhir_server.search.restriction); None: all.
    readable: Permitted | None = None
    warnings: list[Issue] = field(default_factory=list)
    # The parameters as understood, normalised, for the Bundle's self link.
    canonical: list[tuple[str, str]] = field(default_factory=list)
