"""Index rows for a resource: the values of every search parameter of its type.

``extract_index_rows(resource)`` is what the write path calls, before it opens the
transaction (fhir-server-anchors.md 6.3). It returns rows per index table holding
``param`` and the value columns; storage adds ``res_pk`` and ``rtype``.

How a value becomes rows follows FHIR R4 search.html, per parameter type:

- string (#string): every part of a HumanName (family, given, prefix, suffix, text) and an
  Address (line, city, district, state, postalCode, country, text), normalised by case and
  accent; the exact text is kept for ``:exact``.
- token (#token): Coding -> (system, code, display); CodeableConcept -> each coding, plus
  its text; Identifier -> (system, value, type.text); ContactPoint -> (system, value);
  code/string/uri/id -> (no system, value); boolean -> "true"/"false".
- date (#date): the inclusive microsecond range the value's precision implies; a Period
  from start to end, open ends unbounded; a Timing from its first to its last event or
  its bounds ("only the outer limits matter").
- number, quantity (#number, #quantity): a value is the point lo = hi = value; a Range
  its bounds. UCUM quantities also get their canonical unit and value (units.py).
- reference (#reference): Type/id for relative references, the URL for absolute, urn:
  and canonical ones (canonical without |version, which is kept apart); contained
  references (#x) are not indexed; Reference.identifier goes to sp_token under
  ``<code>:identifier`` for the ``:identifier`` modifier.
- uri (#uri): the value as written.
- composite (#composite): each component's rows under ``<code>#<n>``, with ``grp`` set to
  the ordinal of the element they came from.

``_id`` and ``_lastUpdated`` are answered from the resource table, not indexed.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from fhir_server.search.dates import MAX_US, MIN_US, InvalidDate, date_range
from fhir_server.search.paths import Walker, compile_fhirpath, compile_path
from fhir_server.search.references import URL_WIDTH, parse_canonical, parse_reference
from fhir_server.search.registry import TABLE_OF_TYPE, Registry, SearchParam, registry
from fhir_server.search.text import normalise
from fhir_server.search.units import canonical

Rows = dict[str, list[dict[str, Any]]]
# A converter appends the rows for one value to `out`.
Converter = Callable[[str, Any, "int | None", Rows], None]

TOKEN_WIDTH = 1024
SHORT_WIDTH = 255

# Parameters answered from columns of the resource table (search.html#all).
RESOURCE_COLUMN_PARAMS = frozenset({"_id", "_lastUpdated"})

_HUMAN_NAME_PARTS = ("family", "given", "prefix", "suffix", "text")
_ADDRESS_PARTS = ("line", "city", "district", "state", "postalCode", "country", "text")


# --- rows ---------------------------------------------------------------------------


def _cut(text: Any, width: int) -> str | None:
    return text[:width] if isinstance(text, str) and text else None


def _string(param: str, text: Any, grp: int | None, out: Rows) -> None:
    if isinstance(text, str) and text:
        out["sp_string"].append(
            {"param": param, "value_norm": normalise(text), "value_exact": text, "grp": grp}
        )


def _token(param: str, system: Any, code: Any, text: Any, grp: int | None, out: Rows) -> None:
    code_s = _cut(code, TOKEN_WIDTH)
    text_s = normalise(text) if isinstance(text, str) and text else None
    if code_s is None and text_s is None:
        return
    out["sp_token"].append(
        {
            "param": param,
            "system": _cut(system, TOKEN_WIDTH),
            "code": code_s,
            "text_norm": text_s,
            "grp": grp,
        }
    )


def _date(param: str, lo: int, hi: int, grp: int | None, out: Rows) -> None:
    out["sp_date"].append({"param": param, "lo": lo, "hi": hi, "grp": grp})


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    return float(value)


# --- converters per (parameter type, FHIR type) --------------------------------------


def _string_plain(param: str, value: Any, grp: int | None, out: Rows) -> None:
    _string(param, value, grp, out)


def _string_parts(parts: tuple[str, ...]) -> Converter:
    def convert(param: str, value: Any, grp: int | None, out: Rows) -> None:
        if not isinstance(value, dict):
            return
        for part in parts:
            item = value.get(part)
            if isinstance(item, list):
                for text in item:
                    _string(param, text, grp, out)
            else:
                _string(param, item, grp, out)

    return convert


def _token_coding(param: str, value: Any, grp: int | None, out: Rows) -> None:
    if isinstance(value, dict):
        _token(param, value.get("system"), value.get("code"), value.get("display"), grp, out)


def _token_concept(param: str, value: Any, grp: int | None, out: Rows) -> None:
    if not isinstance(value, dict):
        return
    displays = set()
    for coding in value.get("coding") or ():
        _token_coding(param, coding, grp, out)
        if isinstance(coding, dict):
            displays.add(coding.get("display"))
    # CodeableConcept.text is searched by :text (search.html#modifiers) -- a row of
    # its own with no code, which code searches never match; not needed when a
    # coding's display already says the same.
    text = value.get("text")
    if isinstance(text, str) and text and text not in displays:
        _token(param, None, None, text, grp, out)


def _token_identifier(param: str, value: Any, grp: int | None, out: Rows) -> None:
    if not isinstance(value, dict):
        return
    type_ = value.get("type")
    text = type_.get("text") if isinstance(type_, dict) else None
    identifier = value.get("value")
    _token(param, value.get("system"), identifier, text, grp, out)
    if isinstance(type_, dict) and isinstance(identifier, str) and grp is None:
        # search.html#token :of-type -- type system|type code|value; kept as a row with
        # the type's system and "code|value" under `<param>:of-type`.
        for coding in type_.get("coding") or ():
            if isinstance(coding, dict) and isinstance(coding.get("code"), str):
                _token(
                    param + ":of-type",
                    coding.get("system"),
                    f"{coding['code']}|{identifier}",
                    None,
                    grp,
                    out,
                )


def _token_contact(param: str, value: Any, grp: int | None, out: Rows) -> None:
    if isinstance(value, dict):
        _token(param, value.get("system"), value.get("value"), None, grp, out)


def _token_code(param: str, value: Any, grp: int | None, out: Rows) -> None:
    if isinstance(value, str):
        _token(param, None, value, None, grp, out)


def _token_boolean(param: str, value: Any, grp: int | None, out: Rows) -> None:
    if isinstance(value, bool):
        _token(param, None, "true" if value else "false", None, grp, out)


def _date_point(param: str, value: Any, grp: int | None, out: Rows) -> None:
    if isinstance(value, str):
        try:
            lo, hi = date_range(value)
        except InvalidDate:
            return  # not a date (a string onset such as "childhood"): nothing to index
        _date(param, lo, hi, grp, out)


def _period_bounds(value: Any) -> tuple[int, int] | None:
    if not isinstance(value, dict):
        return None
    start, end = value.get("start"), value.get("end")
    if not isinstance(start, str) and not isinstance(end, str):
        return None
    try:
        lo = date_range(start)[0] if isinstance(start, str) else MIN_US
        hi = date_range(end)[1] if isinstance(end, str) else MAX_US
    except InvalidDate:
        return None
    return lo, hi


def _date_period(param: str, value: Any, grp: int | None, out: Rows) -> None:
    bounds = _period_bounds(value)
    if bounds is not None:
        _date(param, bounds[0], bounds[1], grp, out)


def _date_timing(param: str, value: Any, grp: int | None, out: Rows) -> None:
    if not isinstance(value, dict):
        return
    ranges: list[tuple[int, int]] = []
    for event in value.get("event") or ():
        if isinstance(event, str):
            try:
                ranges.append(date_range(event))
            except InvalidDate:
                continue
    repeat = value.get("repeat")
    if isinstance(repeat, dict):
        bounds = _period_bounds(repeat.get("boundsPeriod"))
        if bounds is not None:
            ranges.append(bounds)
    if ranges:
        _date(param, min(r[0] for r in ranges), max(r[1] for r in ranges), grp, out)


def _number_point(param: str, value: Any, grp: int | None, out: Rows) -> None:
    number = _number(value)
    if number is not None:
        out["sp_number"].append(
            {"param": param, "value": number, "lo": number, "hi": number, "grp": grp}
        )


def _number_range(param: str, value: Any, grp: int | None, out: Rows) -> None:
    if not isinstance(value, dict):
        return
    low, high = value.get("low"), value.get("high")
    lo = _number(low.get("value")) if isinstance(low, dict) else None
    hi = _number(high.get("value")) if isinstance(high, dict) else None
    if lo is None and hi is None:
        return
    out["sp_number"].append(
        {
            "param": param,
            "value": None,
            "lo": lo if lo is not None else -FLOAT_MAX,
            "hi": hi if hi is not None else FLOAT_MAX,
            "grp": grp,
        }
    )


# Open Range ends; finite so both databases store and compare them as ordinary doubles.
FLOAT_MAX = 1e300


def _quantity_row(
    param: str,
    system: Any,
    code: Any,
    unit: Any,
    value: float | None,
    lo: float,
    hi: float,
    grp: int | None,
) -> dict[str, Any]:
    system_s = _cut(system, SHORT_WIDTH)
    code_s = _cut(code, SHORT_WIDTH)
    canon_code = canon_lo = canon_hi = None
    conversion = canonical(system_s, code_s)
    if conversion is not None:
        canon_code, factor = conversion
        canon_lo = _scale(lo, factor)
        canon_hi = _scale(hi, factor)
    return {
        "param": param,
        "system": system_s,
        "code": code_s,
        "unit": _cut(unit, SHORT_WIDTH),
        "value": value,
        "lo": lo,
        "hi": hi,
        "canon_code": canon_code,
        "canon_lo": canon_lo,
        "canon_hi": canon_hi,
        "grp": grp,
    }


def _scale(value: float, factor: Decimal) -> float:
    if abs(value) >= FLOAT_MAX:
        return value
    # Decimal arithmetic: 5.4 mg is 0.0054 g, not 0.005400000000000001.
    return float(Decimal(repr(value)) * factor)


def _quantity_point(param: str, value: Any, grp: int | None, out: Rows) -> None:
    if not isinstance(value, dict):
        return
    number = _number(value.get("value"))
    if number is None:
        return
    system, code = value.get("system"), value.get("code")
    if code is None and "currency" in value:
        # Money (datatypes.html#Money): the currency is an ISO 4217 code.
        system, code = "urn:iso:std:iso:4217", value.get("currency")
    out["sp_quantity"].append(
        _quantity_row(param, system, code, value.get("unit"), number, number, number, grp)
    )


def _quantity_range(param: str, value: Any, grp: int | None, out: Rows) -> None:
    if not isinstance(value, dict):
        return
    low, high = value.get("low"), value.get("high")
    low = low if isinstance(low, dict) else {}
    high = high if isinstance(high, dict) else {}
    lo, hi = _number(low.get("value")), _number(high.get("value"))
    if lo is None and hi is None:
        return
    unit_of = low if lo is not None else high
    out["sp_quantity"].append(
        _quantity_row(
            param,
            unit_of.get("system"),
            unit_of.get("code"),
            unit_of.get("unit"),
            None,
            lo if lo is not None else -FLOAT_MAX,
            hi if hi is not None else FLOAT_MAX,
            grp,
        )
    )


def _reference_row(
    param: str,
    target_type: str | None,
    target_id: str | None,
    version: str | None,
    url: str | None,
    grp: int | None,
) -> dict[str, Any]:
    return {
        "param": param,
        "target_type": target_type,
        "target_id": target_id,
        "target_version": version,
        "url": url,
        "grp": grp,
    }


def _reference(param: str, value: Any, grp: int | None, out: Rows) -> None:
    if not isinstance(value, dict):
        return
    literal = value.get("reference")
    if isinstance(literal, str):
        target = parse_reference(literal)
        if target is not None:
            out["sp_reference"].append(
                _reference_row(param, target.type, target.id, target.version, target.url, grp)
            )
    identifier = value.get("identifier")
    if isinstance(identifier, dict):
        _token_identifier(param + ":identifier", identifier, grp, out)


def _reference_canonical(param: str, value: Any, grp: int | None, out: Rows) -> None:
    if isinstance(value, str):
        target = parse_canonical(value)
        if target is not None:
            out["sp_reference"].append(
                _reference_row(param, target.type, None, target.version, target.url, grp)
            )


def _reference_resource(param: str, value: Any, grp: int | None, out: Rows) -> None:
    # Bundle.entry[0].resource (Bundle-composition, Bundle-message): the resource itself.
    if isinstance(value, dict):
        rtype, rid = value.get("resourceType"), value.get("id")
        if isinstance(rtype, str) and isinstance(rid, str):
            out["sp_reference"].append(_reference_row(param, rtype, rid, None, None, grp))


def _uri(param: str, value: Any, grp: int | None, out: Rows) -> None:
    if isinstance(value, str) and value:
        out["sp_uri"].append({"param": param, "value": value[:URL_WIDTH], "grp": grp})


def _ignore(param: str, value: Any, grp: int | None, out: Rows) -> None:
    """Types a parameter cannot be searched by (e.g. SampledData for value-quantity)."""


_CONVERTERS: dict[tuple[str, str], Converter] = {
    ("string", "string"): _string_plain,
    ("string", "markdown"): _string_plain,
    ("string", "HumanName"): _string_parts(_HUMAN_NAME_PARTS),
    ("string", "Address"): _string_parts(_ADDRESS_PARTS),
    ("token", "Coding"): _token_coding,
    ("token", "CodeableConcept"): _token_concept,
    ("token", "Identifier"): _token_identifier,
    ("token", "ContactPoint"): _token_contact,
    ("token", "code"): _token_code,
    ("token", "id"): _token_code,
    ("token", "string"): _token_code,
    ("token", "uri"): _token_code,
    ("token", "boolean"): _token_boolean,
    ("date", "date"): _date_point,
    ("date", "dateTime"): _date_point,
    ("date", "instant"): _date_point,
    ("date", "string"): _date_point,
    ("date", "Period"): _date_period,
    ("date", "Timing"): _date_timing,
    ("number", "integer"): _number_point,
    ("number", "decimal"): _number_point,
    ("number", "positiveInt"): _number_point,
    ("number", "unsignedInt"): _number_point,
    ("number", "Range"): _number_range,
    ("quantity", "Quantity"): _quantity_point,
    ("quantity", "Age"): _quantity_point,
    ("quantity", "Duration"): _quantity_point,
    ("quantity", "Distance"): _quantity_point,
    ("quantity", "Count"): _quantity_point,
    ("quantity", "SimpleQuantity"): _quantity_point,
    ("quantity", "Money"): _quantity_point,
    ("quantity", "Range"): _quantity_range,
    ("reference", "Reference"): _reference,
    ("reference", "canonical"): _reference_canonical,
    ("reference", "uri"): _reference_canonical,
    ("reference", "Resource"): _reference_resource,
    ("uri", "uri"): _uri,
    ("uri", "url"): _uri,
    ("uri", "canonical"): _uri,
    ("uri", "oid"): _uri,
    ("uri", "uuid"): _uri,
}


def converter(param_type: str, fhir_type: str) -> Converter:
    return _CONVERTERS.get((param_type, fhir_type), _ignore)


_STRING_TYPE_FOR = {"string": "string", "date": "dateTime", "reference": "canonical", "uri": "uri"}


def _guess_type(param_type: str, value: Any) -> str:
    """The FHIR type of a value fhirpathpy returned, from its shape (no element info)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float | Decimal):
        return "decimal"
    if isinstance(value, str):
        return _STRING_TYPE_FOR.get(param_type, "code")
    if not isinstance(value, dict):
        return ""
    if "resourceType" in value:
        return "Resource"
    if param_type == "token":
        if "coding" in value or set(value) == {"text"}:
            return "CodeableConcept"
        if "code" in value:
            return "Coding"
        return "Identifier"
    if param_type == "string":
        return "HumanName" if {"family", "given"} & set(value) else "Address"
    if param_type == "date":
        return "Timing" if "event" in value or "repeat" in value else "Period"
    if param_type in ("quantity", "number"):
        return "Range" if {"low", "high"} & set(value) else "Quantity"
    if param_type == "reference":
        return "Reference"
    return ""


# --- per-type plans -----------------------------------------------------------------


Extractor = Callable[[dict[str, Any], Rows], None]


def _simple_extractor(param: SearchParam) -> Extractor | None:
    code, ptype = param.code, param.type
    if param.paths is not None:
        steps = [
            (compile_path(p.path), converter(ptype, p.type))
            for p in param.paths
            if converter(ptype, p.type) is not _ignore
        ]
        if not steps:
            return None

        def extract(resource: dict[str, Any], out: Rows) -> None:
            for walk, convert in steps:
                for value in walk(resource):
                    convert(code, value, None, out)

        return extract
    if param.expression:
        walk_fp = compile_fhirpath(param.expression)

        def extract_fp(resource: dict[str, Any], out: Rows) -> None:
            for value in walk_fp(resource):
                converter(ptype, _guess_type(ptype, value))(code, value, None, out)

        if not param.custom:
            return extract_fp

        def extract_custom(resource: dict[str, Any], out: Rows) -> None:
            # A custom expression that fails on this resource indexes nothing for it: a
            # client's SearchParameter must never make writes fail (custom.py).
            try:
                found: Rows = {name: [] for name in _TABLE_NAMES}
                extract_fp(resource, found)
            except Exception:  # noqa: BLE001 - fhirpathpy raises bare Exception subclasses
                return
            for name, rows in found.items():
                out[name].extend(rows)

        return extract_custom
    return None


def _composite_extractor(param: SearchParam) -> Extractor | None:
    """Rows for each component under ``<code>#<n>``, grouped by source element."""
    if param.paths is None or not param.components:
        return None
    if any(c.paths is None or c.type not in TABLE_OF_TYPE for c in param.components):
        return None
    code = param.code
    # per alternative: its walker and, per component, (row param, table, steps)
    plan: list[tuple[Walker, list[tuple[str, str, list[tuple[Walker, Converter]]]]]] = []
    for i, alternative in enumerate(param.paths):
        components: list[tuple[str, str, list[tuple[Walker, Converter]]]] = []
        for n, component in enumerate(param.components):
            assert component.paths is not None and component.type is not None
            ctype = component.type
            steps = [(compile_path(p.path), converter(ctype, p.type)) for p in component.paths[i]]
            components.append((f"{code}#{n}", TABLE_OF_TYPE[ctype], steps))
        plan.append((compile_path(alternative.path), components))

    def extract(resource: dict[str, Any], out: Rows) -> None:
        grp = 0
        scratch: Rows | None = None
        for walk, components in plan:
            for element in walk(resource):
                if not isinstance(element, dict):
                    continue
                if scratch is None:
                    scratch = {name: [] for name in _TABLE_NAMES}
                # An element only matches a composite search when it has a value for
                # every component; one lacking any is not indexed at all.
                complete = True
                for name, table, steps in components:
                    before = len(scratch[table])
                    for walk_c, convert in steps:
                        for value in walk_c(element):
                            convert(name, value, grp, scratch)
                    if len(scratch[table]) == before:
                        complete = False
                        break
                for table, rows in scratch.items():
                    if rows:
                        if complete:
                            out[table].extend(rows)
                        rows.clear()
                grp += 1

    return extract


def plan_for(
    rtype: str, reg: Registry | None = None, only: frozenset[str] | None = None
) -> tuple[Extractor, ...]:
    """The extractors of every indexed parameter of ``rtype`` (or of those named in
    ``only``), compiled once per registry. A subset plan is built from the very same
    extractors, so its rows are exactly the full plan's rows of those parameters."""
    reg = reg or registry()
    key: Any = rtype if only is None else (rtype, only)
    plan = reg.plans.get(key)
    if plan is None:
        plan = reg.plans[key] = _compile_plan(rtype, reg, only)
    return plan  # type: ignore[no-any-return]


def _compile_plan(
    rtype: str, reg: Registry, only: frozenset[str] | None = None
) -> tuple[Extractor, ...]:
    extractors: list[Extractor] = []
    for param in reg.for_type(rtype):
        if param.code in RESOURCE_COLUMN_PARAMS:
            continue
        if only is not None and param.code not in only:
            continue
        if param.type == "composite":
            extractor = _composite_extractor(param)
        elif param.type in TABLE_OF_TYPE:
            extractor = _simple_extractor(param)
        else:
            extractor = None
        if extractor is not None:
            extractors.append(extractor)
    return tuple(extractors)


def extract_index_rows(
    resource: dict[str, Any], reg: Registry | None = None, *, only: frozenset[str] | None = None
) -> Rows:
    """Index rows per table (``sp_string``...) for every search parameter of the resource's
    type; each row holds ``param`` and the table's value columns.

    ``reg``: the registry in force (the core one by default; with the server's custom
    SearchParameters, see fhir_server.storage.search_sql.live_registry).
    ``only``: just these parameter codes (the access decision needs only a type's
    patient-compartment references, docs/AUTH.md "Cost"); the rows are the same as the
    full extraction's rows of those parameters."""
    out: Rows = {name: [] for name in _TABLE_NAMES}
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str):
        return out
    for extract in plan_for(rtype, reg, only):
        extract(resource, out)
    return out


_TABLE_NAMES = tuple(TABLE_OF_TYPE.values())
