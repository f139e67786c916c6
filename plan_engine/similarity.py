"""Local and global similarity between a patient's problem description and a case.

Local measures (research/selfback-domain.md section 5): numeric 1 - |a - b| / range;
ordinal the same on ranks; categorical from a table; sequences as the mean difference of
values aligned on the most recent point, scaled by ``max_diff``. Global similarity is the
weighted mean of the local values over attributes known on both sides (weights renormalised).
"""

from __future__ import annotations

from collections.abc import Mapping

from plan_engine.casebase import AttributeValue
from plan_engine.config import AttributeSpec, SimilarityConfig
from plan_engine.decision import AttributeContribution


def numeric_similarity(a: float, b: float, minimum: float, maximum: float) -> float:
    span = maximum - minimum
    if span <= 0:
        return 1.0 if a == b else 0.0
    return max(0.0, 1.0 - abs(a - b) / span)


def ordinal_similarity(a: str, b: str, order: tuple[str, ...]) -> float:
    if a not in order or b not in order:
        return 0.0
    if len(order) == 1:
        return 1.0
    return 1.0 - abs(order.index(a) - order.index(b)) / (len(order) - 1)


def categorical_similarity(a: str, b: str, table: tuple[tuple[str, float], ...]) -> float:
    if a == b:
        return dict(table).get(f"{a}|{b}", 1.0)
    return dict(table).get(f"{a}|{b}", 0.0)


def sequence_similarity(
    a: tuple[float, ...], b: tuple[float, ...], max_diff: float, length: int
) -> float | None:
    """Mean aligned difference over the most recent ``length`` points (None: nothing aligns)."""
    window = min(len(a), len(b), length) if length else min(len(a), len(b))
    if window == 0:
        return None
    diffs = [abs(x - y) for x, y in zip(a[-window:], b[-window:], strict=True)]
    return max(0.0, 1.0 - (sum(diffs) / window) / max_diff)


def local_similarity(spec: AttributeSpec, a: AttributeValue, b: AttributeValue) -> float | None:
    if spec.kind == "numeric" and isinstance(a, float) and isinstance(b, float):
        return numeric_similarity(a, b, spec.minimum, spec.maximum)
    if spec.kind == "ordinal":
        return ordinal_similarity(_ordinal_key(a), _ordinal_key(b), spec.order)
    if spec.kind == "categorical" and isinstance(a, str) and isinstance(b, str):
        return categorical_similarity(a, b, spec.table)
    if spec.kind == "sequence" and isinstance(a, tuple) and isinstance(b, tuple):
        return sequence_similarity(a, b, spec.max_diff, spec.length)
    return None


def _ordinal_key(value: AttributeValue) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def local_similarities(
    query: Mapping[str, AttributeValue],
    case: Mapping[str, AttributeValue],
    config: SimilarityConfig,
) -> dict[str, float]:
    """Local similarity of every attribute known on both sides (others are left out)."""
    found = {}
    for name, value in query.items():
        other = case.get(name)
        if other is None:
            continue
        local = local_similarity(config.attribute(name), value, other)
        if local is not None:
            found[name] = local
    return found


def amalgamate(
    local: Mapping[str, float],
    weights: tuple[tuple[str, float], ...],
    config: SimilarityConfig,
) -> tuple[float, tuple[AttributeContribution, ...]]:
    """Weighted mean of local similarities; missing attributes drop out and weights renormalise.

    If less than ``min_attribute_weight_present`` of the total weight is comparable, the
    similarity is 0: too little is known to call two patients alike.
    """
    total_weight = sum(w for _, w in weights)
    used = [(name, local[name], w) for name, w in weights if w > 0 and name in local]
    used_weight = sum(w for _, _, w in used)
    contributions = tuple(AttributeContribution(n, round(v, 4), w) for n, v, w in used)
    if total_weight <= 0 or used_weight / total_weight < config.min_attribute_weight_present:
        return 0.0, contributions
    return sum(v * w for _, v, w in used) / used_weight, contributions


def global_similarity(
    query: Mapping[str, AttributeValue],
    case: Mapping[str, AttributeValue],
    weights: tuple[tuple[str, float], ...],
    config: SimilarityConfig,
) -> tuple[float, tuple[AttributeContribution, ...]]:
    return amalgamate(local_similarities(query, case, config), weights, config)
