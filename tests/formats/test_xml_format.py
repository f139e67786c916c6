"""FHIR R4 XML <-> JSON (xml.html, json.html): unit cases and the official examples."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from fhir_server.errors import FhirError
from fhir_server.formats.fhir_json import FhirDecimal, dump_fhir_json, parse_fhir_json
from fhir_server.formats.xml import parse_xml, render_xml

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT / ".." / "shared"
EXAMPLES = SHARED / "fhir-r4" / "examples"
QUESTIONNAIRES = SHARED / "fhir-r4" / "questionnaires"
needs_shared = pytest.mark.skipif(not SHARED.exists(), reason="../shared reference data is absent")

NS = 'xmlns="http://hl7.org/fhir"'
DIV = '<div xmlns="http://www.w3.org/1999/xhtml"><p>Jim &amp; <b>Jane</b></p></div>'

PATIENT_XML = f"""<?xml version="1.0" encoding="UTF-8"?>
<Patient {NS} xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <!-- comments carry no content -->
  <id value="p1"/>
  <text><status value="generated"/>{DIV}</text>
  <active value="true"/>
  <name id="n1">
    <family value="Chalmers"/>
    <given value="Peter"/>
    <given id="g2">
      <extension url="http://example.org/nickname"><valueString value="Jim"/></extension>
    </given>
    <given value="James"/>
  </name>
  <gender value="male"/>
  <birthDate value="1974-12-25">
    <extension url="http://hl7.org/fhir/StructureDefinition/patient-birthTime">
      <valueDateTime value="1974-12-25T14:35:45-05:00"/>
    </extension>
  </birthDate>
  <multipleBirthInteger value="2"/>
</Patient>""".encode()

PATIENT_JSON: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "p1",
    "text": {"status": "generated", "div": DIV},
    "active": True,
    "name": [
        {
            "id": "n1",
            "family": "Chalmers",
            "given": ["Peter", None, "James"],
            "_given": [
                None,
                {
                    "id": "g2",
                    "extension": [{"url": "http://example.org/nickname", "valueString": "Jim"}],
                },
                None,
            ],
        }
    ],
    "gender": "male",
    "birthDate": "1974-12-25",
    "_birthDate": {
        "extension": [
            {
                "url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                "valueDateTime": "1974-12-25T14:35:45-05:00",
            }
        ]
    },
    "multipleBirthInteger": 2,
}

OBSERVATION_JSON: dict[str, Any] = {
    "resourceType": "Observation",
    "id": "o1",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
    "subject": {"reference": "Patient/p1"},
    "valueQuantity": {
        "value": Decimal("67.50"),
        "unit": "kg",
        "system": "http://unitsofmeasure.org",
        "code": "kg",
    },
}

BUNDLE_JSON: dict[str, Any] = {
    "resourceType": "Bundle",
    "type": "transaction",
    "entry": [
        {
            "fullUrl": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a",
            "resource": {
                "resourceType": "Patient",
                "active": False,
                "contained": [{"resourceType": "Organization", "id": "org", "name": "Clinic"}],
                "managingOrganization": {"reference": "#org"},
            },
            "request": {"method": "POST", "url": "Patient"},
        },
        {"request": {"method": "DELETE", "url": "Observation/o1"}},
    ],
}


def test_patient_with_primitive_extensions_parses_to_json() -> None:
    assert parse_xml(PATIENT_XML) == PATIENT_JSON


def test_patient_renders_in_definition_order_and_round_trips() -> None:
    xml = render_xml(PATIENT_JSON)
    root = etree.fromstring(xml)
    assert root.tag == "{http://hl7.org/fhir}Patient"
    assert [etree.QName(c).localname for c in root] == [
        "id",
        "text",
        "active",
        "name",
        "gender",
        "birthDate",
        "multipleBirthInteger",
    ]
    name = root.find("{http://hl7.org/fhir}name")
    assert name is not None and name.get("id") == "n1"  # Element.id is an attribute
    given = name.findall("{http://hl7.org/fhir}given")
    assert [g.get("value") for g in given] == ["Peter", None, "James"]
    assert given[1].get("id") == "g2"
    assert parse_xml(xml) == PATIENT_JSON


def test_observation_value_quantity_keeps_decimal_precision() -> None:
    xml = render_xml(OBSERVATION_JSON)
    assert b'<value value="67.50"/>' in xml
    assert b"<valueQuantity>" in xml
    assert parse_xml(xml, exact_decimals=True) == OBSERVATION_JSON
    # Default mode matches parse_fhir_json: the attribute text is kept (json.html#primitive).
    value = parse_xml(xml)["valueQuantity"]["value"]
    assert value == Decimal("67.50")
    assert isinstance(value, FhirDecimal) and value.text == "67.50"
    assert render_xml(parse_xml(xml)) == xml


@pytest.mark.parametrize(
    ("text", "expected"),
    [("100", 100), ("-3", -3), ("0.1", 0.1), ("1e3", 1000.0), ("1.50", 1.5), ("2.5", 2.5)],
)
def test_decimal_typing_matches_json_parsing(text: str, expected: Any) -> None:
    doc = (
        f'<Observation {NS}><status value="final"/><code><text value="x"/></code>'
        f'<valueQuantity><value value="{text}"/></valueQuantity></Observation>'
    ).encode()
    value = parse_xml(doc)["valueQuantity"]["value"]
    assert value == expected
    assert type(value) is type(parse_fhir_json(text.encode()))
    # Written back as written, in XML and in JSON.
    assert f'<value value="{text}"/>'.encode() in render_xml(parse_xml(doc))
    assert dump_fhir_json(value) == text.encode()


def test_bundle_with_entry_and_contained_resources_round_trips() -> None:
    xml = render_xml(BUNDLE_JSON)
    root = etree.fromstring(xml)
    resource = root.find("{*}entry/{*}resource/{*}Patient")
    assert resource is not None
    assert resource.find("{*}contained/{*}Organization") is not None
    assert parse_xml(xml) == BUNDLE_JSON


def test_integer_kinds_and_booleans_are_typed() -> None:
    doc = (
        f'<Questionnaire {NS}><status value="active"/>'
        '<item><linkId value="1"/><type value="string"/><required value="false"/>'
        '<maxLength value="20"/><item><linkId value="1.1"/><type value="display"/></item>'
        "</item></Questionnaire>"
    ).encode()
    parsed = parse_xml(doc)
    assert parsed["item"][0]["required"] is False
    assert parsed["item"][0]["maxLength"] == 20
    # Questionnaire.item.item is a contentReference to Questionnaire.item.
    assert parsed["item"][0]["item"] == [{"linkId": "1.1", "type": "display"}]


DOCTYPE_ATTACKS = [
    # Billion laughs: nested internal entities.
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
    b'<Patient xmlns="http://hl7.org/fhir"><id value="&lol2;"/></Patient>',
    # XXE: an external entity reading a local file.
    b'<?xml version="1.0"?><!DOCTYPE p [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    b'<Patient xmlns="http://hl7.org/fhir"><id value="a"/>&xxe;</Patient>',
    # External DTD over the network.
    b'<?xml version="1.0"?><!DOCTYPE Patient SYSTEM "http://example.org/evil.dtd">'
    b'<Patient xmlns="http://hl7.org/fhir"><id value="a"/></Patient>',
]


@pytest.mark.parametrize("document", DOCTYPE_ATTACKS)
def test_doctype_and_entities_are_refused(document: bytes) -> None:
    with pytest.raises(FhirError) as caught:
        parse_xml(document)
    assert caught.value.status == 400
    assert caught.value.issues[0].code == "security"


@pytest.mark.parametrize(
    ("document", "expression"),
    [
        (b"<Patient><id value='a'/></Patient>", "Patient"),  # no FHIR namespace
        (f"<Patient {NS}><foo value='a'/></Patient>".encode(), "Patient.foo"),
        (f"<Patient {NS}><active value='yes'/></Patient>".encode(), "Patient.active"),
        (
            f"<Patient {NS}><name><given value='a'/></name><name><given/></name></Patient>".encode(),
            "Patient.name[1].given[0]",
        ),
        (
            f"<Patient {NS}><active value='true'/><active value='true'/></Patient>".encode(),
            "Patient.active",
        ),
        (f"<Patient {NS}><gender value=''/></Patient>".encode(), "Patient.gender"),
        (f"<Patient {NS}>text<active value='true'/></Patient>".encode(), "Patient"),
        (
            f"<Patient {NS}><name foo='x'><family value='a'/></name></Patient>".encode(),
            "Patient.name[0]",
        ),
        (
            f"<Patient {NS}><multipleBirthInteger value='1.5'/></Patient>".encode(),
            "Patient.multipleBirthInteger",
        ),
        (
            f"<Patient {NS}><contained><Patient/><Patient/></contained></Patient>".encode(),
            "Patient.contained[0]",
        ),
        (f"<NotAResource {NS}/>".encode(), "NotAResource"),
        (b"<Patient xmlns='http://hl7.org/fhir'><unclosed></Patient>", None),
    ],
)
def test_invalid_xml_is_a_400_with_location(document: bytes, expression: str | None) -> None:
    with pytest.raises(FhirError) as caught:
        parse_xml(document)
    assert caught.value.status == 400
    if expression is not None:
        assert caught.value.issues[0].expression == (expression,)


@pytest.mark.parametrize(
    ("resource", "expression"),
    [
        ({"resourceType": "Patient", "nope": 1}, "Patient.nope"),
        ({"resourceType": "Patient", "active": "true"}, "Patient.active"),
        ({"resourceType": "Patient", "name": {"family": "x"}}, "Patient.name"),
        ({"resourceType": "Patient", "name": [{"given": [None]}]}, "Patient.name[0].given[0]"),
        (
            {"resourceType": "Patient", "text": {"status": "generated", "div": "<p>no</p>"}},
            "Patient.text.div",
        ),
        ({"resourceType": "Nope"}, "(root)"),
        ({"resourceType": "Patient", "id": "a\x00b"}, "Patient.id"),
    ],
)
def test_render_refuses_invalid_json(resource: dict[str, Any], expression: str) -> None:
    with pytest.raises(FhirError) as caught:
        render_xml(resource)
    assert caught.value.status == 400
    assert caught.value.issues[0].expression == (expression,)


# ---------------------------------------------------------------------------------------
# Conformance: every official example. Documented normalisation, applied to both sides:
# * decimals are read exactly (JSON with parse_float=Decimal, XML with exact_decimals), so
#   "1.50" must survive as 1.50;
# * the narrative div is compared as canonical XML (C14N), because `&quot;` and `"` are the
#   same text; for XML twins, whitespace runs inside the div are also collapsed, since the
#   README of the examples says the twins differ in narrative whitespace.


def _canonical_div(div: str, collapse_whitespace: bool) -> str:
    canonical = etree.tostring(etree.fromstring(div.encode()), method="c14n").decode()
    if collapse_whitespace:
        canonical = re.sub(r">\s+<", "><", re.sub(r"\s+", " ", canonical))
    return canonical


def _normalise(value: Any, collapse_whitespace: bool = False) -> Any:
    if isinstance(value, dict):
        return {
            k: _canonical_div(v, collapse_whitespace)
            if k == "div" and isinstance(v, str)
            else _normalise(v, collapse_whitespace)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_normalise(v, collapse_whitespace) for v in value]
    return value


def _load_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"), parse_float=Decimal)


JSON_EXAMPLES = sorted(EXAMPLES.glob("json/*.json")) if SHARED.exists() else []
XML_TWINS = sorted(EXAMPLES.glob("xml/*.xml")) if SHARED.exists() else []


@pytest.mark.conformance
@needs_shared
def test_examples_are_present() -> None:
    assert len(JSON_EXAMPLES) == 151
    assert len(XML_TWINS) == 9


@pytest.mark.conformance
@needs_shared
@pytest.mark.parametrize("path", JSON_EXAMPLES, ids=lambda p: p.stem)
def test_every_json_example_round_trips_through_xml(path: Path) -> None:
    resource = _load_json(path)
    back = parse_xml(render_xml(resource), exact_decimals=True)
    assert _normalise(back) == _normalise(resource)


@pytest.mark.conformance
@needs_shared
@pytest.mark.parametrize("path", XML_TWINS, ids=lambda p: p.stem)
def test_every_xml_twin_parses_to_its_json_example(path: Path) -> None:
    expected = _load_json(EXAMPLES / "json" / f"{path.stem}.json")
    parsed = parse_xml(path.read_bytes(), exact_decimals=True)
    assert _normalise(parsed, collapse_whitespace=True) == _normalise(expected, True)


SDC_XML = sorted(QUESTIONNAIRES.glob("hl7-sdc-3.0.0/xml/*.xml")) if SHARED.exists() else []


@pytest.mark.conformance
@needs_shared
@pytest.mark.parametrize("path", SDC_XML, ids=lambda p: p.stem)
def test_sdc_xml_questionnaires_parse_and_round_trip(path: Path) -> None:
    parsed = parse_xml(path.read_bytes(), exact_decimals=True)
    assert parsed["resourceType"] in ("Questionnaire", "QuestionnaireResponse")
    assert parse_xml(render_xml(parsed), exact_decimals=True) == parsed
