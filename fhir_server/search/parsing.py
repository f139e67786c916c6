"""Parsing search parameters into a :class:`SearchQuery` (FHIR R4 search.html).

Pure: the parameters (already URL-decoded name/value pairs, in request order), the
resource type and the current time in; a query or a :class:`FhirError` out.

Unknown parameters: search.html#errors lets a server ignore them (and say so) unless
the client asked for strict handling (``Prefer: handling=strict``); conditional
interactions always parse strictly, since an ignored criterion would widen the match.
Ignored parameters become ``query.warnings`` (OperationOutcome issues with severity
warning). A malformed value of a known parameter, or an unknown modifier, is always a
400: we never guess what a client meant.
"""

from __future__ import annotations

import time
from decimal import Decimal

from fhir_server.errors import FhirError, Issue, bad_request, not_found
from fhir_server.search.compartments import compartments
from fhir_server.search.dates import InvalidDate, date_range
from fhir_server.search.numbers import InvalidNumber, implicit_range, parse_decimal
from fhir_server.search.query import (
    Chain,
    CompositeValue,
    Criterion,
    DateValue,
    Has,
    Include,
    InCompartment,
    Node,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    SearchQuery,
    SortKey,
    TextValue,
    TokenValue,
    UriValue,
    Value,
)
from fhir_server.search.references import URL_WIDTH, parse_canonical, parse_reference
from fhir_server.search.registry import Registry, SearchParam, registry
from fhir_server.search.text import STRING_WIDTH
from fhir_server.search.units import canonical

# search.html#prefix
PREFIXES = frozenset({"eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"})

# Modifiers we implement, per parameter type (search.html#modifiers). ``missing`` is
# allowed on every type; a resource-type modifier on references is checked separately.
MODIFIERS: dict[str, frozenset[str]] = {
    "string": frozenset({"exact", "contains"}),
    # :in/:not-in/:above/:below are resolved by the terminology service after parsing
    # (fhir_server.search.terminology).
    "token": frozenset({"not", "text", "of-type", "in", "not-in", "above", "below"}),
    "reference": frozenset({"identifier"}),
    "uri": frozenset({"below", "above"}),
    "date": frozenset(),
    "number": frozenset(),
    "quantity": frozenset(),
    "composite": frozenset(),
}
# Modifiers FHIR defines that need a terminology server or are not built yet.
UNSUPPORTED_MODIFIERS = frozenset({"in", "not-in", "above", "below", "type"})

RESULT_PARAMS = frozenset(
    {
        "_count",
        "_sort",
        "_include",
        "_revinclude",
        "_total",
        "_summary",
        "_elements",
        "_type",
        "_cursor",
    }
)
# Handled by the HTTP layer (content negotiation); not search criteria.
TRANSPORT_PARAMS = frozenset({"_format", "_pretty"})
# Defined by FHIR but not implemented; ignored (with a warning) or refused when strict.
UNSUPPORTED_PARAMS = frozenset(
    {"_text", "_content", "_query", "_filter", "_list", "_contained", "_containedType"}
)

# ``_explain``: a debug parameter of ours (the SQL and the database's plan), answered only
# when the server allows it (SELFBACK_SEARCH_EXPLAIN=1); otherwise an unknown parameter.
EXPLAIN_VALUES = frozenset({"true", "analyze"})

SUMMARY_VALUES = frozenset({"true", "false", "text", "data", "count"})
TOTAL_VALUES = frozenset({"none", "estimate", "accurate"})
MAX_CHAIN_DEPTH = 8  # a safety bound, not a FHIR rule: each level is one more join

# Sorting by these works straight from the resource table (search.html#sort).
RESOURCE_SORTS = frozenset({"_id", "_lastUpdated"})


class _Unknown(Exception):
    """A parameter we do not know: a warning, or a 400 when strict."""

    def __init__(self, diagnostics: str) -> None:
        super().__init__(diagnostics)
        self.diagnostics = diagnostics


# --- escaping (search.html#escaping) ------------------------------------------------


def split_escaped(text: str, sep: str) -> list[str]:
    """Split on ``sep`` where it is not escaped with a backslash; escapes are kept."""
    parts: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            current.append(text[i : i + 2])
            i += 2
            continue
        if ch == sep:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    return parts


def unescape(text: str) -> str:
    r"""``\,`` ``\$`` ``\|`` ``\\`` -> the character itself."""
    if "\\" not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in ",$|\\":
            out.append(text[i + 1])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


# --- values -------------------------------------------------------------------------


def _prefix(text: str) -> tuple[str, str]:
    if len(text) > 2 and text[:2] in PREFIXES and not text[2:3].isalpha():
        return text[:2], text[2:]
    return "eq", text


def parse_date_value(text: str, param: SearchParam, now_us: int) -> DateValue:
    prefix, rest = _prefix(text)
    try:
        lo, hi = date_range(rest)
    except InvalidDate as exc:
        raise bad_request(
            f"Search parameter {param.code!r}: {rest!r} is not a date (search.html#date)"
        ) from exc
    if prefix == "ap":
        # search.html#prefix: "ap" is left to the server; we use 10% of the distance
        # between now and the value, at least one day, on either side (as HAPI does).
        distance = abs(now_us - (lo + hi) // 2)
        slack = max(distance // 10, 86_400_000_000)
        lo, hi = lo - slack, hi + slack
    return DateValue(prefix, lo, hi)


def parse_number_value(text: str, param: SearchParam) -> NumberValue:
    prefix, rest = _prefix(text)
    try:
        value = parse_decimal(rest)
    except InvalidNumber as exc:
        raise bad_request(
            f"Search parameter {param.code!r}: {rest!r} is not a number (search.html#number)"
        ) from exc
    return _number_value(prefix, value)


def _number_value(prefix: str, value: Decimal, factor: Decimal = Decimal(1)) -> NumberValue:
    """The value and its range, scaled by ``factor`` *after* the range is taken from the
    digits as written (5.4 kg is [5350, 5450) g, not 5400.0 +- 0.05)."""
    if prefix == "ap":
        # search.html#prefix: "approximately", we use within 10% of the value.
        slack = abs(value) / 10
        lo, hi = value - slack, value + slack
    else:
        lo, hi = implicit_range(value)
    return NumberValue(prefix, float(value * factor), float(lo * factor), float(hi * factor))


def parse_quantity_value(text: str, param: SearchParam) -> QuantityValue:
    parts = [unescape(p) for p in split_escaped(text, "|")]
    if len(parts) not in (1, 3):
        raise bad_request(
            f"Search parameter {param.code!r}: {text!r} is not number|system|code "
            "(search.html#quantity)"
        )
    prefix, rest = _prefix(parts[0])
    try:
        value = parse_decimal(rest)
    except InvalidNumber as exc:
        raise bad_request(
            f"Search parameter {param.code!r}: {rest!r} is not a number (search.html#quantity)"
        ) from exc
    number = _number_value(prefix, value)
    system = parts[1] or None if len(parts) == 3 else None
    code = parts[2] or None if len(parts) == 3 else None
    conversion = canonical(system, code)
    if conversion is None:
        return QuantityValue(number, system, code)
    canon_code, factor = conversion
    return QuantityValue(number, system, code, canon_code, _number_value(prefix, value, factor))


def parse_token_value(text: str, param: SearchParam) -> TokenValue:
    parts = split_escaped(text, "|")
    if len(parts) == 1:
        return TokenValue(None, unescape(parts[0])[:1024])
    if len(parts) != 2:
        raise bad_request(
            f"Search parameter {param.code!r}: {text!r} is not [system|]code (search.html#token)"
        )
    system, code = unescape(parts[0])[:1024], unescape(parts[1])[:1024]
    if not system and not code:
        raise bad_request(f"Search parameter {param.code!r}: '|' alone is not a token")
    if not system:
        return TokenValue(None, code, no_system=True)
    return TokenValue(system, code or None)


def parse_reference_value(
    text: str, param: SearchParam, type_modifier: str | None, base_url: str | None
) -> ReferenceValue:
    value = unescape(text)
    if base_url and value.startswith(base_url.rstrip("/") + "/"):
        # An absolute URL on this server is the same as the relative reference.
        value = value[len(base_url.rstrip("/")) + 1 :]
    if "/" not in value and ":" not in value:
        if not value or len(value) > 64:
            raise bad_request(f"Search parameter {param.code!r}: {text!r} is not an id")
        return ReferenceValue(type_modifier, value, None, None)
    if "|" in value or (":" in value and not value.startswith(("http://", "https://"))):
        target = parse_canonical(value) if "|" in value else None
        if target is not None:
            return ReferenceValue(None, None, target.version, target.url)
        return ReferenceValue(None, None, None, value[:URL_WIDTH])
    target = parse_reference(value)
    if target is None:
        raise bad_request(
            f"Search parameter {param.code!r}: {text!r} is not a reference (search.html#reference)"
        )
    if target.url is not None:
        return ReferenceValue(None, None, target.version, target.url)
    if type_modifier and target.type != type_modifier:
        raise bad_request(
            f"Search parameter {param.code}:{type_modifier}: {text!r} names another type"
        )
    return ReferenceValue(target.type, target.id, target.version, None)


def _parse_values(
    param: SearchParam,
    modifier: str | None,
    raw: str,
    *,
    now_us: int,
    base_url: str | None,
    reg: Registry,
    rtype: str | None,
) -> tuple[Value, ...]:
    values: list[Value] = []
    for item in split_escaped(raw, ","):
        if item == "":
            raise bad_request(f"Search parameter {param.code!r}: empty value in {raw!r}")
        values.append(
            _parse_one(
                param, modifier, item, now_us=now_us, base_url=base_url, reg=reg, rtype=rtype
            )
        )
    return tuple(values)


def _parse_one(
    param: SearchParam,
    modifier: str | None,
    item: str,
    *,
    now_us: int,
    base_url: str | None,
    reg: Registry,
    rtype: str | None,
) -> Value:
    ptype = param.type
    if ptype == "string" or (ptype == "token" and modifier == "text"):
        return TextValue(unescape(item)[:STRING_WIDTH] if modifier != "exact" else unescape(item))
    if ptype == "token" and modifier in ("in", "not-in", "above", "below") and param.code == "_id":
        raise bad_request(f"_id:{modifier}: resource ids are not codes of a code system")
    if ptype == "token" and modifier in ("in", "not-in"):
        # search.html#token: the value is a ValueSet's URL (absolute, or ValueSet/[id]).
        return UriValue(unescape(item))
    if ptype == "token" and modifier in ("above", "below"):
        token = parse_token_value(item, param)
        if token.system is None or token.code is None:
            raise bad_request(
                f"{param.code}:{modifier}={item!r}: subsumption needs system|code "
                "(search.html#token)"
            )
        return token
    if ptype == "token" and modifier == "of-type":
        parts = [unescape(p) for p in split_escaped(item, "|")]
        if len(parts) != 3 or not all(parts[1:]):
            raise bad_request(
                f"{param.code}:of-type={item!r} is not system|code|value (search.html#token)"
            )
        return TokenValue(parts[0] or None, f"{parts[1]}|{parts[2]}"[:1024], not parts[0])
    if ptype == "token" or (ptype == "reference" and modifier == "identifier"):
        return parse_token_value(item, param)
    if ptype == "date":
        return parse_date_value(item, param, now_us)
    if ptype == "number":
        return parse_number_value(item, param)
    if ptype == "quantity":
        return parse_quantity_value(item, param)
    if ptype == "reference":
        return parse_reference_value(item, param, modifier, base_url)
    if ptype == "uri":
        return UriValue(unescape(item)[:URL_WIDTH])
    if ptype == "composite":
        parts = split_escaped(item, "$")
        if len(parts) != len(param.components):
            raise bad_request(
                f"Search parameter {param.code!r}: {item!r} needs {len(param.components)} "
                "values joined by '$' (search.html#composite)"
            )
        values: list[Value] = []
        for component, part in zip(param.components, parts, strict=True):
            inner = reg.by_url.get(component.definition)
            if inner is None or component.type is None:
                raise bad_request(f"Composite parameter {param.code!r} is not supported")
            values.append(
                _parse_one(
                    inner, None, part, now_us=now_us, base_url=base_url, reg=reg, rtype=rtype
                )
            )
        return CompositeValue(tuple(values))
    raise bad_request(
        f"Search parameter {param.code!r} of type {ptype} is not supported", code="not-supported"
    )


# --- parameter names ----------------------------------------------------------------


def _split_name(name: str) -> tuple[str, str | None]:
    code, _, modifier = name.partition(":")
    return code, modifier or None


def parse_node(
    rtype: str | None,
    name: str,
    raw: str,
    *,
    now_us: int,
    base_url: str | None = None,
    reg: Registry | None = None,
    depth: int = 0,
    types: tuple[str, ...] = (),
) -> Node:
    """One parameter (name and raw value) on ``rtype`` as an expression-tree node.

    ``types``: on a system search (``rtype`` None), the ``_type`` list; a parameter is
    then known when every listed type defines it (search.html#system)."""
    reg = reg or registry()
    if depth > MAX_CHAIN_DEPTH:
        raise bad_request(f"{name!r}: chains deeper than {MAX_CHAIN_DEPTH} are not supported")
    if name.startswith("_has:"):
        return _parse_has(rtype, name, raw, now_us=now_us, base_url=base_url, reg=reg, depth=depth)
    head, dot, rest = name.partition(".")
    code, modifier = _split_name(head)
    param = resolve_param(reg, rtype, types, code)
    if param is None:
        raise _Unknown(f"Unknown search parameter {code!r} for {_where(rtype, types)}")
    if dot:
        return _parse_chain(
            rtype,
            param,
            modifier,
            rest,
            raw,
            now_us=now_us,
            base_url=base_url,
            reg=reg,
            depth=depth,
        )
    if modifier == "missing":
        if raw not in ("true", "false"):
            raise bad_request(f"{name}: :missing takes true or false (search.html#missing)")
        return Criterion(param, "missing", (), missing=raw == "true")
    if modifier is not None:
        _check_modifier(param, modifier, reg)
    if param.type == "special":
        raise _Unknown(f"Search parameter {code!r} (type special) is not supported")
    values = _parse_values(
        param, modifier, raw, now_us=now_us, base_url=base_url, reg=reg, rtype=rtype
    )
    return Criterion(param, modifier, values)


def resolve_param(
    reg: Registry, rtype: str | None, types: tuple[str, ...], code: str
) -> SearchParam | None:
    """The parameter ``code`` on ``rtype``; on a system search with ``_type``, the one every
    listed type defines, of one parameter type (search.html#system); else a common one."""
    if rtype is not None or not types:
        return reg.get(rtype, code)
    found = [reg.get(t, code) for t in types]
    first = found[0]
    if first is None or any(p is None for p in found):
        return None
    kinds = {p.type for p in found if p is not None}
    if len(kinds) > 1:
        raise bad_request(
            f"Search parameter {code!r} has different types on {', '.join(types)} "
            "(search.html#system)"
        )
    return first


def _where(rtype: str | None, types: tuple[str, ...]) -> str:
    if rtype is not None:
        return rtype
    if types:
        return "every type of _type=" + ",".join(types)
    return "a system search"


def _check_modifier(param: SearchParam, modifier: str, reg: Registry) -> None:
    allowed = MODIFIERS.get(param.type, frozenset())
    if modifier in allowed:
        return
    if param.type == "reference" and reg.knows_type(modifier):
        if param.targets and modifier not in param.targets:
            raise bad_request(
                f"Search parameter {param.code!r} cannot refer to {modifier} "
                "(search.html#reference)"
            )
        return
    if modifier in UNSUPPORTED_MODIFIERS:
        raise bad_request(
            f"Modifier :{modifier} on {param.code!r} is not supported", code="not-supported"
        )
    raise bad_request(
        f"Unknown modifier :{modifier} for {param.type} parameter {param.code!r} "
        "(search.html#modifiers)"
    )


def _parse_chain(
    rtype: str | None,
    param: SearchParam,
    modifier: str | None,
    rest: str,
    raw: str,
    *,
    now_us: int,
    base_url: str | None,
    reg: Registry,
    depth: int,
) -> Node:
    """search.html#chaining: ``subject:Patient.name=x``, ``subject.name=x``."""
    if param.type != "reference":
        raise bad_request(f"Only reference parameters can be chained; {param.code!r} is not one")
    if modifier is not None:
        _check_modifier(param, modifier, reg)
        if not reg.knows_type(modifier):
            raise bad_request(f"{param.code}:{modifier}: a chain names a resource type")
        candidates: tuple[str, ...] = (modifier,)
    else:
        candidates = tuple(t for t in param.targets if reg.knows_type(t))
    targets: list[tuple[str, Node]] = []
    unknown: _Unknown | None = None
    for target in candidates:
        try:
            inner = parse_node(
                target, rest, raw, now_us=now_us, base_url=base_url, reg=reg, depth=depth + 1
            )
        except _Unknown as exc:
            unknown = exc
            continue
        targets.append((target, inner))
    if not targets:
        raise unknown or _Unknown(f"{param.code}.{rest}: no target type to chain through")
    return Chain(param, tuple(targets))


def _parse_has(
    rtype: str | None,
    name: str,
    raw: str,
    *,
    now_us: int,
    base_url: str | None,
    reg: Registry,
    depth: int,
) -> Node:
    """search.html#has: ``_has:Observation:patient:code=1234`` (nesting allowed)."""
    parts = name.split(":", 3)
    if len(parts) != 4 or not all(parts[1:]):
        raise bad_request(f"{name!r} is not _has:Type:reference:parameter (search.html#has)")
    _, source, ref_code, inner_name = parts
    if rtype is None:
        raise bad_request("_has needs a resource type to search")
    if not reg.knows_type(source):
        raise bad_request(f"{name!r}: unknown resource type {source!r}")
    ref = reg.get(source, ref_code)
    if ref is None or ref.type != "reference":
        raise bad_request(f"{name!r}: {ref_code!r} is not a reference parameter of {source}")
    if ref.targets and rtype not in ref.targets:
        raise bad_request(f"{name!r}: {source}.{ref_code} cannot refer to {rtype}")
    inner = parse_node(
        source, inner_name, raw, now_us=now_us, base_url=base_url, reg=reg, depth=depth + 1
    )
    return Has(source, ref, inner)


# --- result parameters --------------------------------------------------------------


def _parse_sort(
    rtype: str | None, raw: str, reg: Registry, notes: list[str], types: tuple[str, ...] = ()
) -> list[SortKey]:
    keys: list[SortKey] = []
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        descending = item.startswith("-")
        code = item[1:] if descending else item
        if code in RESOURCE_SORTS:
            keys.append(SortKey(code, descending, None))
            continue
        param = resolve_param(reg, rtype, types, code) if rtype or types else None
        if param is None or param.type in ("composite", "special") or param.table is None:
            notes.append(f"Cannot sort by {code!r} on {_where(rtype, types)}")
            continue
        keys.append(SortKey(code, descending, param))
    return keys


def _parse_include(
    rtype: str | None, raw: str, iterate: bool, reverse: bool, reg: Registry
) -> list[Include]:
    name = "_revinclude" if reverse else "_include"
    if raw == "*":
        return [Include("*", None, None, iterate)]
    parts = raw.split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise bad_request(
            f"{name}={raw!r} is not Type:parameter[:targetType] (search.html#include)"
        )
    source, code = parts[0], parts[1]
    target = parts[2] if len(parts) == 3 else None
    if not reg.knows_type(source) or (target is not None and not reg.knows_type(target)):
        raise bad_request(f"{name}={raw!r}: unknown resource type")
    if not reverse and not iterate and rtype is not None and source != rtype:
        raise bad_request(f"{name}={raw!r}: the source type must be {rtype} (search.html#include)")
    if code == "*":
        return [Include(source, None, target, iterate)]
    param = reg.get(source, code)
    if param is None or param.type != "reference":
        raise bad_request(f"{name}={raw!r}: {code!r} is not a reference parameter of {source}")
    if target is not None and param.targets and target not in param.targets:
        raise bad_request(f"{name}={raw!r}: {source}.{code} cannot refer to {target}")
    return [Include(source, param, target, iterate)]


def _parse_count(raw: str) -> int:
    if not raw.isdigit():
        raise bad_request(f"_count={raw!r} is not a non-negative integer (search.html#count)")
    return int(raw)


# --- the entry point ----------------------------------------------------------------


def parse_search(
    rtype: str | None,
    params: list[tuple[str, str]],
    *,
    strict: bool = False,
    now_us: int | None = None,
    base_url: str | None = None,
    reg: Registry | None = None,
    compartment: tuple[str, str] | None = None,
    explain: bool = False,
) -> SearchQuery:
    """Parse URL-decoded ``(name, value)`` pairs of a search on ``rtype`` (None: system).

    ``now_us`` (microseconds since the epoch) anchors the ``ap`` prefix on dates;
    ``base_url`` lets absolute references to this server match relative ones; ``reg`` is
    the registry in force (the core parameters by default); ``compartment`` (owner type,
    id) makes it a compartment search (``rtype`` None for ``[Compartment]/[id]/*``);
    ``explain`` lets ``_explain`` through (a debug parameter the server must allow).
    """
    reg = reg or registry()
    if rtype is not None and not reg.knows_type(rtype):
        raise bad_request(f"Unknown resource type {rtype!r}", code="not-supported")
    now = now_us if now_us is not None else time.time_ns() // 1000
    query = SearchQuery(rtype)
    criteria: list[Node] = []
    sort_notes: list[str] = []
    ignored: list[str] = []
    # _type decides which parameters a system search knows, wherever it stands.
    types = _parse_types(rtype, [raw for name, raw in params if name == "_type"], reg)
    in_compartment: InCompartment | None = None
    if compartment is not None:
        in_compartment, types = _compartment(rtype, compartment, types)
        query.compartment = compartment
    query.types = types

    for name, raw in params:
        code = name.split(":", 1)[0]
        if code in TRANSPORT_PARAMS:
            continue
        if code == "_explain" and explain:
            if raw not in EXPLAIN_VALUES:
                raise bad_request(f"_explain={raw!r}: use true or analyze")
            query.explain = raw
            continue
        if raw == "" and code not in RESULT_PARAMS:
            # An empty value constrains nothing; skip it like the major servers do.
            continue
        if code in RESULT_PARAMS:
            _result_param(query, rtype, name, code, raw, reg, sort_notes)
            if code != "_cursor":
                query.canonical.append((name, raw))
            continue
        if code in UNSUPPORTED_PARAMS:
            ignored.append(f"Search parameter {code!r} is not supported")
            continue
        try:
            criteria.append(
                parse_node(rtype, name, raw, now_us=now, base_url=base_url, reg=reg, types=types)
            )
        except _Unknown as exc:
            ignored.append(exc.diagnostics)
            continue
        query.canonical.append((name, raw))

    notes = ignored + sort_notes
    if notes and strict:
        raise FhirError(400, [Issue("not-supported", n) for n in notes])
    query.warnings.extend(
        Issue("not-supported", f"{n}; ignored", severity="warning") for n in notes
    )
    if in_compartment is not None:
        criteria.insert(0, in_compartment)
    query.criteria = tuple(criteria)
    return query


def _parse_types(rtype: str | None, values: list[str], reg: Registry) -> tuple[str, ...]:
    """search.html#system: ``_type=Patient,Observation`` (repeats add types)."""
    types: list[str] = []
    for raw in values:
        for t in raw.split(","):
            t = t.strip()
            if not t:
                continue
            if not reg.knows_type(t):
                raise bad_request(f"_type: unknown resource type {t!r}")
            if t not in types:
                types.append(t)
    if types and rtype is not None:
        raise bad_request("_type applies to a system search only")
    return tuple(types)


def _compartment(
    rtype: str | None, compartment: tuple[str, str], types: tuple[str, ...]
) -> tuple[InCompartment, tuple[str, ...]]:
    """The compartment node of ``[Compartment]/[id]/[type]`` (compartmentdefinition.html),
    and the types a ``[Compartment]/[id]/*`` search covers."""
    code, owner_id = compartment
    definition = compartments().get(code)
    if definition is None:
        raise not_found(
            f"{code} is not a compartment; compartments are "
            f"{', '.join(sorted(compartments()))} (compartmentdefinition.html)"
        )
    if rtype is not None:
        if rtype not in definition.members:
            raise bad_request(
                f"{rtype} resources are never in a {code} compartment (compartmentdefinition.html)",
                code="not-supported",
            )
        covered: tuple[str, ...] = (rtype,)
    else:
        covered = tuple(t for t in definition.types if not types or t in types)
        if not covered:
            raise bad_request(f"None of _type={','.join(types)} is in a {code} compartment")
    members = tuple((t, definition.params_for(t), definition.includes_owner(t)) for t in covered)
    return InCompartment(code, owner_id, members), () if rtype is not None else covered


def _result_param(
    query: SearchQuery,
    rtype: str | None,
    name: str,
    code: str,
    raw: str,
    reg: Registry,
    sort_notes: list[str],
) -> None:
    modifier = name.partition(":")[2] or None
    if code in ("_include", "_revinclude"):
        if modifier not in (None, "iterate", "recurse"):
            raise bad_request(f"Unknown modifier :{modifier} on {code}")
        found = _parse_include(rtype, raw, modifier is not None, code == "_revinclude", reg)
        if code == "_include":
            query.include += tuple(found)
        else:
            query.revinclude += tuple(found)
        return
    if modifier is not None:
        raise bad_request(f"{code} takes no modifier")
    if code == "_count":
        query.count = _parse_count(raw)
    elif code == "_cursor":
        # Our own paging parameter (next/previous links); verified when the page is read.
        query.cursor = raw or None
    elif code == "_sort":
        query.sort += tuple(_parse_sort(rtype, raw, reg, sort_notes, query.types))
    elif code == "_total":
        if raw not in TOTAL_VALUES:
            raise bad_request(f"_total={raw!r}: use none, estimate or accurate")
        query.total = raw
    elif code == "_summary":
        if raw not in SUMMARY_VALUES:
            raise bad_request(f"_summary={raw!r}: use true, text, data, count or false")
        query.summary = raw
    elif code == "_elements":
        query.elements += tuple(e.strip() for e in raw.split(",") if e.strip())
    # _type was read before the other parameters (_parse_types).
