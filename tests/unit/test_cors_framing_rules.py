"""The browser rules as pure functions: which CORS rule a path gets, what a preflight
answers, which origins may call or frame, and the OpenAPI table covering every route
(docs/AUTH.md "Browsers: CORS and framing")."""

from __future__ import annotations

import orjson
import pytest

from fhir_server.api.openapi import INTERACTIONS, openapi_document, openapi_path
from fhir_server.api.routes import ROUTES
from fhir_server.auth.framing import framing_headers
from fhir_server.auth.origins import origin_sets
from fhir_server.auth.routes import ROUTES as AUTH_ROUTES
from fhir_server.config import parse_origins
from fhir_server.cors import PUBLIC, REGISTERED, _add_vary_origin, policy_for, preflight_headers
from fhir_server.export.routes import EXPORT_ROUTES


@pytest.mark.parametrize(
    ("path", "rule"),
    [
        ("/fhir/metadata", PUBLIC),
        ("/fhir/.well-known/smart-configuration", PUBLIC),
        ("/fhir/.well-known/openid-configuration", PUBLIC),
        ("/.well-known/openid-configuration", PUBLIC),
        ("/auth/jwks", PUBLIC),
        ("/fhir", REGISTERED),
        ("/fhir/Patient/1", REGISTERED),
        ("/fhir/Patient/1/$everything", REGISTERED),
        ("/auth/token", REGISTERED),
        ("/auth/revoke", REGISTERED),
        ("/auth/authorize", None),  # navigated to, never fetched
        ("/healthz", None),
        ("/openapi.json", None),
        ("/fhirx", None),
    ],
)
def test_each_path_falls_under_one_rule(path: str, rule: str | None) -> None:
    assert policy_for(path) == rule


def test_a_registered_preflight_echoes_the_origin_and_lists_the_smart_headers() -> None:
    headers = preflight_headers(REGISTERED, "https://app.example", "/fhir/Patient")
    assert headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert headers["Vary"] == "Origin"
    allowed = {h.strip().lower() for h in headers["Access-Control-Allow-Headers"].split(",")}
    assert {
        "authorization",
        "content-type",
        "if-match",
        "if-none-exist",
        "if-none-match",
        "prefer",
    } <= allowed
    assert "PATCH" in headers["Access-Control-Allow-Methods"]
    assert "Access-Control-Allow-Credentials" not in headers  # bearer tokens, no cookies


def test_a_public_preflight_allows_any_origin_without_credentials() -> None:
    headers = preflight_headers(PUBLIC, "https://anyone.example", "/fhir/metadata")
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert "Vary" not in headers


def test_cors_origins_are_every_enabled_clients_and_frame_ancestors_the_ehrs() -> None:
    rows = [
        ('["https://app.example"]', "launch/patient patient/*.rs", False),
        ('["https://ehr.example"]', "system/*.rs __ehr-launch", False),
        ('["https://gone.example"]', "system/*.rs __ehr-launch", True),  # disabled
        ("[]", "system/*.rs", False),
    ]
    sets = origin_sets(rows, ("https://portal.example",))
    assert sets.cors == {"https://app.example", "https://ehr.example"}
    assert sets.frame_ancestors == ("https://ehr.example", "https://portal.example")


def test_no_frame_ancestors_means_no_framing_at_all() -> None:
    headers = framing_headers(())
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Content-Security-Policy"].endswith("frame-ancestors 'none'")


def test_frame_ancestors_replace_x_frame_options_rather_than_contradict_it() -> None:
    headers = framing_headers(("https://ehr.example",))
    assert "X-Frame-Options" not in headers
    assert headers["Content-Security-Policy"].endswith("frame-ancestors https://ehr.example")
    assert "default-src 'none'" in headers["Content-Security-Policy"]


@pytest.mark.parametrize(
    "bad", ["https://ehr.example/", "https://ehr.example/path", "*", "ehr.example", "ftp://x.y"]
)
def test_configured_frame_ancestors_must_be_exact_origins(bad: str) -> None:
    with pytest.raises(ValueError, match="not an origin"):
        parse_origins(bad, "SELFBACK_FRAME_ANCESTORS")


def test_configured_frame_ancestors_are_space_or_comma_separated() -> None:
    assert parse_origins("https://a.example, https://b.example:8443", "X") == (
        "https://a.example",
        "https://b.example:8443",
    )


def test_openapi_describes_every_route_the_server_registers() -> None:
    registered = {
        (openapi_path(path), method)
        for path, methods, _ in [*ROUTES, *EXPORT_ROUTES]
        for method in methods
    }
    registered |= {
        (openapi_path(route.path), method)
        for route in AUTH_ROUTES
        for method in route.methods - {"HEAD"}
    }
    assert registered - set(INTERACTIONS) == set()
    assert set(INTERACTIONS) - registered == set()  # and nothing that is not served


def test_openapi_document_is_json_with_unique_operation_ids() -> None:
    document = orjson.loads(orjson.dumps(openapi_document()))
    assert document["openapi"].startswith("3.1")
    ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))
    instance = document["paths"]["/fhir/{type}/{id}"]
    assert set(instance) == {"get", "put", "patch", "delete"}
    names = {p.get("name") for p in instance["get"]["parameters"]}
    assert {"type", "id", "If-None-Match"} <= names


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ([], [(b"vary", b"Origin")]),
        ([(b"vary", b"Accept")], [(b"vary", b"Accept, Origin")]),
        ([(b"Vary", b"Accept, Origin")], [(b"Vary", b"Accept, Origin")]),
        ([(b"vary", b"*")], [(b"vary", b"*")]),
    ],
)
def test_vary_origin_is_added_once_beside_what_the_route_varies_on(
    before: list[tuple[bytes, bytes]], after: list[tuple[bytes, bytes]]
) -> None:
    headers = list(before)
    _add_vary_origin(headers)
    assert headers == after
