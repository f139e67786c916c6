"""/openapi.json describes the FHIR routes the server serves (issue 10, item 7), and /docs
shows it."""

from __future__ import annotations

import httpx

from tests.conftest import RunningServer


def test_openapi_json_lists_the_fhir_interactions(server: RunningServer) -> None:
    response = httpx.get(server.url + "/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.1")
    paths = document["paths"]
    assert set(paths["/fhir/{type}/{id}"]) == {"get", "put", "patch", "delete"}
    assert set(paths["/fhir/{type}"]) == {"get", "post", "put", "patch", "delete"}
    assert paths["/fhir/{type}/{id}/_history/{vid}"]["get"]["operationId"] == "vread"
    assert paths["/fhir/metadata"]["get"]["security"] == []
    assert "/fhir/{type}/{id}/${operation}" in paths
    assert paths["/auth/token"]["post"]["tags"] == ["SMART"]


def test_docs_page_loads_that_document(server: RunningServer) -> None:
    response = httpx.get(server.url + "/docs")
    assert response.status_code == 200
    assert "/openapi.json" in response.text
