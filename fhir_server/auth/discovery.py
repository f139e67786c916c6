"""Discovery documents: SMART configuration, OpenID configuration, CapabilityStatement security.

Pure functions of the FHIR base URL. Every capability listed here is honoured (listing
one makes its behaviour a SHALL, SAL-05); every URL is absolute (SAL-01).
"""

from __future__ import annotations

from typing import Any

from fhir_server.auth.policy import ACTIVATION_SCOPE, EHR_LAUNCH_SCOPE
from fhir_server.auth.urls import auth_base

CAPABILITIES = [
    "launch-ehr",
    "launch-standalone",
    "authorize-post",
    "client-public",
    "client-confidential-symmetric",
    "client-confidential-asymmetric",
    "sso-openid-connect",
    "context-banner",
    "context-style",
    "context-ehr-patient",
    "context-ehr-encounter",
    "context-standalone-patient",
    "permission-offline",
    "permission-online",
    "permission-patient",
    "permission-user",
    "permission-v1",
    "permission-v2",
]

SCOPES_SUPPORTED = [
    "openid",
    "fhirUser",
    "profile",
    "launch",
    "launch/patient",
    "launch/encounter",
    "offline_access",
    "online_access",
    "patient/*.cruds",
    "patient/*.rs",
    "patient/*.read",
    "patient/*.write",
    "patient/*.*",
    "user/*.cruds",
    "user/*.rs",
    "user/*.read",
    "user/*.write",
    "user/*.*",
    "system/*.cruds",
    "system/*.rs",
    "system/*.read",
    "system/*.write",
    "system/*.*",
    EHR_LAUNCH_SCOPE,
    ACTIVATION_SCOPE,
]

AUTH_METHODS = ["none", "client_secret_basic", "private_key_jwt"]
ASSERTION_ALGS = ["RS384", "ES384"]
GRANT_TYPES = ["authorization_code", "refresh_token", "client_credentials"]
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"


def endpoints(fhir_base: str) -> dict[str, str]:
    auth = auth_base(fhir_base)
    return {
        "authorization_endpoint": f"{auth}/authorize",
        "token_endpoint": f"{auth}/token",
        "introspection_endpoint": f"{auth}/introspect",
        "revocation_endpoint": f"{auth}/revoke",
        "jwks_uri": f"{auth}/jwks",
    }


def smart_configuration(fhir_base: str) -> dict[str, Any]:
    """``{base}/.well-known/smart-configuration`` (SAL-01..05, INF-D1..D3)."""
    return {
        "issuer": fhir_base,
        **endpoints(fhir_base),
        "grant_types_supported": GRANT_TYPES,
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGS,
        "scopes_supported": SCOPES_SUPPORTED,
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "capabilities": CAPABILITIES,
    }


def openid_configuration(fhir_base: str) -> dict[str, Any]:
    """``{issuer}/.well-known/openid-configuration`` (SAL-50, INF-O2)."""
    return {
        "issuer": fhir_base,
        **endpoints(fhir_base),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": SCOPES_SUPPORTED,
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGS,
        "grant_types_supported": GRANT_TYPES,
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "fhirUser"],
        "ui_locales_supported": ["en", "da"],
        "request_parameter_supported": False,
    }


def capability_security(fhir_base: str) -> dict[str, Any]:
    """``CapabilityStatement.rest[0].security``: SMART-on-FHIR plus the legacy
    ``oauth-uris`` extension, which the Python fhirclient reads (SAL-06)."""
    urls = endpoints(fhir_base)
    return {
        "extension": [
            {
                "url": OAUTH_URIS,
                "extension": [
                    {"url": "authorize", "valueUri": urls["authorization_endpoint"]},
                    {"url": "token", "valueUri": urls["token_endpoint"]},
                    {"url": "introspect", "valueUri": urls["introspection_endpoint"]},
                    {"url": "revoke", "valueUri": urls["revocation_endpoint"]},
                ],
            }
        ],
        "cors": True,
        "service": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                        "code": "SMART-on-FHIR",
                    }
                ],
                "text": "OAuth2 using SMART-on-FHIR profile (see http://docs.smarthealthit.org)",
            }
        ],
    }
