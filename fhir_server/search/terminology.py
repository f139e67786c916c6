"""The terminology rewrite: token ``:in``, ``:not-in``, ``:above`` and ``:below`` become
plain code sets (FHIR R4 search.html#token).

A step of parse -> rewrite -> generate. Parsing keeps these criteria as they were written
(a ValueSet reference, or ``system|code``); this step asks a :class:`CodeSource` (the
terminology service over the stored and the shipped R4 core content, see
fhir_server.storage.terminology) for the codes and writes the criterion anew:

- ``:in=[ValueSet]``: any (system, code) of the ValueSet's expansion;
- ``:not-in=[ValueSet]``: none of them (as ``:not``: resources without a code match too);
- ``:below=system|code``: the code or any code it subsumes (descendants, is-a);
- ``:above=system|code``: the code or any code that subsumes it (ancestors).

Each becomes a criterion whose values are :class:`CodeSetValue` (one IN list per system),
so the SQL generator needs nothing else. A ValueSet that is unknown or cannot be expanded,
a code system without an is-a hierarchy, or an expansion over the configured limit is a
400 that says why (a criterion is never silently dropped: that would widen the match).
"""

from __future__ import annotations

from typing import Protocol

from fhir_server.errors import bad_request
from fhir_server.search.query import (
    AllOf,
    Chain,
    CodeSetValue,
    Criterion,
    Has,
    Node,
    SearchQuery,
    TokenValue,
    UriValue,
    Value,
)
from terminology import TerminologyError

TERMINOLOGY_MODIFIERS = frozenset({"in", "not-in", "above", "below"})


class CodeSource(Protocol):
    # The most codes one search may test (all its terminology criteria together): the
    # bound on the SQL parameters a statement carries (SQLite allows 32,766).
    max_codes: int

    def value_set_codes(self, reference: str) -> dict[str, set[str]]:
        """system -> codes of the ValueSet's expansion (absolute URL[|version] or
        ValueSet/[id]); raises TerminologyError."""
        ...

    def related_codes(self, system: str, code: str, direction: str) -> set[str]:
        """The code and its descendants (``below``) or ancestors (``above``)."""
        ...


def needs_terminology(query: SearchQuery) -> bool:
    return any(_needs(node) for node in query.criteria)


def _needs(node: Node) -> bool:
    if isinstance(node, Criterion):
        return node.param.type == "token" and node.modifier in TERMINOLOGY_MODIFIERS
    if isinstance(node, Chain):
        return any(_needs(inner) for _, inner in node.targets)
    if isinstance(node, Has):
        return _needs(node.inner)
    if isinstance(node, AllOf):
        return any(_needs(inner) for inner in node.nodes)
    return False


def resolve_terminology(query: SearchQuery, codes: CodeSource) -> SearchQuery:
    """The query with every terminology criterion replaced by its code sets (in place)."""
    if needs_terminology(query):
        budget = [codes.max_codes]
        query.criteria = tuple(_resolve(node, codes, budget) for node in query.criteria)
    return query


def _resolve(node: Node, codes: CodeSource, budget: list[int]) -> Node:
    if isinstance(node, Chain):
        return Chain(
            node.param, tuple((t, _resolve(inner, codes, budget)) for t, inner in node.targets)
        )
    if isinstance(node, Has):
        return Has(node.rtype, node.param, _resolve(node.inner, codes, budget))
    if isinstance(node, AllOf):
        return AllOf(tuple(_resolve(inner, codes, budget) for inner in node.nodes))
    if not isinstance(node, Criterion) or not _needs(node):
        return node
    values: list[Value] = []
    name = f"{node.param.code}:{node.modifier}"
    for value in node.values:
        try:
            if isinstance(value, UriValue):
                found = codes.value_set_codes(value.uri)
            elif isinstance(value, TokenValue) and value.system and value.code:
                direction = "below" if node.modifier == "below" else "above"
                found = {value.system: codes.related_codes(value.system, value.code, direction)}
            else:  # pragma: no cover - the parser only makes the two forms above
                raise bad_request(f"{name}: unexpected value")
        except TerminologyError as exc:
            raise bad_request(f"{name}: {exc}", code=_issue_code(exc.code)) from exc
        values += [CodeSetValue(system, tuple(sorted(c))) for system, c in found.items() if c]
        budget[0] -= sum(len(c) for c in found.values())
        if budget[0] < 0:
            raise bad_request(
                f"{name}: the search's terminology criteria expand to more than "
                f"{codes.max_codes} codes, this server's limit; use a smaller value set",
                code="too-costly",
            )
    if not values:
        # Nothing can match (an empty ValueSet): an IN list of no codes is false in SQL.
        values.append(CodeSetValue("", ()))
    return Criterion(node.param, "not" if node.modifier == "not-in" else None, tuple(values))


def _issue_code(code: str) -> str:
    return (
        code if code in ("not-found", "not-supported", "too-costly", "code-invalid") else "invalid"
    )
