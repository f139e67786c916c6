"""The rewrite step of parse -> rewrite -> generate: which criterion drives the query.

A search is a conjunction of criteria. The SQL generator turns the *driving* criterion into
a set the database builds first (``pk IN (SELECT res_pk FROM sp_... WHERE ...)``) and every
other criterion into a test on each row of that set (a correlated ``EXISTS`` through the
``res_pk`` index). PostgreSQL plans both forms as semi-joins and chooses by its statistics;
SQLite materialises every ``IN (SELECT ...)`` in full, so without this step
``subject=Patient/x&code=<a code 1,000,000 Observations share>`` builds a million-row
temporary index to return fifty rows (fhir-server-anchors.md 3.2 item 3: "drive the query
from the most selective index and seek the rest").

Without statistics of our own, the choice is by kind, most selective first: the
compartment of one owner and ``_id``; a reference to one resource and identifiers; exact
strings and URIs; chains on a selective target criterion; other tokens and strings;
``_has``; quantities and numbers; dates (ranges match many rows). Negated criteria (``:not``, ``:missing=true``) cannot
drive: they are tests only.
"""

from __future__ import annotations

from fhir_server.search.query import (
    ONLY_PATIENTS,
    AllOf,
    Chain,
    Criterion,
    Has,
    InCompartment,
    Node,
    Permitted,
)

# Lower is expected to match fewer resources.
_RANK_OF_TYPE = {
    "reference": 1,
    "uri": 2,
    "token": 4,
    "string": 4,
    "composite": 4,
    "quantity": 6,
    "number": 6,
    "date": 7,
}
CANNOT_DRIVE = 100


def rank(node: Node) -> int:
    """How many resources ``node`` is expected to match, as a rank (lower: fewer)."""
    if isinstance(node, InCompartment):
        return 0
    if isinstance(node, Chain):
        # As selective as what it asks of the targets, less so for the fan-out: the 3,000
        # female patients of the benchmark have 600,000 Observations between them.
        return max(3, min(rank(inner) for _, inner in node.targets) + 2)
    if isinstance(node, Has):
        return 5
    if isinstance(node, AllOf):
        return min((rank(n) for n in node.nodes), default=CANNOT_DRIVE)
    if isinstance(node, Permitted):
        # An access restriction is the union of its alternatives: as large as the largest
        # (a patient's compartment is as selective as a compartment search); an
        # unconditional alternative is a whole type and cannot drive.
        alternatives = [alt for _, alts in node.by_type for alt in alts]
        if not alternatives:
            return 0  # matches nothing
        return max(min((rank(n) for n in alt), default=CANNOT_DRIVE) for alt in alternatives)
    return _criterion_rank(node)


def _criterion_rank(node: Criterion) -> int:
    if not drives(node):
        return CANNOT_DRIVE
    code, modifier = node.param.code, node.modifier
    if code == "_id":
        return 0
    if code == "_lastUpdated":
        return 8
    if node.missing is not None:  # :missing=false -- every resource with a value
        return 9
    if modifier in ("identifier", "of-type", "exact") or code == "identifier":
        return 1 if modifier != "exact" else 2
    if modifier in ("text", "contains", "below", "above"):
        return 5
    return _RANK_OF_TYPE.get(node.param.type, 5)


def drives(node: Node) -> bool:
    """Whether ``node`` can be the set a query starts from (it names what matches, rather
    than what does not)."""
    if isinstance(node, Criterion):
        return node.modifier not in ("not", ONLY_PATIENTS) and node.missing is not True
    if isinstance(node, AllOf | Permitted):
        return rank(node) < CANNOT_DRIVE
    return True


def driving_order(criteria: tuple[Node, ...]) -> tuple[Node, ...]:
    """The criteria, the one to drive the query first; ties keep the request's order."""
    return tuple(sorted(criteria, key=rank))
