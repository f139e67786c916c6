"""FHIR R4 XML <-> FHIR R4 JSON (as Python dicts), per FHIR R4 xml.html and json.html.

XML is ordered and typed by position; JSON is keyed and typed by value. To translate, we
need the StructureDefinitions (which children an element has, in which order, which repeat,
which are primitives, which travel as attributes); :mod:`fhir_server.definitions` supplies
them. The JSON side is the plain ``dict`` form the rest of the server uses, with one
choice made explicit:

* A FHIR ``decimal`` becomes what :func:`fhir_server.formats.fhir_json.parse_fhir_json`
  gives for the same JSON text: ``int`` or ``float`` when that writes back unchanged, a
  ``FhirDecimal`` holding the attribute text otherwise (json.html#primitive: "1.50" is not
  "1.5"). ``parse_xml(data, exact_decimals=True)`` returns :class:`decimal.Decimal` for
  every fraction or exponent instead, as ``json.loads(text, parse_float=Decimal)`` would.
  ``render_xml`` accepts ``int``, ``float`` and ``Decimal`` and writes the same text as
  the JSON form (a ``FhirDecimal`` as written).

Parsing is hardened (security.html#xml): no DTD, no entity expansion, no network access, no
huge-tree mode; a document with a DOCTYPE is refused outright.
"""

from __future__ import annotations

import copy
import math
import re
import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from lxml import etree

from fhir_server.definitions import (
    ElementInfo,
    child_elements,
    children_by_name,
    choice_name,
    is_primitive_type,
    is_resource_type,
    root_element,
)
from fhir_server.errors import bad_request
from fhir_server.formats.fhir_json import decimal_from_text, decimal_text
from fhir_server.formats.limits import StructureLimits, check_xml

FHIR_NS = "http://hl7.org/fhir"
XHTML_NS = "http://www.w3.org/1999/xhtml"
_F = "{" + FHIR_NS + "}"
_XHTML_DIV = "{" + XHTML_NS + "}div"

# FHIR R4 datatypes.html#primitive: the lexical forms of the non-string primitives.
_INTEGER = re.compile(r"-?(0|[1-9][0-9]*)")
_DECIMAL = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_INTEGER_TYPES = frozenset({"integer", "positiveInt", "unsignedInt"})
_MIN_INTEGER = {"integer": -(2**31), "unsignedInt": 0, "positiveInt": 1}
_MAX_INTEGER = 2**31 - 1

# lxml parsers are not thread-safe; each thread gets its own hardened parser.
_local = threading.local()


def _hardened_parser() -> etree.XMLParser:
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            dtd_validation=False,
            huge_tree=False,
            # Comments are kept so the narrative keeps its own; elsewhere they carry no
            # FHIR content (xml.html) and the walk skips them.
            remove_comments=False,
            remove_pis=True,
        )
        _local.parser = parser
    return parser


def _xml_tree(data: bytes) -> etree._Element:
    try:
        root = etree.fromstring(data, _hardened_parser())
    except etree.XMLSyntaxError as exc:
        raise bad_request(f"The XML is not well-formed: {exc}", code="structure") from exc
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        # FHIR R4 xml.html: "resources SHALL NOT contain DTDs"; refusing keeps entity tricks out.
        raise bad_request("XML with a DOCTYPE declaration is not accepted", code="security")
    return root


def _elements(elem: etree._Element, location: str) -> list[etree._Element]:
    """Child elements of a FHIR element, comments skipped."""
    children = []
    for child in elem:
        if child.tag is etree.Comment:
            continue
        if not isinstance(child.tag, str):
            # Entity references survive as nodes when entities are not resolved.
            raise bad_request("XML entity references are not accepted", location, code="security")
        children.append(child)
    return children


def _local_name(elem: etree._Element, location: str) -> str:
    tag = elem.tag
    if not tag.startswith(_F):
        raise bad_request(f"Element {tag} is not in the FHIR namespace {FHIR_NS}", location)
    return tag[len(_F) :]


# ---------------------------------------------------------------------------------------
# XML -> JSON


def parse_xml(
    data: bytes, *, exact_decimals: bool = False, limits: StructureLimits | None = None
) -> dict[str, Any]:
    """Parse one FHIR R4 resource in XML into its JSON form; FhirError 400 when invalid.

    ``exact_decimals`` chooses ``Decimal`` over ``float`` for fractional decimals (see the
    module docstring). ``limits``: the cost limits checked on the tree before it is
    converted (fhir_server.formats.limits).
    """
    root = _xml_tree(data)
    if limits is not None:
        check_xml(root, limits)
    return _read_resource(root, "", _exact_decimal if exact_decimals else decimal_from_text)


DecimalOf = Callable[[str], Any]


def _exact_decimal(text: str) -> int | Decimal:
    if "." in text or "e" in text or "E" in text:
        return Decimal(text)
    return int(text)


def _read_resource(elem: etree._Element, location: str, decimal_of: DecimalOf) -> dict[str, Any]:
    resource_type = _local_name(elem, location or etree.QName(elem).localname)
    if not is_resource_type(resource_type):
        raise bad_request(f"Unknown resource type {resource_type!r}", location or resource_type)
    info = root_element(resource_type)
    assert info is not None  # every listed resource type has a definition
    _check_text(elem, location or resource_type)
    for name in elem.attrib:
        if not name.startswith("{"):
            # Only foreign-namespace attributes (xsi:schemaLocation) may decorate a resource.
            raise bad_request(f"Unexpected attribute {name!r}", location or resource_type)
    result: dict[str, Any] = {"resourceType": resource_type}
    here = f"{location}.{resource_type}" if location else resource_type
    _read_children(elem, info, result, here, decimal_of)
    return result


def _check_text(elem: etree._Element, location: str) -> None:
    # FHIR XML carries data only in attributes and elements (xml.html); stray text is an error.
    if elem.text is not None and elem.text.strip():
        raise bad_request("Unexpected text content", location)
    for child in elem:
        if child.tail is not None and child.tail.strip():
            raise bad_request("Unexpected text content", location)


def _read_children(
    elem: etree._Element,
    info: ElementInfo,
    target: dict[str, Any],
    location: str,
    decimal_of: DecimalOf,
) -> None:
    named = children_by_name(info)
    primitive_arrays: dict[str, tuple[list[Any], list[Any]]] = {}
    for child in _elements(elem, location):
        # Narrative.div is the one element outside the FHIR namespace (narrative.html).
        name = "div" if child.tag == _XHTML_DIV else _local_name(child, location)
        child_info = named.get(name)
        if child_info is None or child_info.is_xml_attribute:
            raise bad_request(f"Unknown element {name!r}", f"{location}.{name}")
        if not child_info.is_array and (name in target or "_" + name in target):
            raise bad_request(f"Element {name!r} may occur only once", f"{location}.{name}")
        type_code = child_info.types[0] if child_info.types else ""
        if child_info.is_array:
            seen = primitive_arrays[name][0] if name in primitive_arrays else target.get(name, [])
            child_location = f"{location}.{name}[{len(seen)}]"
        else:
            child_location = f"{location}.{name}"

        if type_code == "xhtml":
            target[name] = _read_xhtml(child, child_location)
        elif is_primitive_type(type_code):
            value, extra = _read_primitive(child, type_code, child_location, decimal_of)
            if value is None and extra is None:
                # FHIR R4 xml.html: a primitive element has a value, extensions, or both.
                raise bad_request("A primitive element needs a value", child_location)
            if child_info.is_array:
                values, extras = primitive_arrays.setdefault(name, ([], []))
                values.append(value)
                extras.append(extra)
            else:
                if value is not None:
                    target[name] = value
                if extra is not None:
                    target["_" + name] = extra
        else:
            if type_code == "Resource":
                value = _read_resource_wrapper(child, child_location, decimal_of)
            else:
                value = _read_complex(child, child_info, child_location, decimal_of)
            if child_info.is_array:
                target.setdefault(name, []).append(value)
            else:
                target[name] = value
    for name, (values, extras) in primitive_arrays.items():
        # FHIR R4 json.html#primitive: repeating primitives with ids/extensions become two
        # arrays aligned by index, padded with null.
        if any(v is not None for v in values):
            target[name] = values
        if any(e is not None for e in extras):
            target["_" + name] = extras
    _check_text(elem, location)


def _read_complex(
    elem: etree._Element, info: ElementInfo, location: str, decimal_of: DecimalOf
) -> dict[str, Any]:
    result: dict[str, Any] = {}
    attributes = {c.name: c for c in child_elements(info) if c.is_xml_attribute}
    for attr, value in elem.attrib.items():
        if attr.startswith("{"):
            continue
        if attr not in attributes:
            raise bad_request(f"Unexpected attribute {attr!r}", location)
        if not value:
            raise bad_request(f"Attribute {attr!r} is empty", location)
        result[attr] = value
    _read_children(elem, info, result, location, decimal_of)
    if not result:
        # FHIR R4 xml.html: elements SHALL have a value, children or both.
        raise bad_request("Element has no content", location)
    return result


def _read_resource_wrapper(
    elem: etree._Element, location: str, decimal_of: DecimalOf
) -> dict[str, Any]:
    _check_text(elem, location)
    children = _elements(elem, location)
    if len(children) != 1 or elem.attrib:
        raise bad_request("Expected exactly one resource inside this element", location)
    return _read_resource(children[0], location, decimal_of)


def _read_primitive(
    elem: etree._Element, type_code: str, location: str, decimal_of: DecimalOf
) -> tuple[Any, dict[str, Any] | None]:
    """(JSON value or None, the ``_name`` object or None) of one primitive element."""
    extra: dict[str, Any] = {}
    value: Any = None
    for attr, text in elem.attrib.items():
        if attr == "value":
            if not text:
                raise bad_request("The value attribute is empty", location)
            value = _primitive_from_text(type_code, text, location, decimal_of)
        elif attr == "id":
            extra["id"] = text
        elif not attr.startswith("{"):
            raise bad_request(f"Unexpected attribute {attr!r}", location)
    extensions: list[dict[str, Any]] = []
    for index, child in enumerate(_elements(elem, location)):
        name = _local_name(child, location)
        if name != "extension":
            raise bad_request(f"Unknown element {name!r}", f"{location}.{name}")
        ext_info = root_element("Extension")
        assert ext_info is not None
        ext_location = f"{location}.extension[{index}]"
        extensions.append(_read_complex(child, ext_info, ext_location, decimal_of))
    _check_text(elem, location)
    if extensions:
        extra["extension"] = extensions
    return value, (extra or None)


def _primitive_from_text(type_code: str, text: str, location: str, decimal_of: DecimalOf) -> Any:
    if type_code == "boolean":
        if text not in ("true", "false"):
            raise bad_request(f"{text!r} is not a boolean", location)
        return text == "true"
    if type_code in _INTEGER_TYPES:
        if not _INTEGER.fullmatch(text):
            raise bad_request(f"{text!r} is not an {type_code}", location)
        number = int(text)
        if not _MIN_INTEGER[type_code] <= number <= _MAX_INTEGER:
            raise bad_request(f"{text!r} is out of range for {type_code}", location)
        return number
    if type_code == "decimal":
        if not _DECIMAL.fullmatch(text):
            raise bad_request(f"{text!r} is not a decimal", location)
        # Same values a JSON parser gives for the same number text (module docstring).
        try:
            return decimal_of(text)
        except ValueError as exc:
            raise bad_request(f"{text!r} is out of range for a decimal", location) from exc
    return text


def _read_xhtml(elem: etree._Element, location: str) -> str:
    if elem.tag != _XHTML_DIV:
        raise bad_request("Narrative div must be an XHTML div element", location)
    # A detached copy without unused inherited namespace declarations (xsi, the FHIR
    # default namespace) serialises as the JSON form: the div with its own xmlns only.
    div = copy.deepcopy(elem)
    div.tail = None
    etree.cleanup_namespaces(div)
    return etree.tostring(div, encoding="unicode", with_tail=False)


# ---------------------------------------------------------------------------------------
# JSON -> XML


def render_xml(resource: dict[str, Any]) -> bytes:
    """Render one FHIR R4 resource (JSON form) as XML; FhirError 400 when it is not valid."""
    root = _write_resource(resource, "")
    return etree.tostring(root, encoding="UTF-8", xml_declaration=True)


def _write_resource(resource: Any, location: str) -> etree._Element:
    if not isinstance(resource, dict):
        raise bad_request("Expected a resource object", location or "(root)")
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str) or not is_resource_type(resource_type):
        raise bad_request(f"Unknown resource type {resource_type!r}", location or "(root)")
    info = root_element(resource_type)
    assert info is not None
    elem = etree.Element(_F + resource_type, nsmap={None: FHIR_NS})
    here = f"{location}.{resource_type}" if location else resource_type
    _write_children(elem, info, resource, here, skip=("resourceType",))
    return elem


def _write_children(
    elem: etree._Element,
    info: ElementInfo,
    obj: dict[str, Any],
    location: str,
    skip: tuple[str, ...] = (),
) -> None:
    used = set(skip)
    named = children_by_name(info)
    for child_info in child_elements(info):
        if child_info.is_choice:
            stem = child_info.name[:-3]
            candidates = [named[choice_name(stem, t)] for t in child_info.types]
        else:
            candidates = [child_info]
        for candidate in candidates:
            name = candidate.name
            if name not in obj and "_" + name not in obj:
                continue
            used.add(name)
            used.add("_" + name)
            _write_element(elem, candidate, obj, location)
    unknown = [key for key in obj if key not in used]
    if unknown:
        raise bad_request(f"Unknown element {unknown[0]!r}", f"{location}.{unknown[0]}")


def _write_element(
    parent: etree._Element, info: ElementInfo, obj: dict[str, Any], location: str
) -> None:
    name = info.name
    here = f"{location}.{name}"
    type_code = info.types[0] if info.types else ""
    if info.is_xml_attribute:
        value = obj.get(name)
        if not isinstance(value, str) or "_" + name in obj:
            raise bad_request(f"{name!r} must be a string", here)
        _set_attribute(parent, name, value, here)
        return
    if is_primitive_type(type_code) and type_code != "xhtml":
        _write_primitive_element(parent, info, type_code, obj, here)
        return
    if "_" + name in obj:
        raise bad_request(f"'_{name}' is only allowed on primitive elements", here)
    for index, item in enumerate(_as_items(obj[name], info, here)):
        item_location = f"{here}[{index}]" if info.is_array else here
        if type_code == "xhtml":
            parent.append(_parse_xhtml(item, item_location))
        elif type_code == "Resource":
            etree.SubElement(parent, _F + name).append(_write_resource(item, item_location))
        else:
            if not isinstance(item, dict) or not item:
                raise bad_request("Expected a non-empty object", item_location)
            _write_children(etree.SubElement(parent, _F + name), info, item, item_location)


def _as_items(value: Any, info: ElementInfo, location: str) -> list[Any]:
    if info.is_array:
        if not isinstance(value, list) or not value:
            raise bad_request("Expected a non-empty array", location)
        return value
    if isinstance(value, list):
        raise bad_request("Expected a single value, not an array", location)
    return [value]


def _write_primitive_element(
    parent: etree._Element, info: ElementInfo, type_code: str, obj: dict[str, Any], here: str
) -> None:
    name = info.name
    values = obj.get(name)
    extras = obj.get("_" + name)
    if info.is_array:
        values = [] if values is None else _as_items(values, info, here)
        extras = [] if extras is None else _as_items(extras, info, f"{here}._{name}")
        count = max(len(values), len(extras))
        for index in range(count):
            value = values[index] if index < len(values) else None
            extra = extras[index] if index < len(extras) else None
            _write_primitive(parent, name, type_code, value, extra, f"{here}[{index}]")
    else:
        _write_primitive(parent, name, type_code, values, extras, here)


def _write_primitive(
    parent: etree._Element, name: str, type_code: str, value: Any, extra: Any, here: str
) -> None:
    if value is None and extra is None:
        raise bad_request("A primitive needs a value or extensions, not null", here)
    child = etree.SubElement(parent, _F + name)
    if extra is not None:
        if not isinstance(extra, dict) or set(extra) - {"id", "extension"}:
            raise bad_request(f"'_{name}' may hold only id and extension", here)
        if "id" in extra:
            if not isinstance(extra["id"], str):
                raise bad_request("id must be a string", f"{here}.id")
            _set_attribute(child, "id", extra["id"], here)
    if value is not None:
        _set_attribute(child, "value", _primitive_to_text(type_code, value, here), here)
    if extra is not None and "extension" in extra:
        ext_info = root_element("Extension")
        assert ext_info is not None
        extensions = extra["extension"]
        if not isinstance(extensions, list) or not extensions:
            raise bad_request("extension must be a non-empty array", f"{here}.extension")
        for index, extension in enumerate(extensions):
            ext_location = f"{here}.extension[{index}]"
            if not isinstance(extension, dict):
                raise bad_request("Expected an object", ext_location)
            _write_children(
                etree.SubElement(child, _F + "extension"), ext_info, extension, ext_location
            )


def _primitive_to_text(type_code: str, value: Any, here: str) -> str:
    if type_code == "boolean":
        if not isinstance(value, bool):
            raise bad_request("Expected true or false", here)
        return "true" if value else "false"
    if type_code in _INTEGER_TYPES:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad_request(f"Expected an {type_code}", here)
        return str(value)
    if type_code == "decimal":
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
            raise bad_request("Expected a number", here)
        if isinstance(value, float) and not math.isfinite(value):
            raise bad_request("Decimals must be finite", here)
        if isinstance(value, Decimal) and not value.is_finite():
            raise bad_request("Decimals must be finite", here)
        return decimal_text(value)
    if not isinstance(value, str):
        raise bad_request(f"Expected a string ({type_code})", here)
    return value


def _set_attribute(elem: etree._Element, name: str, value: str, here: str) -> None:
    try:
        elem.set(name, value)
    except ValueError as exc:
        # lxml refuses characters XML cannot carry (control characters, NUL).
        raise bad_request(f"Value cannot be written as XML: {exc}", here) from exc


def _parse_xhtml(value: Any, here: str) -> etree._Element:
    if not isinstance(value, str):
        raise bad_request("The narrative div must be a string", here)
    try:
        div = etree.fromstring(value.encode(), _hardened_parser())
    except etree.XMLSyntaxError as exc:
        raise bad_request(f"The narrative div is not well-formed XHTML: {exc}", here) from exc
    if div.tag != _XHTML_DIV or div.getroottree().docinfo.doctype:
        raise bad_request("The narrative must be an XHTML div element", here)
    return div


__all__ = ["FHIR_NS", "XHTML_NS", "parse_xml", "render_xml"]
