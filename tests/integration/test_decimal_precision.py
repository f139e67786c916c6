"""Decimals keep their precision end to end (FHIR R4 datatypes.html#decimal,
json.html#primitive): "1.50" stays "1.50" through create, update, read, vread, history,
search, XML, transactions and PATCH, on SQLite and on PostgreSQL."""

from __future__ import annotations

import re
import time
import uuid

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.mappings.qr_builder import build_response

XML = "application/fhir+xml"
JSON = "application/fhir+json"
CODE_SYSTEM = "urn:test:decimal-precision"

# The precision cases of the job: trailing zeros, an exponent, more digits than a double.
TEXTS = ["1.50", "0.10", "100.000", "1e-2", "12345678901234567890.123"]


def observation(code: str, value: str, extra: str = "") -> bytes:
    """Observation JSON with ``value`` written literally (json.dumps would go through float)."""
    return (
        '{"resourceType":"Observation","status":"final",'
        f'"code":{{"coding":[{{"system":"{CODE_SYSTEM}","code":"{code}"}}]}},'
        f'"valueQuantity":{{"value":{value},"unit":"mg","system":"http://unitsofmeasure.org",'
        f'"code":"mg"}}{extra}}}'
    ).encode()


def created(fhir: httpx.Client, body: bytes) -> httpx.Response:
    response = fhir.post("/Observation", content=body, headers={"Content-Type": JSON})
    assert response.status_code == 201, response.text
    return response


def quantity_text(raw: bytes) -> str:
    """The valueQuantity.value exactly as the server wrote it."""
    found = re.search(rb'"valueQuantity":\s*\{[^}]*?"value":\s*([^,}\s]+)', raw)
    assert found, raw
    return found.group(1).decode()


@pytest.mark.parametrize("text", TEXTS)
def test_create_read_vread_history_search_keep_the_written_decimal(
    fhir: httpx.Client, text: str
) -> None:
    code = uuid.uuid4().hex
    response = created(fhir, observation(code, text))
    assert quantity_text(response.content) == text
    id = response.json()["id"]
    assert quantity_text(fhir.get(f"/Observation/{id}").content) == text
    assert quantity_text(fhir.get(f"/Observation/{id}/_history/1").content) == text
    assert quantity_text(fhir.get(f"/Observation/{id}/_history").content) == text
    found = fhir.get("/Observation", params={"code": f"{CODE_SYSTEM}|{code}"})
    assert quantity_text(found.content) == text
    pretty = fhir.get(f"/Observation/{id}", params={"_pretty": "true"}).content
    assert quantity_text(pretty) == text
    elements = fhir.get(f"/Observation/{id}", params={"_elements": "value"}).content
    assert quantity_text(elements) == text
    searched = fhir.get(
        "/Observation", params={"code": f"{CODE_SYSTEM}|{code}", "_elements": "value"}
    )
    assert quantity_text(searched.content) == text
    xml = fhir.get(f"/Observation/{id}", params={"_format": "xml"})
    assert xml.status_code == 200
    assert f'<value value="{text}"/>'.encode() in xml.content


@pytest.mark.parametrize("text", TEXTS)
def test_update_keeps_the_decimal_and_a_change_of_precision_is_a_new_version(
    fhir: httpx.Client, text: str
) -> None:
    code = uuid.uuid4().hex
    id = created(fhir, observation(code, "7.5")).json()["id"]
    body = observation(code, text).replace(b"{", f'{{"id":"{id}",'.encode(), 1)
    updated = fhir.put(f"/Observation/{id}", content=body, headers={"Content-Type": JSON})
    assert updated.status_code == 200, updated.text
    assert quantity_text(updated.content) == text
    assert updated.json()["meta"]["versionId"] == "2"
    # The same content again is no new version (http.html#update)...
    again = fhir.put(f"/Observation/{id}", content=body, headers={"Content-Type": JSON})
    assert again.json()["meta"]["versionId"] == "2"
    # ...but "1.5" and "1.50" differ in precision, so they are different content.
    body = observation(code, "7.50").replace(b"{", f'{{"id":"{id}",'.encode(), 1)
    third = fhir.put(f"/Observation/{id}", content=body, headers={"Content-Type": JSON})
    assert third.json()["meta"]["versionId"] == "3"
    assert quantity_text(fhir.get(f"/Observation/{id}/_history/2").content) == text
    assert quantity_text(fhir.get(f"/Observation/{id}/_history/1").content) == "7.5"


@pytest.mark.parametrize("text", TEXTS)
def test_xml_create_keeps_the_attribute_text(fhir: httpx.Client, text: str) -> None:
    document = (
        '<Observation xmlns="http://hl7.org/fhir"><status value="final"/>'
        f'<code><coding><system value="{CODE_SYSTEM}"/><code value="x"/></coding></code>'
        f'<valueQuantity><value value="{text}"/><unit value="mg"/></valueQuantity>'
        "</Observation>"
    ).encode()
    response = fhir.post("/Observation", content=document, headers={"Content-Type": XML})
    assert response.status_code == 201, response.text
    assert quantity_text(response.content) == text
    id = response.json()["id"]
    xml = fhir.get(f"/Observation/{id}", headers={"Accept": XML}).content
    assert f'<value value="{text}"/>'.encode() in xml


def test_transaction_bundle_keeps_each_decimal(fhir: httpx.Client) -> None:
    code = uuid.uuid4().hex
    request = '"request":{"method":"POST","url":"Observation"}'
    entries = ",".join(
        f'{{"fullUrl":"urn:uuid:{uuid.uuid4()}","resource":{observation(code, text).decode()},'
        f"{request}}}"
        for text in TEXTS
    )
    bundle = f'{{"resourceType":"Bundle","type":"transaction","entry":[{entries}]}}'
    response = fhir.post("", content=bundle.encode(), headers={"Content-Type": JSON})
    assert response.status_code == 200, response.text
    locations = [e["response"]["location"] for e in response.json()["entry"]]
    read = [quantity_text(fhir.get("/" + loc.split("/_history")[0]).content) for loc in locations]
    assert read == TEXTS
    # Batch too, with the representation returned in the response entries.
    batch = bundle.replace('"transaction"', '"batch"')
    prefer = {"Content-Type": JSON, "Prefer": "return=representation"}
    answered = fhir.post("", content=batch.encode(), headers=prefer)
    assert answered.status_code == 200, answered.text
    assert [
        quantity_text(m.group(0).encode())
        for m in re.finditer(r'"valueQuantity":\{"value":[^,}]+', answered.text)
    ] == TEXTS


def test_json_patch_and_fhirpath_patch_keep_decimals(fhir: httpx.Client) -> None:
    code = uuid.uuid4().hex
    id = created(fhir, observation(code, "1.50")).json()["id"]
    # A patch elsewhere leaves the stored 1.50 as it was.
    ops = b'[{"op":"add","path":"/issued","value":"2026-11-20T10:00:00Z"}]'
    patched = fhir.patch(
        f"/Observation/{id}", content=ops, headers={"Content-Type": "application/json-patch+json"}
    )
    assert patched.status_code == 200, patched.text
    assert quantity_text(patched.content) == "1.50"
    # RFC 6902 test: 1.5 and 1.50 are the same number; then the value is replaced.
    ops = (
        b'[{"op":"test","path":"/valueQuantity/value","value":1.5},'
        b'{"op":"replace","path":"/valueQuantity/value","value":2.50}]'
    )
    patched = fhir.patch(
        f"/Observation/{id}", content=ops, headers={"Content-Type": "application/json-patch+json"}
    )
    assert patched.status_code == 200, patched.text
    assert quantity_text(fhir.get(f"/Observation/{id}").content) == "2.50"
    parameters = (
        b'{"resourceType":"Parameters","parameter":[{"name":"operation","part":['
        b'{"name":"type","valueCode":"replace"},'
        b'{"name":"path","valueString":"Observation.valueQuantity.value"},'
        b'{"name":"value","valueDecimal":3.000}]}]}'
    )
    patched = fhir.patch(f"/Observation/{id}", content=parameters, headers={"Content-Type": JSON})
    assert patched.status_code == 200, patched.text
    assert quantity_text(fhir.get(f"/Observation/{id}").content) == "3.000"
    assert quantity_text(fhir.get(f"/Observation/{id}/_history/2").content) == "1.50"


@pytest.mark.parametrize(
    ("stored", "query", "found"),
    [
        # search.html#number: the search value's precision sets the range it stands for.
        ("1.50", "1.5", True),
        ("1.50", "1.50", True),
        ("1.50", "1.6", False),
        ("1.50", "gt1.4", True),
        ("1.50", "lt1.5", False),
        ("1.50", "ge1.50", True),
        ("0.10", "0.1", True),
        ("0.10", "0.1|http://unitsofmeasure.org|mg", True),
        ("100.000", "100", True),
        ("100.000", "1e2", True),
        ("1e-2", "0.01", True),
        ("1e-2", "lt0.02", True),
        ("1e-2", "10|http://unitsofmeasure.org|ug", True),  # UCUM canonical form
        # The index holds doubles: 20 digits are searchable to a double's precision.
        ("12345678901234567890.123", "gt12345678901234000000", True),
        ("12345678901234567890.123", "lt12345678901234000000", False),
    ],
)
def test_quantity_search_finds_stored_decimals(
    fhir: httpx.Client, stored: str, query: str, found: bool
) -> None:
    code = uuid.uuid4().hex
    id = created(fhir, observation(code, stored)).json()["id"]
    bundle = fhir.get(
        "/Observation", params={"code": f"{CODE_SYSTEM}|{code}", "value-quantity": query}
    )
    assert bundle.status_code == 200, bundle.text
    ids = [e["resource"]["id"] for e in bundle.json().get("entry", [])]
    assert ids == ([id] if found else [])


def test_validate_operation_accepts_precise_decimals(fhir: httpx.Client) -> None:
    response = fhir.post(
        "/Observation/$validate",
        content=observation("x", "12345678901234567890.123"),
        headers={"Content-Type": JSON},
    )
    assert response.status_code == 200, response.text
    assert response.json()["resourceType"] == "OperationOutcome"


def test_response_with_precise_decimals_is_still_scored(fhir: httpx.Client) -> None:
    patient = fhir.post("/Patient", json={"resourceType": "Patient", "gender": "female"}).json()
    answers = {**{f"phq-{i}": 2 for i in range(1, 9)}, **{f"pss-{i}": 2 for i in range(1, 11)}}
    response = build_response("selfback-mental-health", answers, rid="ignored")
    response.pop("id", None)
    response["subject"] = {"reference": f"Patient/{patient['id']}"}
    raw = httpx.Request("P", "/", json=response).content.decode()
    # An answer's own ordinalValue (extension-ordinalvalue.html) written with precision.
    ordinal = (
        '"valueCoding":{"extension":[{"url":'
        '"http://hl7.org/fhir/StructureDefinition/ordinalValue","valueDecimal":2.0}],'
    )
    raw = raw.replace('"valueCoding":{', ordinal, 1)
    raw = raw.replace('"valueDecimal":2.0', '"valueDecimal":2.00')
    posted = fhir.post(
        "/QuestionnaireResponse", content=raw.encode(), headers={"Content-Type": JSON}
    )
    assert posted.status_code == 201, posted.text
    assert b'"valueDecimal":2.00' in posted.content
    qr_id = posted.json()["id"]
    deadline = time.monotonic() + 30
    observations: list[dict[str, object]] = []
    while time.monotonic() < deadline and not observations:
        bundle = fhir.get(
            "/Observation", params={"derived-from": f"QuestionnaireResponse/{qr_id}"}
        ).json()
        observations = [e["resource"] for e in bundle.get("entry", [])]
        time.sleep(0.2)
    assert observations, "no score Observations appeared"
    assert b'"valueDecimal":2.00' in fhir.get(f"/QuestionnaireResponse/{qr_id}").content


# FHIR R4 datatypes.html#decimal lexical form; exponents kept within a double's range
# (a JSON number beyond it is refused with 400, as before). "-0" is the integer 0.
decimal_texts = st.from_regex(
    r"\A-?(0|[1-9][0-9]{0,24})(\.[0-9]{1,20})?([eE][+-]?[0-9]{1,2})?\Z", fullmatch=True
).filter(lambda text: text != "-0")  # read as the integer 0 (tests/formats/test_fhir_json.py)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(text=decimal_texts)
def test_any_decimal_text_round_trips_byte_for_byte(fhir: httpx.Client, text: str) -> None:
    body = (
        '{"resourceType":"Basic","code":{"text":"decimal"},'
        f'"extension":[{{"url":"urn:test:decimal","valueDecimal":{text}}}]}}'
    ).encode()
    response = fhir.post("/Basic", content=body, headers={"Content-Type": JSON})
    assert response.status_code == 201, response.text
    written = f'"valueDecimal":{text}}}'.encode()
    assert written in response.content
    read = fhir.get(f"/Basic/{response.json()['id']}")
    assert written in read.content
    xml = fhir.get(f"/Basic/{response.json()['id']}", params={"_format": "xml"}).content
    assert f'<valueDecimal value="{text}"/>'.encode() in xml
