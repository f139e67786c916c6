"""FHIR R4 http.html, interaction by interaction, against the real server over HTTP."""

from __future__ import annotations

import uuid

import httpx
import pytest

JSON = "application/fhir+json"


def patient(**extra: object) -> dict[str, object]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:test:mrn", "value": uuid.uuid4().hex}],
        "name": [{"family": "Nielsen", "given": ["Karen"]}],
        "gender": "female",
        "birthDate": "1970-04-02",
        **extra,
    }


def created(fhir: httpx.Client, resource: dict[str, object]) -> dict[str, object]:
    response = fhir.post(f"/{resource['resourceType']}", json=resource)
    assert response.status_code == 201, response.text
    return response.json()


def assert_outcome(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(JSON)
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"] and body["issue"][0]["severity"] in ("error", "fatal")
    return body


# -- create / read / vread -----------------------------------------------------------------


def test_create_assigns_id_version_and_answers_201_with_location_and_etag(
    fhir: httpx.Client,
) -> None:
    response = fhir.post("/Patient", json=patient(id="client-chosen"))
    assert response.status_code == 201
    body = response.json()
    assert body["id"] != "client-chosen"  # http.html#create: the server assigns the id
    assert body["meta"]["versionId"] == "1"
    assert body["meta"]["lastUpdated"].endswith("Z")
    assert response.headers["etag"] == 'W/"1"'
    assert response.headers["location"].endswith(f"/fhir/Patient/{body['id']}/_history/1")
    assert response.headers["content-type"] == "application/fhir+json; charset=utf-8"
    assert "last-modified" in response.headers


def test_read_returns_the_stored_resource_with_etag(fhir: httpx.Client) -> None:
    body = created(fhir, patient())
    response = fhir.get(f"/Patient/{body['id']}")
    assert response.status_code == 200
    assert response.json() == body
    assert response.headers["etag"] == 'W/"1"'


def test_read_unknown_is_404_and_unknown_type_is_404(fhir: httpx.Client) -> None:
    assert_outcome(fhir.get("/Patient/does-not-exist"), 404)
    assert_outcome(fhir.get("/NotAType/1"), 404)


def test_read_with_invalid_id_is_400(fhir: httpx.Client) -> None:
    assert_outcome(fhir.get("/Patient/" + "x" * 65), 400)
    assert_outcome(fhir.get("/Patient/bad_id!"), 400)


def test_vread_returns_each_version(fhir: httpx.Client) -> None:
    body = created(fhir, patient())
    updated = {**body, "gender": "male"}
    assert fhir.put(f"/Patient/{body['id']}", json=updated).status_code == 200
    v1 = fhir.get(f"/Patient/{body['id']}/_history/1").json()
    v2 = fhir.get(f"/Patient/{body['id']}/_history/2").json()
    assert v1["gender"] == "female" and v1["meta"]["versionId"] == "1"
    assert v2["gender"] == "male" and v2["meta"]["versionId"] == "2"
    assert_outcome(fhir.get(f"/Patient/{body['id']}/_history/3"), 404)


# -- update -------------------------------------------------------------------------------------


def test_update_creates_new_version(fhir: httpx.Client) -> None:
    body = created(fhir, patient())
    response = fhir.put(f"/Patient/{body['id']}", json={**body, "gender": "other"})
    assert response.status_code == 200
    assert response.json()["meta"]["versionId"] == "2"
    assert response.headers["etag"] == 'W/"2"'


def test_update_with_same_content_creates_no_version(fhir: httpx.Client) -> None:
    body = created(fhir, patient())
    response = fhir.put(f"/Patient/{body['id']}", json=body)
    assert response.status_code == 200
    assert response.json()["meta"]["versionId"] == "1"
    history = fhir.get(f"/Patient/{body['id']}/_history").json()
    assert len(history["entry"]) == 1


def test_update_to_a_new_id_creates_it(fhir: httpx.Client) -> None:
    id = f"pat-{uuid.uuid4().hex[:12]}"
    response = fhir.put(f"/Patient/{id}", json=patient(id=id))
    assert response.status_code == 201
    assert response.json()["id"] == id
    assert response.headers["location"].endswith(f"/Patient/{id}/_history/1")


@pytest.mark.parametrize(
    ("url_id", "body_id", "status"),
    [
        ("abc-1", "abc-2", 400),  # id mismatch (http.html#update)
        ("abc-1", None, 400),  # missing id in body
    ],
)
def test_update_id_rules(fhir: httpx.Client, url_id: str, body_id: str | None, status: int) -> None:
    resource = patient() if body_id is None else patient(id=body_id)
    assert_outcome(fhir.put(f"/Patient/{url_id}", json=resource), status)


def test_update_with_wrong_type_in_body_is_400(fhir: httpx.Client) -> None:
    resource = {"resourceType": "Observation", "id": "x1", "status": "final", "code": {"text": "t"}}
    assert_outcome(fhir.put("/Patient/x1", json=resource), 400)


def test_if_match_guards_updates(fhir: httpx.Client) -> None:
    body = created(fhir, patient())
    url = f"/Patient/{body['id']}"
    stale = fhir.put(url, json={**body, "gender": "male"}, headers={"If-Match": 'W/"9"'})
    assert_outcome(stale, 412)
    fresh = fhir.put(url, json={**body, "gender": "male"}, headers={"If-Match": 'W/"1"'})
    assert fresh.status_code == 200
    again = fhir.put(url, json={**body, "gender": "female"}, headers={"If-Match": 'W/"1"'})
    assert_outcome(again, 412)
    assert_outcome(fhir.put(url, json=body, headers={"If-Match": "garbage"}), 400)


# -- delete -------------------------------------------------------------------------------------


def test_delete_then_read_is_410_and_history_keeps_it(fhir: httpx.Client) -> None:
    body = created(fhir, patient())
    url = f"/Patient/{body['id']}"
    assert fhir.delete(url).status_code == 204
    assert_outcome(fhir.get(url), 410)
    history = fhir.get(f"{url}/_history").json()
    methods = [e["request"]["method"] for e in history["entry"]]
    assert methods == ["DELETE", "POST"]
    assert "resource" not in history["entry"][0]
    assert fhir.delete(url).status_code == 204  # deleting again is fine
    assert fhir.delete("/Patient/never-existed").status_code == 204


def test_update_after_delete_resurrects_with_next_version(fhir: httpx.Client) -> None:
    body = created(fhir, patient())
    url = f"/Patient/{body['id']}"
    fhir.delete(url)
    response = fhir.put(url, json=body)
    assert response.status_code == 201
    assert response.json()["meta"]["versionId"] == "3"


# -- conditional interactions ----------------------------------------------------------------------


def test_conditional_create(fhir: httpx.Client) -> None:
    resource = patient()
    ident = resource["identifier"][0]  # type: ignore[index]
    criteria = f"identifier={ident['system']}|{ident['value']}"
    first = fhir.post("/Patient", json=resource, headers={"If-None-Exist": criteria})
    assert first.status_code == 201
    second = fhir.post("/Patient", json=resource, headers={"If-None-Exist": criteria})
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    fhir.post("/Patient", json=resource)  # now two match
    assert_outcome(fhir.post("/Patient", json=resource, headers={"If-None-Exist": criteria}), 412)


def test_conditional_create_with_unknown_parameter_is_refused(fhir: httpx.Client) -> None:
    response = fhir.post("/Patient", json=patient(), headers={"If-None-Exist": "no-such-param=1"})
    assert_outcome(response, 400)


def test_conditional_update(fhir: httpx.Client) -> None:
    resource = patient()
    ident = resource["identifier"][0]  # type: ignore[index]
    criteria = f"identifier={ident['system']}|{ident['value']}"
    made = fhir.put(f"/Patient?{criteria}", json=resource)
    assert made.status_code == 201
    changed = fhir.put(f"/Patient?{criteria}", json={**resource, "gender": "male"})
    assert changed.status_code == 200
    assert changed.json()["id"] == made.json()["id"]
    assert changed.json()["meta"]["versionId"] == "2"
    fhir.post("/Patient", json=resource)
    assert_outcome(fhir.put(f"/Patient?{criteria}", json=resource), 412)


def test_conditional_delete(fhir: httpx.Client) -> None:
    resource = patient()
    ident = resource["identifier"][0]  # type: ignore[index]
    criteria = f"identifier={ident['system']}|{ident['value']}"
    body = created(fhir, resource)
    assert fhir.delete(f"/Patient?{criteria}").status_code == 204
    assert_outcome(fhir.get(f"/Patient/{body['id']}"), 410)
    assert fhir.delete(f"/Patient?{criteria}").status_code == 204  # none left: fine
    created(fhir, resource)
    created(fhir, resource)
    assert_outcome(fhir.delete(f"/Patient?{criteria}"), 412)


def test_conditional_read_if_none_match_and_if_modified_since(fhir: httpx.Client) -> None:
    body = created(fhir, patient())
    url = f"/Patient/{body['id']}"
    assert fhir.get(url, headers={"If-None-Match": 'W/"1"'}).status_code == 304
    assert fhir.get(url, headers={"If-None-Match": 'W/"2"'}).status_code == 200
    last_modified = fhir.get(url).headers["last-modified"]
    assert fhir.get(url, headers={"If-Modified-Since": last_modified}).status_code == 304
    old = "Tue, 01 Jan 2019 00:00:00 GMT"
    assert fhir.get(url, headers={"If-Modified-Since": old}).status_code == 200


# -- patch --------------------------------------------------------------------------------------------


def test_json_patch(fhir: httpx.Client) -> None:
    body = created(fhir, patient())
    ops = [
        {"op": "replace", "path": "/gender", "value": "male"},
        {"op": "add", "path": "/active", "value": True},
    ]
    response = fhir.patch(
        f"/Patient/{body['id']}",
        content=httpx.Request("P", "/", json=ops).content,
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["gender"] == "male" and response.json()["active"] is True
    assert response.json()["meta"]["versionId"] == "2"


def test_json_patch_failing_test_op_is_422_and_changes_nothing(fhir: httpx.Client) -> None:
    body = created(fhir, patient())
    ops = [
        {"op": "test", "path": "/gender", "value": "male"},
        {"op": "replace", "path": "/gender", "value": "other"},
    ]
    response = fhir.patch(
        f"/Patient/{body['id']}",
        content=httpx.Request("P", "/", json=ops).content,
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert_outcome(response, 422)
    assert fhir.get(f"/Patient/{body['id']}").json()["meta"]["versionId"] == "1"


def test_fhirpath_patch(fhir: httpx.Client) -> None:
    body = created(fhir, patient())
    parameters = {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "operation",
                "part": [
                    {"name": "type", "valueCode": "replace"},
                    {"name": "path", "valueString": "Patient.birthDate"},
                    {"name": "value", "valueDate": "1971-05-03"},
                ],
            }
        ],
    }
    response = fhir.patch(f"/Patient/{body['id']}", json=parameters, headers={"Content-Type": JSON})
    assert response.status_code == 200, response.text
    assert response.json()["birthDate"] == "1971-05-03"


def test_patch_that_breaks_the_resource_is_refused(fhir: httpx.Client) -> None:
    body = created(fhir, patient())
    ops = [{"op": "replace", "path": "/gender", "value": 12}]
    response = fhir.patch(
        f"/Patient/{body['id']}",
        content=httpx.Request("P", "/", json=ops).content,
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert response.status_code in (400, 422)
    assert fhir.get(f"/Patient/{body['id']}").json()["gender"] == "female"


# -- history ------------------------------------------------------------------------------------------


def test_history_levels_since_count_and_paging(fhir: httpx.Client) -> None:
    body = created(fhir, patient())
    url = f"/Patient/{body['id']}"
    for gender in ("male", "other", "unknown"):
        fhir.put(url, json={**body, "gender": gender})
    instance = fhir.get(f"{url}/_history").json()
    assert instance["type"] == "history"
    assert [e["resource"]["meta"]["versionId"] for e in instance["entry"]] == ["4", "3", "2", "1"]
    assert instance["entry"][0]["request"] == {"method": "PUT", "url": f"Patient/{body['id']}"}

    page = fhir.get(f"{url}/_history", params={"_count": 2}).json()
    assert [e["resource"]["meta"]["versionId"] for e in page["entry"]] == ["4", "3"]
    next_url = next(link["url"] for link in page["link"] if link["relation"] == "next")
    page2 = httpx.get(next_url).json()
    assert [e["resource"]["meta"]["versionId"] for e in page2["entry"]] == ["2", "1"]

    v3_time = instance["entry"][1]["resource"]["meta"]["lastUpdated"]
    since = fhir.get(f"{url}/_history", params={"_since": v3_time}).json()
    assert [e["resource"]["meta"]["versionId"] for e in since["entry"]] == ["4", "3"]
    at = fhir.get(f"{url}/_history", params={"_at": v3_time}).json()
    assert "3" in [e["resource"]["meta"]["versionId"] for e in at["entry"]]

    type_level = fhir.get("/Patient/_history", params={"_count": 5}).json()
    assert type_level["type"] == "history" and len(type_level["entry"]) == 5
    assert all(e["fullUrl"].split("/fhir/")[1].startswith("Patient/") for e in type_level["entry"])
    system = fhir.get("/_history", params={"_count": 3}).json()
    assert len(system["entry"]) == 3


def test_history_rejects_tampered_cursor_and_bad_dates(fhir: httpx.Client) -> None:
    assert_outcome(fhir.get("/Patient/_history", params={"_cursor": "AAAAtampered"}), 400)
    assert_outcome(fhir.get("/Patient/_history", params={"_since": "yesterday"}), 400)
    assert_outcome(fhir.get("/Patient/_history", params={"_count": "-1"}), 400)


def test_history_of_unknown_instance_is_404(fhir: httpx.Client) -> None:
    assert_outcome(fhir.get("/Patient/nobody-here/_history"), 404)


# -- capabilities -----------------------------------------------------------------------------------


def test_capability_statement_is_truthful(fhir: httpx.Client) -> None:
    statement = fhir.get("/metadata").json()
    assert statement["resourceType"] == "CapabilityStatement"
    assert statement["fhirVersion"] == "4.0.1"
    assert statement["kind"] == "instance"
    assert set(statement["format"]) >= {"application/fhir+json", "application/fhir+xml"}
    types = {r["type"]: r for r in statement["rest"][0]["resource"]}
    assert {"Patient", "Observation", "QuestionnaireResponse", "CarePlan", "Consent"} <= set(types)
    codes = {i["code"] for i in types["Patient"]["interaction"]}
    assert codes >= {
        "read",
        "vread",
        "update",
        "patch",
        "delete",
        "history-instance",
        "create",
        "search-type",
    }
    assert any(p["name"] == "identifier" for p in types["Patient"]["searchParam"])
