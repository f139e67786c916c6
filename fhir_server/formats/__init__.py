"""Wire formats and response shaping: FHIR XML <-> JSON, ``_summary`` and ``_elements``.

Public API::

    parse_xml(data: bytes) -> dict            FHIR R4 XML -> JSON form (xml.html)
    render_xml(resource: dict) -> bytes       JSON form -> FHIR R4 XML
    summarize(resource, mode) -> dict         _summary=true|text|data|false (search.html#summary)
    select_elements(resource, names) -> dict  _elements (search.html#elements)
"""

from fhir_server.formats.summary import SUBSETTED_TAG, select_elements, summarize
from fhir_server.formats.xml import parse_xml, render_xml

__all__ = ["SUBSETTED_TAG", "parse_xml", "render_xml", "select_elements", "summarize"]
