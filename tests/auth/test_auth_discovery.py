"""Discovery: SMART configuration, OpenID configuration, JWKS and the CapabilityStatement's
oauth-uris (SAL-01..06, SAL-50, INF-D1..D4, INF-O2, INF-O3)."""

from __future__ import annotations

import httpx
import pytest

from fhir_server.access.scopes import parse
from tests.auth.conftest import SmartEnv

pytestmark = pytest.mark.db


@pytest.mark.parametrize(
    "accept", ["application/json", "application/fhir+json", "text/html", "*/*"]
)
def test_INF_D1_smart_configuration_is_json_whatever_the_accept_header(
    smart: SmartEnv, accept: str
) -> None:
    response = httpx.get(
        smart.fhir + "/.well-known/smart-configuration", headers={"Accept": accept}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    response.json()


def test_INF_D2_D3_SAL_02_to_05_required_fields(smart: SmartEnv) -> None:
    config = httpx.get(smart.fhir + "/.well-known/smart-configuration").json()
    for name in (
        "authorization_endpoint",
        "token_endpoint",
        "introspection_endpoint",
        "revocation_endpoint",
        "jwks_uri",
    ):
        assert config[name].startswith(smart.url + "/auth/"), name  # SAL-01: absolute
    assert {"authorization_code", "client_credentials"} <= set(config["grant_types_supported"])
    assert config["code_challenge_methods_supported"] == ["S256"]  # never plain
    assert isinstance(config["capabilities"], list) and all(
        isinstance(c, str) for c in config["capabilities"]
    )
    assert config["issuer"] == smart.fhir  # sso-openid-connect is listed, so issuer and jwks_uri
    assert "sso-openid-connect" in config["capabilities"]
    # SAL-04
    assert "private_key_jwt" in config["token_endpoint_auth_methods_supported"]
    assert {"RS384", "ES384"} <= set(config["token_endpoint_auth_signing_alg_values_supported"])
    assert config["response_types_supported"] == ["code"]
    # SAL-03: every listed scope parses (and so works)
    for scope in config["scopes_supported"]:
        assert parse(scope), scope


def test_INF_D4_discovery_and_jwks_allow_any_origin(smart: SmartEnv) -> None:
    for path in (
        "/fhir/.well-known/smart-configuration",
        "/fhir/.well-known/openid-configuration",
        "/auth/jwks",
    ):
        response = httpx.get(smart.url + path, headers={"Origin": "https://any.example"})
        assert response.headers["access-control-allow-origin"] == "*", path


@pytest.mark.parametrize(
    "where",
    ["{issuer}/.well-known/openid-configuration", "{root}/.well-known/openid-configuration"],
)
def test_INF_O2_openid_configuration(smart: SmartEnv, where: str) -> None:
    issuer = httpx.get(smart.fhir + "/.well-known/smart-configuration").json()["issuer"]
    response = httpx.get(where.format(issuer=issuer, root=smart.url))
    assert response.status_code == 200 and response.headers["content-type"].startswith(
        "application/json"
    )
    config = response.json()
    for name in (
        "issuer",
        "authorization_endpoint",
        "token_endpoint",
        "jwks_uri",
        "response_types_supported",
        "subject_types_supported",
    ):
        assert config[name], name
    assert config["issuer"] == issuer
    assert "RS256" in config["id_token_signing_alg_values_supported"]


def test_INF_O3_SAL_50_jwks_has_bare_rsa_public_keys(smart: SmartEnv) -> None:
    keys = httpx.get(smart.url + "/auth/jwks").json()["keys"]
    rsa = [k for k in keys if k["kty"] == "RSA"]
    assert rsa
    for key in keys:
        assert key["kid"] and key["alg"] == "RS256" and key["use"] == "sig"
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key)  # public parts only


def test_SAL_06_capability_statement_names_the_oauth_uris(smart: SmartEnv) -> None:
    statement = httpx.get(
        smart.fhir + "/metadata", headers={"Accept": "application/fhir+json"}
    ).json()
    security = statement["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    (oauth,) = [
        e
        for e in security["extension"]
        if e["url"] == "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
    ]
    uris = {e["url"]: e["valueUri"] for e in oauth["extension"]}
    assert uris["authorize"] == smart.url + "/auth/authorize"
    assert uris["token"] == smart.url + "/auth/token"
