"""Wire formats and response shaping: FHIR XML <-> JSON, ``_summary`` and ``_elements``.

Public API::

    parse_fhir_json(body) -> Any              FHIR JSON, decimals exact (json.html#primitive)
    dump_fhir_json(value) -> bytes            JSON bytes, decimals as written
    parse_xml(data: bytes) -> dict            FHIR R4 XML -> JSON form (xml.html)
    render_xml(resource: dict) -> bytes       JSON form -> FHIR R4 XML
    summarize(resource, mode) -> dict         _summary=true|text|data|false (search.html#summary)
    select_elements(resource, names) -> dict  _elements (search.html#elements)
"""

from fhir_server.formats.fhir_json import FhirDecimal, dump_fhir_json, parse_fhir_json
from fhir_server.formats.summary import SUBSETTED_TAG, select_elements, summarize
from fhir_server.formats.xml import parse_xml, render_xml

__all__ = [
    "SUBSETTED_TAG",
    "FhirDecimal",
    "dump_fhir_json",
    "parse_fhir_json",
    "parse_xml",
    "render_xml",
    "select_elements",
    "summarize",
]
