"""Formats, Prefer, _summary/_elements, and the error rules (http.html, json.html, xml.html)."""

from __future__ import annotations

import uuid

import httpx
import pytest
from lxml import etree

XML = "application/fhir+xml"
NS = "{http://hl7.org/fhir}"

PATIENT_XML = b"""<?xml version="1.0" encoding="UTF-8"?>
<Patient xmlns="http://hl7.org/fhir">
  <identifier><system value="urn:test:xml"/><value value="%s"/></identifier>
  <active value="true"/>
  <name><family value="Jensen"/><given value="Lars"/><given value="Ole"/></name>
  <birthDate value="1965-11-30"/>
</Patient>"""


def new_patient(fhir: httpx.Client) -> dict[str, object]:
    resource = {
        "resourceType": "Patient",
        "text": {
            "status": "generated",
            "div": '<div xmlns="http://www.w3.org/1999/xhtml">Karen</div>',
        },
        "identifier": [{"system": "urn:test:fmt", "value": uuid.uuid4().hex}],
        "name": [{"family": "Nielsen", "given": ["Karen"]}],
        "gender": "female",
        "birthDate": "1970-04-02",
        "address": [{"city": "Aarhus", "country": "DK"}],
    }
    response = fhir.post("/Patient", json=resource)
    assert response.status_code == 201, response.text
    return response.json()


def test_xml_create_and_json_read(fhir: httpx.Client) -> None:
    response = fhir.post(
        "/Patient", content=PATIENT_XML % uuid.uuid4().hex.encode(), headers={"Content-Type": XML}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["name"][0]["given"] == ["Lars", "Ole"]
    assert body["active"] is True


@pytest.mark.parametrize(
    ("params", "headers"),
    [
        ({"_format": "xml"}, {}),
        ({"_format": "application/fhir+xml"}, {}),
        ({}, {"Accept": "application/fhir+xml"}),
        ({}, {"Accept": "application/xml;q=0.9"}),
    ],
)
def test_xml_output_by_format_or_accept(
    fhir: httpx.Client, params: dict[str, str], headers: dict[str, str]
) -> None:
    body = new_patient(fhir)
    response = fhir.get(f"/Patient/{body['id']}", params=params, headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/fhir+xml; charset=utf-8"
    root = etree.fromstring(response.content)
    assert root.tag == f"{NS}Patient"
    assert root.find(f"{NS}id").get("value") == body["id"]


def test_json_is_default_and_pretty_on_request(fhir: httpx.Client) -> None:
    body = new_patient(fhir)
    plain = fhir.get(f"/Patient/{body['id']}", headers={"Accept": "text/html,*/*"})
    assert plain.headers["content-type"].startswith("application/fhir+json")
    assert b"\n" not in plain.content
    pretty = fhir.get(f"/Patient/{body['id']}", params={"_pretty": "true"})
    assert b'\n  "resourceType"' in pretty.content
    assert pretty.json() == plain.json()


def test_unsupported_format_is_refused(fhir: httpx.Client) -> None:
    body = new_patient(fhir)
    assert fhir.get(f"/Patient/{body['id']}", params={"_format": "text/turtle"}).status_code == 406
    response = fhir.post("/Patient", content=b"name: x", headers={"Content-Type": "text/yaml"})
    assert response.status_code == 415


def test_summary_and_elements_on_read(fhir: httpx.Client) -> None:
    body = new_patient(fhir)
    url = f"/Patient/{body['id']}"
    summary = fhir.get(url, params={"_summary": "true"}).json()
    assert "text" not in summary  # Patient.text is not a summary element
    assert summary["name"] == body["name"]
    assert any(t.get("code") == "SUBSETTED" for t in summary["meta"].get("tag", []))
    text = fhir.get(url, params={"_summary": "text"}).json()
    assert "text" in text and "address" not in text
    data = fhir.get(url, params={"_summary": "data"}).json()
    assert "text" not in data and data["address"] == body["address"]
    elements = fhir.get(url, params={"_elements": "birthDate"}).json()
    assert elements["birthDate"] == "1970-04-02"
    assert "name" not in elements and elements["id"] == body["id"]


@pytest.mark.parametrize(
    ("prefer", "expect_body"),
    [
        ("return=minimal", None),
        ("return=representation", "Patient"),
        ("return=OperationOutcome", "OperationOutcome"),
    ],
)
def test_prefer_return(fhir: httpx.Client, prefer: str, expect_body: str | None) -> None:
    resource = {"resourceType": "Patient", "gender": "male"}
    response = fhir.post("/Patient", json=resource, headers={"Prefer": prefer})
    assert response.status_code == 201
    assert response.headers["location"]
    if expect_body is None:
        assert response.content == b""
    else:
        assert response.json()["resourceType"] == expect_body


# -- errors ------------------------------------------------------------------------------------------


def outcome(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["resourceType"] == "OperationOutcome", body
    return body


def test_malformed_json_is_400(fhir: httpx.Client) -> None:
    outcome(
        fhir.post(
            "/Patient",
            content=b'{"resourceType": "Patient",',
            headers={"Content-Type": "application/fhir+json"},
        ),
        400,
    )


def test_a_repeated_json_key_is_400_and_nothing_is_written(fhir: httpx.Client) -> None:
    """Two values for one property: the server may not pick one and lose the other."""
    body = b'{"resourceType": "Patient", "id": "dup-key", "gender": "male", "gender": "female"}'
    headers = {"Content-Type": "application/fhir+json"}
    refused = outcome(fhir.put("/Patient/dup-key", content=body, headers=headers), 400)
    assert "gender" in str(refused)
    assert fhir.get("/Patient/dup-key").status_code == 404
    bundle = (
        b'{"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": '
        b'{"resourceType": "Patient", "active": true, "active": false}, '
        b'"request": {"method": "POST", "url": "Patient"}}]}'
    )
    outcome(fhir.post("/", content=bundle, headers=headers), 400)


def test_malformed_xml_is_400(fhir: httpx.Client) -> None:
    outcome(
        fhir.post(
            "/Patient",
            content=b"<Patient xmlns='http://hl7.org/fhir'><active",
            headers={"Content-Type": XML},
        ),
        400,
    )


def test_xml_with_doctype_or_entities_is_refused(fhir: httpx.Client) -> None:
    evil = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
        b'<Patient xmlns="http://hl7.org/fhir"><name><family value="&lol2;"/></name></Patient>'
    )
    outcome(fhir.post("/Patient", content=evil, headers={"Content-Type": XML}), 400)
    external = (
        b'<?xml version="1.0"?><!DOCTYPE p [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<Patient xmlns="http://hl7.org/fhir"><name><family value="&x;"/></name></Patient>'
    )
    outcome(fhir.post("/Patient", content=external, headers={"Content-Type": XML}), 400)


def test_structural_error_names_the_location(fhir: httpx.Client) -> None:
    resource = {
        "resourceType": "Patient",
        "gender": "female",
        "birthDate": "not-a-date",
        "name": [{"given": "Karen"}],
    }
    body = outcome(fhir.post("/Patient", json=resource), 400)
    expressions = {e for issue in body["issue"] for e in issue.get("expression", [])}  # type: ignore[union-attr]
    assert "Patient.birthDate" in expressions


def test_unknown_element_is_refused(fhir: httpx.Client) -> None:
    body = outcome(
        fhir.post("/Patient", json={"resourceType": "Patient", "favouriteColour": "blue"}), 400
    )
    assert any("favouriteColour" in str(issue) for issue in body["issue"])  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "payload",
    [
        [],
        "just a string",
        {"no": "resourceType"},
        {"resourceType": "NotAType"},
    ],
)
def test_not_a_resource_is_400(fhir: httpx.Client, payload: object) -> None:
    outcome(fhir.post("/Patient", json=payload), 400)


def test_body_type_must_match_url_type(fhir: httpx.Client) -> None:
    outcome(
        fhir.post(
            "/Patient",
            json={"resourceType": "Observation", "status": "final", "code": {"text": "x"}},
        ),
        400,
    )


def test_unknown_type_in_url_is_404(fhir: httpx.Client) -> None:
    outcome(fhir.post("/Spaceship", json={"resourceType": "Spaceship"}), 404)


def test_body_over_the_limit_is_413_and_nothing_is_written(fhir: httpx.Client) -> None:
    marker = uuid.uuid4().hex
    big = {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:test:big", "value": marker}],
        "name": [{"family": "x" * (3 * 1024 * 1024)}],
    }
    outcome(fhir.post("/Patient", json=big), 413)
    search = fhir.get("/Patient", params={"identifier": f"urn:test:big|{marker}"}).json()
    assert not search.get("entry")


def test_empty_body_is_400(fhir: httpx.Client) -> None:
    outcome(
        fhir.post("/Patient", content=b"", headers={"Content-Type": "application/fhir+json"}), 400
    )


def test_errors_come_as_xml_when_xml_is_asked_for(fhir: httpx.Client) -> None:
    response = fhir.get("/Patient/missing-one", headers={"Accept": XML})
    assert response.status_code == 404
    root = etree.fromstring(response.content)
    assert root.tag == f"{NS}OperationOutcome"


def test_unknown_route_and_method_answer_operation_outcome(
    server: object, fhir: httpx.Client
) -> None:
    outcome(fhir.get("/Patient/1/2/3/4/5"), 404)
    response = fhir.request("TRACE", "/metadata")
    assert response.status_code == 405
    assert response.json()["resourceType"] == "OperationOutcome"
