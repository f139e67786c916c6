"""capabilities: the CapabilityStatement at /fhir/metadata (FHIR R4 http.html#capabilities).

Built from what the server really does: the resource types it serves, the interactions
its routes implement, and the search parameters its registry indexes.
"""

from __future__ import annotations

from typing import Any

import orjson

from fhir_server import FHIR_VERSION, __version__
from fhir_server.auth.discovery import capability_security  # SMART security (auth)
from fhir_server.definitions import R4_RESOURCE_TYPES
from fhir_server.export import BULK_DATA_CAPABILITY, EXPORT_DEFINITIONS  # Bulk Data (export)
from fhir_server.operations.registry import OPERATIONS
from fhir_server.search import registry

INSTANCE_INTERACTIONS = ["read", "vread", "update", "patch", "delete", "history-instance"]
TYPE_INTERACTIONS = ["create", "search-type", "history-type"]


def capability_statement(base_url: str, *, software_date: str) -> bytes:
    params = registry()
    resources: list[dict[str, Any]] = []
    for rtype in sorted(R4_RESOURCE_TYPES):
        entry: dict[str, Any] = {
            "type": rtype,
            "interaction": [{"code": c} for c in INSTANCE_INTERACTIONS + TYPE_INTERACTIONS],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": True,
            "conditionalCreate": True,
            "conditionalRead": "full-support",
            "conditionalUpdate": True,
            "conditionalDelete": "single",
            "referencePolicy": ["literal", "logical"],
        }
        search_params = [
            {"name": p.code, "type": p.type, **({"definition": p.url} if p.url else {})}
            for p in params.for_type(rtype)
        ]
        if search_params:
            entry["searchParam"] = search_params
        operations = [
            {"name": op.name, "definition": op.definition_for(rtype)}
            for op in OPERATIONS.values()
            if op.levels & {"type", "instance"} and (op.types is None or rtype in op.types)
        ]
        if rtype in EXPORT_DEFINITIONS:  # Patient/$export, Group/[id]/$export (BDS-17)
            operations.append({"name": "export", "definition": EXPORT_DEFINITIONS[rtype]})
        if operations:
            entry["operation"] = operations
        resources.append(entry)
    statement = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": software_date,
        "publisher": "SelfBack FHIR server",
        "kind": "instance",
        "instantiates": [BULK_DATA_CAPABILITY],
        "software": {"name": "selfback-fhir-server", "version": __version__},
        "implementation": {"description": "SelfBack FHIR integration server", "url": base_url},
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "application/fhir+xml"],
        "patchFormat": [
            "application/json-patch+json",
            "application/fhir+json",
            "application/fhir+xml",
        ],
        "rest": [
            {
                "mode": "server",
                # SMART on FHIR: oauth-uris extension, read by the Python fhirclient (auth)
                "security": capability_security(base_url),
                "resource": resources,
                "interaction": [
                    {"code": "transaction"},
                    {"code": "batch"},
                    {"code": "search-system"},
                    {"code": "history-system"},
                ],
                "operation": [{"name": "export", "definition": EXPORT_DEFINITIONS["system"]}],
            }
        ],
    }
    return orjson.dumps(statement)
