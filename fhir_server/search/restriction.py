"""Access control as a rewrite of a parsed search (parse -> rewrite -> generate).

The access decision (fhir_server.access.decision.decide) answers a search with a *filter*:
for each resource type, alternatives of search parameters that must all hold, e.g.
``{"Observation": ((("subject", "Patient/p1"),), (("performer", "Patient/p1"),))}``. This
module turns such a filter into a :class:`Permitted` node and adds it to the query, so
the SQL generator puts it inside the one statement that finds the matches -- counts,
paging and ``_total`` see only what the token may see (ARCHITECTURE.md "Access control":
"access-control filters are just another rewrite").

The same restriction, built from what the token may *read*, is applied to what a search
reaches beyond its matches: ``_include``/``_revinclude`` results (``query.readable``), the
targets of chained parameters and the sources of ``_has`` -- otherwise a patient could
test another patient's data through a reference (search.html#chaining, #has).

Pure code. Conditions are parsed strictly with the registry in force; a condition that
cannot be parsed, or has an empty value, fails closed (that alternative matches nothing).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from fhir_server.errors import FhirError
from fhir_server.search.parsing import parse_search
from fhir_server.search.query import (
    ONLY_PATIENTS,
    AllOf,
    Chain,
    Criterion,
    Has,
    Node,
    Permitted,
    ReferenceValue,
    SearchQuery,
)
from fhir_server.search.registry import Registry

# type -> alternatives, each a tuple of (search parameter, value) pairs that must all hold
TypeConditions = Mapping[str, tuple[tuple[tuple[str, str], ...], ...]]


@dataclass(frozen=True, slots=True)
class SearchAccess:
    """What the access decision allows a search: ``matches``, the filter on what it may
    return (None: everything); ``readable``, the filter on what it may reach through
    chains, ``_has`` and includes (None: everything)."""

    matches: TypeConditions | None = None
    readable: TypeConditions | None = None

    def apply(
        self, query: SearchQuery, *, reg: Registry, now_us: int, base_url: str | None
    ) -> SearchQuery:
        def node(conditions: TypeConditions | None) -> Permitted | None:
            if conditions is None:
                return None
            return permitted(conditions, reg=reg, now_us=now_us, base_url=base_url)

        return restrict(query, node(self.matches), node(self.readable))


def permitted(
    by_type: TypeConditions, *, reg: Registry, now_us: int, base_url: str | None
) -> Permitted:
    """The node for a filter. Types the registry does not know are left out."""
    out: list[tuple[str, tuple[tuple[Node, ...], ...]]] = []
    for rtype, alternatives in by_type.items():
        if not reg.knows_type(rtype):
            continue
        parsed: list[tuple[Node, ...]] = []
        for alternative in dict.fromkeys(alternatives):
            nodes = _parse_alternative(rtype, alternative, reg, now_us, base_url)
            if nodes is not None:
                parsed.append(nodes)
        out.append((rtype, tuple(parsed)))
    return Permitted(tuple(out))


def _parse_alternative(
    rtype: str,
    pairs: tuple[tuple[str, str], ...],
    reg: Registry,
    now_us: int,
    base_url: str | None,
) -> tuple[Node, ...] | None:
    if any(not value for _, value in pairs):
        return None  # an empty value would constrain nothing: fail closed
    only = [(name, value) for name, value in pairs if name.endswith(":" + ONLY_PATIENTS)]
    if only:
        exclusions = _only_patients(rtype, only, reg)
        if exclusions is None:
            return None
        pairs = tuple(p for p in pairs if p not in only)
        if not pairs:
            return exclusions
        rest = _parse_alternative(rtype, pairs, reg, now_us, base_url)
        return None if rest is None else (*rest, *exclusions)
    # The values arrive decoded: the access decision percent-decodes a query scope once
    # (fhir_server.access.decision.decoded_query), for searches and single resources alike,
    # so decoding again here would turn a literal "%25" into "%".
    try:
        query = parse_search(
            rtype, list(pairs), strict=True, now_us=now_us, base_url=base_url, reg=reg
        )
    except FhirError:
        return None  # a condition this server cannot evaluate matches nothing
    if len(query.criteria) != len(pairs) or query.include or query.revinclude:
        return None
    return query.criteria


def _only_patients(
    rtype: str, pairs: list[tuple[str, str]], reg: Registry
) -> tuple[Node, ...] | None:
    """``("subject:_only-patients", "Patient/a,Patient/b")``: every local Patient the
    parameter names is one of these (search.query.ONLY_PATIENTS). The access decision
    writes one per compartment parameter, so a resource that also names a patient the
    token may not see is not found -- as a read of it is refused."""
    nodes: list[Node] = []
    for name, value in pairs:
        param = reg.get(rtype, name.rsplit(":", 1)[0])
        if param is None or param.type != "reference":
            return None  # fail closed
        values = tuple(
            ReferenceValue("Patient", ref.removeprefix("Patient/"), None, None)
            for ref in value.split(",")
            if ref.startswith("Patient/")
        )
        nodes.append(Criterion(param, ONLY_PATIENTS, values))
    return tuple(nodes)


def restrict(
    query: SearchQuery,
    matches: Permitted | None,
    readable: Permitted | None,
) -> SearchQuery:
    """``query`` with the access restriction on its matches (None: none), and on what it
    reaches through chains, ``_has``, ``_include`` and ``_revinclude`` (``readable``;
    None: everything)."""
    criteria = query.criteria
    if readable is not None:
        criteria = tuple(_through(node, readable) for node in criteria)
    if matches is not None:
        criteria = (*criteria, matches)
    return replace(query, criteria=criteria, readable=readable)


def _through(node: Node, readable: Permitted) -> Node:
    """``node`` with every chain target and ``_has`` source also restricted to what the
    token may read."""
    if isinstance(node, Chain):
        targets = []
        for rtype, inner in node.targets:
            only = _only(readable, rtype)
            if only is None:
                continue  # a type the token can never read: no target of that type counts
            inner = _through(inner, readable)
            targets.append((rtype, inner if only is _EVERY else AllOf((inner, only))))
        if not targets:
            return Permitted(())  # nothing it could chain through: matches nothing
        return Chain(node.param, tuple(targets))
    if isinstance(node, Has):
        only = _only(readable, node.rtype)
        if only is None:
            return Permitted(())
        inner = _through(node.inner, readable)
        return Has(node.rtype, node.param, inner if only is _EVERY else AllOf((inner, only)))
    if isinstance(node, AllOf):
        return AllOf(tuple(_through(n, readable) for n in node.nodes))
    return node


_EVERY = Permitted((("*", ((),)),))  # marker: every resource of the type is readable


def _only(readable: Permitted, rtype: str) -> Permitted | None:
    """The restriction on ``rtype`` alone; _EVERY when unconditional, None when none."""
    for t, alternatives in readable.by_type:
        if t == rtype and alternatives:
            if () in alternatives:
                return _EVERY
            return Permitted(((t, alternatives),))
    return None
