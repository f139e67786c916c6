"""The OpenAPI 3.1 description served at ``/openapi.json`` (and shown by ``/docs``).

The FHIR routes are plain Starlette routes (fhir_server/app.py), which FastAPI's generator
does not see, so this document is built by hand from one table, :data:`INTERACTIONS`,
keyed by the very (path, method) pairs the routers register; a test checks that every
registered route is described. FHIR's own description of the API is the
CapabilityStatement at ``/fhir/metadata`` (FHIR R4 capabilitystatement.html); this is the
HTTP view for tooling that speaks OpenAPI. Resource bodies are FHIR R4 JSON (or XML with
``_format``/``Accept``), not repeated here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

R4 = "https://hl7.org/fhir/R4/"
FHIR_JSON = "application/fhir+json"


@dataclass(frozen=True)
class Interaction:
    operation_id: str
    summary: str
    spec: str  # the FHIR R4 (or SMART / OAuth) page that defines it
    body: str | None = None  # media type of a request body
    success: str = "200"
    public: bool = False  # needs no bearer token
    search: bool = False  # takes search parameters in the query
    tag: str = "FHIR"


_SEARCH = "http.html#search"
INTERACTIONS: dict[tuple[str, str], Interaction] = {
    ("/fhir/metadata", "GET"): Interaction(
        "capabilities", "The CapabilityStatement", "http.html#capabilities", public=True
    ),
    ("/fhir", "GET"): Interaction("search-system", "Search all types", _SEARCH, search=True),
    ("/fhir", "POST"): Interaction(
        "batch-transaction", "A batch or transaction Bundle", "http.html#transaction", FHIR_JSON
    ),
    ("/fhir/_history", "GET"): Interaction(
        "history-system", "History of every resource", "http.html#history"
    ),
    ("/fhir/{type}", "GET"): Interaction("search-type", "Search one type", _SEARCH, search=True),
    ("/fhir/{type}", "POST"): Interaction(
        "create",
        "Create (conditional with If-None-Exist)",
        "http.html#create",
        FHIR_JSON,
        success="201",
    ),
    ("/fhir/{type}", "PUT"): Interaction(
        "update-conditional", "Conditional update", "http.html#cond-update", FHIR_JSON, search=True
    ),
    ("/fhir/{type}", "PATCH"): Interaction(
        "patch-conditional",
        "Conditional patch",
        "http.html#patch",
        "application/json-patch+json",
        search=True,
    ),
    ("/fhir/{type}", "DELETE"): Interaction(
        "delete-conditional", "Conditional delete", "http.html#cond-delete", search=True
    ),
    ("/fhir/{type}/_search", "POST"): Interaction(
        "search-type-post",
        "Search one type, parameters in a form body",
        _SEARCH,
        "application/x-www-form-urlencoded",
    ),
    ("/fhir/{type}/_history", "GET"): Interaction(
        "history-type", "History of one type", "http.html#history"
    ),
    ("/fhir/{type}/{id}", "GET"): Interaction("read", "Read", "http.html#read"),
    ("/fhir/{type}/{id}", "PUT"): Interaction(
        "update", "Update (or create with a client id)", "http.html#update", FHIR_JSON
    ),
    ("/fhir/{type}/{id}", "PATCH"): Interaction(
        "patch",
        "Patch (JSON Patch or FHIRPath Patch)",
        "http.html#patch",
        "application/json-patch+json",
    ),
    ("/fhir/{type}/{id}", "DELETE"): Interaction("delete", "Delete", "http.html#delete"),
    ("/fhir/{type}/{id}/_history", "GET"): Interaction(
        "history-instance", "History of one resource", "http.html#history"
    ),
    ("/fhir/{type}/{id}/_history/{vid}", "GET"): Interaction(
        "vread", "Read one version", "http.html#vread"
    ),
    ("/fhir/{compartment}/{compartmentId}/{type}", "GET"): Interaction(
        "search-compartment", "Search in a compartment", "http.html#vsearch", search=True
    ),
    ("/fhir/{compartment}/{compartmentId}/{type}/_search", "POST"): Interaction(
        "search-compartment-post",
        "Search in a compartment, parameters in a form body",
        "http.html#vsearch",
        "application/x-www-form-urlencoded",
    ),
    ("/fhir/${operation}", "GET"): Interaction(
        "operation-system", "A system-level operation", "operations.html"
    ),
    ("/fhir/${operation}", "POST"): Interaction(
        "operation-system-post", "A system-level operation", "operations.html", FHIR_JSON
    ),
    ("/fhir/{type}/${operation}", "GET"): Interaction(
        "operation-type", "A type-level operation", "operations.html"
    ),
    ("/fhir/{type}/${operation}", "POST"): Interaction(
        "operation-type-post", "A type-level operation", "operations.html", FHIR_JSON
    ),
    ("/fhir/{type}/{id}/${operation}", "GET"): Interaction(
        "operation-instance", "An instance-level operation", "operations.html"
    ),
    ("/fhir/{type}/{id}/${operation}", "POST"): Interaction(
        "operation-instance-post", "An instance-level operation", "operations.html", FHIR_JSON
    ),
    ("/fhir/$reindex", "POST"): Interaction(
        "reindex-system", "Rebuild the search index of every type", "operations.html"
    ),
    ("/fhir/{type}/$reindex", "POST"): Interaction(
        "reindex-type", "Rebuild the search index of one type", "operations.html"
    ),
    # Bulk Data Access (FHIR Bulk Data IG 2.0, docs/BULK_EXPORT.md)
    ("/fhir/$export", "GET"): Interaction(
        "export-system", "Bulk export of the system (kick-off)", "bulk", success="202"
    ),
    ("/fhir/$export", "POST"): Interaction(
        "export-system-post", "Bulk export of the system (kick-off)", "bulk", FHIR_JSON, "202"
    ),
    ("/fhir/Patient/$export", "GET"): Interaction(
        "export-patients", "Bulk export of every patient (kick-off)", "bulk", success="202"
    ),
    ("/fhir/Patient/$export", "POST"): Interaction(
        "export-patients-post", "Bulk export of every patient (kick-off)", "bulk", FHIR_JSON, "202"
    ),
    ("/fhir/Group/{id}/$export", "GET"): Interaction(
        "export-group", "Bulk export of a Group's members (kick-off)", "bulk", success="202"
    ),
    ("/fhir/Group/{id}/$export", "POST"): Interaction(
        "export-group-post", "Bulk export of a Group's members (kick-off)", "bulk", FHIR_JSON, "202"
    ),
    ("/fhir/$export-status/{jobId}", "GET"): Interaction(
        "export-status", "Status of a bulk export (202 while running)", "bulk"
    ),
    ("/fhir/$export-status/{jobId}", "DELETE"): Interaction(
        "export-cancel", "Cancel a bulk export", "bulk", success="202"
    ),
    ("/fhir/$export-file/{jobId}/{name}", "GET"): Interaction(
        "export-file", "One NDJSON file of a finished export", "bulk"
    ),
    # The SMART authorization server (SMART App Launch 2.2, docs/AUTH.md)
    ("/auth/authorize", "GET"): Interaction(
        "authorize", "Sign-in and consent pages (HTML)", "smart", public=True, tag="SMART"
    ),
    ("/auth/authorize", "POST"): Interaction(
        "authorize-post",
        "Sign-in and consent pages (HTML)",
        "smart",
        "application/x-www-form-urlencoded",
        public=True,
        tag="SMART",
    ),
    ("/auth/token", "POST"): Interaction(
        "token",
        "Token endpoint (authorization_code, refresh_token, client_credentials)",
        "smart",
        "application/x-www-form-urlencoded",
        public=True,
        tag="SMART",
    ),
    ("/auth/introspect", "POST"): Interaction(
        "introspect",
        "Token introspection (RFC 7662)",
        "smart",
        "application/x-www-form-urlencoded",
        public=True,
        tag="SMART",
    ),
    ("/auth/revoke", "POST"): Interaction(
        "revoke",
        "Token revocation (RFC 7009)",
        "smart",
        "application/x-www-form-urlencoded",
        public=True,
        tag="SMART",
    ),
    ("/auth/jwks", "GET"): Interaction(
        "jwks", "The server's public signing keys", "smart", public=True, tag="SMART"
    ),
    ("/auth/smart-style.json", "GET"): Interaction(
        "smart-style", "The style smart_style_url names", "smart", public=True, tag="SMART"
    ),
    ("/auth/launch", "POST"): Interaction(
        "launch",
        "An EHR creates a launch context (scope __ehr-launch)",
        "smart",
        "application/json",
        success="201",
        tag="SMART",
    ),
    ("/fhir/Patient/{id}/$activation-code", "POST"): Interaction(
        "activation-code", "A patient's activation code (scope __activation-code)", "smart"
    ),
    ("/fhir/.well-known/smart-configuration", "GET"): Interaction(
        "smart-configuration", "SMART configuration", "smart", public=True, tag="SMART"
    ),
    ("/fhir/.well-known/openid-configuration", "GET"): Interaction(
        "openid-configuration", "OpenID Connect discovery", "smart", public=True, tag="SMART"
    ),
    ("/.well-known/openid-configuration", "GET"): Interaction(
        "openid-configuration-root", "OpenID Connect discovery", "smart", public=True, tag="SMART"
    ),
}

_SPEC_BASE = {
    "bulk": "https://hl7.org/fhir/uv/bulkdata/STU2/export.html",
    "smart": "https://hl7.org/fhir/smart-app-launch/STU2.2/",
}
# Starlette's path parameter names -> the names FHIR's documentation uses.
_RENAME = {
    "rtype": "type",
    "op": "operation",
    "cid": "compartmentId",
    "ctype": "type",
    "job_id": "jobId",
}
_PARAMETER = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")


def openapi_path(route_path: str) -> str:
    """A router path as OpenAPI writes it: ``/fhir/{rtype}/{id}`` -> ``/fhir/{type}/{id}``;
    the trailing-slash twin of the base (``/fhir/``) is the base."""
    if route_path == "/fhir/":
        return "/fhir"
    return _PARAMETER.sub(lambda m: "{" + _RENAME.get(m.group(1), m.group(1)) + "}", route_path)


_PARAMETERS: dict[str, dict[str, Any]] = {
    "type": {"description": "A resource type the CapabilityStatement lists", "example": "Patient"},
    "id": {"description": "The resource's logical id (FHIR R4 datatypes.html#id)"},
    "vid": {"description": 'A version id (the number in ETag W/"n")'},
    "operation": {"description": "The operation's name without '$'", "example": "validate"},
    "compartment": {"description": "A compartment type", "example": "Patient"},
    "compartmentId": {"description": "The id of the compartment's resource"},
    "jobId": {"description": "The export job the kick-off's Content-Location named"},
    "name": {"description": "A file name from the export's completion manifest"},
}
_CONDITIONAL_HEADERS = {
    "create": ("If-None-Exist",),
    "update": ("If-Match",),
    "patch": ("If-Match",),
    "read": ("If-None-Match", "If-Modified-Since"),
    "delete": ("If-Match",),
}


def _operation(path: str, method: str, interaction: Interaction) -> dict[str, Any]:
    spec = _SPEC_BASE.get(interaction.spec, R4 + interaction.spec)
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}, **info}
        for name, info in _PARAMETERS.items()
        if "{" + name + "}" in path
    ]
    for header in _CONDITIONAL_HEADERS.get(interaction.operation_id, ()):
        parameters.append({"name": header, "in": "header", "schema": {"type": "string"}})
    if interaction.tag == "FHIR":
        parameters.append({"$ref": "#/components/parameters/format"})
    if interaction.search:
        parameters.append({"$ref": "#/components/parameters/searchParameters"})
    if method in ("POST", "PUT", "PATCH") and interaction.tag == "FHIR":
        parameters.append({"$ref": "#/components/parameters/prefer"})
    operation: dict[str, Any] = {
        "operationId": interaction.operation_id,
        "summary": interaction.summary,
        "tags": [interaction.tag],
        "externalDocs": {"url": spec},
        "parameters": parameters,
        "responses": {
            interaction.success: {"$ref": "#/components/responses/fhir"}
            if interaction.tag == "FHIR"
            else {"description": "Success"},
            "4XX": {"$ref": "#/components/responses/outcome"},
        },
    }
    if interaction.body:
        operation["requestBody"] = {
            "required": True,
            "content": {interaction.body: {"schema": {"type": "object"}}},
        }
    operation["security"] = [] if interaction.public else [{"smart": []}]
    return operation


def openapi_document(version: str = "0.1.0") -> dict[str, Any]:
    """The whole OpenAPI document (pure; the same for every request)."""
    paths: dict[str, dict[str, Any]] = {}
    for (path, method), interaction in INTERACTIONS.items():
        paths.setdefault(path, {})[method.lower()] = _operation(path, method, interaction)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "SelfBack FHIR server",
            "version": version,
            "summary": "FHIR R4 (4.0.1) server and SMART App Launch 2.2 authorization server",
            "description": (
                "FHIR's own description of this API, with the resource types, search "
                "parameters and operations it supports, is the CapabilityStatement at "
                "/fhir/metadata. Bodies are FHIR R4 JSON (application/fhir+json) or XML. "
                "Errors are OperationOutcomes. Tokens come from the SMART authorization "
                "server under /auth (docs/AUTH.md)."
            ),
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "tags": [
            {"name": "FHIR", "description": "The FHIR R4 RESTful API (http.html)"},
            {"name": "SMART", "description": "SMART App Launch 2.2 and OAuth 2.0 endpoints"},
        ],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "smart": {
                    "type": "oauth2",
                    "description": "SMART App Launch 2.2 and SMART Backend Services",
                    "flows": {
                        "authorizationCode": {
                            "authorizationUrl": "/auth/authorize",
                            "tokenUrl": "/auth/token",
                            "refreshUrl": "/auth/token",
                            "scopes": {
                                "launch/patient": "a patient picked at launch",
                                "patient/*.rs": "read and search the patient's data",
                                "user/*.cruds": "everything the user may do",
                                "openid fhirUser": "who signed in",
                                "offline_access": "a refresh token",
                            },
                        },
                        "clientCredentials": {
                            "tokenUrl": "/auth/token",
                            "scopes": {"system/*.rs": "read and search as a backend service"},
                        },
                    },
                }
            },
            "parameters": {
                "format": {
                    "name": "_format",
                    "in": "query",
                    "description": "json or xml (FHIR R4 http.html#mime), instead of Accept",
                    "schema": {"type": "string", "enum": ["json", "xml"]},
                },
                "prefer": {
                    "name": "Prefer",
                    "in": "header",
                    "description": "return=minimal | representation | OperationOutcome",
                    "schema": {"type": "string"},
                },
                "searchParameters": {
                    "name": "parameters",
                    "in": "query",
                    "description": (
                        "Search parameters (search.html): those of the type listed in the "
                        "CapabilityStatement, and _id, _lastUpdated, _count, _sort, "
                        "_include, _revinclude, _summary, _elements, _total, _has"
                    ),
                    "style": "form",
                    "explode": True,
                    "schema": {"type": "object", "additionalProperties": {"type": "string"}},
                },
            },
            "responses": {
                "fhir": {
                    "description": "A FHIR resource or Bundle",
                    "content": {
                        FHIR_JSON: {"schema": {"$ref": "#/components/schemas/Resource"}},
                        "application/fhir+xml": {"schema": {"type": "string"}},
                    },
                },
                "outcome": {
                    "description": "An OperationOutcome saying what was wrong",
                    "content": {
                        FHIR_JSON: {"schema": {"$ref": "#/components/schemas/OperationOutcome"}}
                    },
                },
            },
            "schemas": {
                "Resource": {
                    "type": "object",
                    "required": ["resourceType"],
                    "properties": {"resourceType": {"type": "string"}, "id": {"type": "string"}},
                    "externalDocs": {"url": R4 + "resource.html"},
                },
                "OperationOutcome": {
                    "type": "object",
                    "required": ["resourceType", "issue"],
                    "properties": {
                        "resourceType": {"const": "OperationOutcome"},
                        "issue": {"type": "array", "items": {"type": "object"}},
                    },
                    "externalDocs": {"url": R4 + "operationoutcome.html"},
                },
            },
        },
    }
