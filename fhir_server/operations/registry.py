"""The operations this server offers, by name (CapabilityStatement lists the same)."""

from fhir_server.operations import Operation
from fhir_server.operations.extract import EXTRACT
from fhir_server.operations.validate import VALIDATE

OPERATIONS: dict[str, Operation] = {op.name: op for op in (EXTRACT, VALIDATE)}
