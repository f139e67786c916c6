"""FHIR operations (``$name``), one module each, dispatched by one table.

FHIR R4 operations.html: an operation is invoked at system (``[base]/$op``), type
(``[base]/[type]/$op``) or instance (``[base]/[type]/[id]/$op``) level, by POST with a
Parameters body (or a resource), or by GET with query parameters when it changes nothing.
The HTTP layer parses that once into an :class:`OperationCall`; an operation returns a
resource (or stored bytes) and a status.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from fhir_server.errors import bad_request, error
from fhir_server.storage.repository import Repository

Level = Literal["system", "type", "instance"]


@dataclass(frozen=True, slots=True)
class OperationCall:
    name: str
    level: Level
    rtype: str | None
    id: str | None
    method: str
    # Query parameters and the Parameters body's parameters, in order (name, value),
    # where a value is a string (query) or the Parameters.parameter element (body).
    parameters: list[tuple[str, Any]] = field(default_factory=list)
    resource: dict[str, Any] | None = None  # a non-Parameters body
    base_url: str = ""
    now: int = 0

    def value(self, name: str) -> Any:
        for key, value in self.parameters:
            if key == name:
                return value
        return None


@dataclass(frozen=True, slots=True)
class OperationResult:
    status: int
    body: dict[str, Any] | bytes


@dataclass(frozen=True, slots=True)
class Operation:
    name: str
    levels: frozenset[Level]
    run: Callable[[Repository, OperationCall], OperationResult]
    definition: str  # the OperationDefinition's canonical URL
    types: frozenset[str] | None = None  # None: any type
    changes_state: bool = True  # GET is allowed only when False (operations.html#request)
    # Where one name has an OperationDefinition per type (ValueSet/$validate-code and
    # CodeSystem/$validate-code): (type, canonical URL) pairs; ``definition`` otherwise.
    definitions_by_type: tuple[tuple[str, str], ...] = ()
    # The server writes on its own authority, not the caller's (the plan engine's plan for
    # $plan-week): the caller is authorized once for the target and for ``requires``
    # (a permission on a type, e.g. ("c", "CarePlan")), then the writes are the server's
    # and meet no token's write rules (fhir_server.access.write_authority).
    server_writes: tuple[str, str] | None = None

    def definition_for(self, rtype: str | None) -> str:
        return dict(self.definitions_by_type).get(rtype or "", self.definition)


def find_operation(registry: dict[str, Operation], call: OperationCall) -> Operation:
    operation = registry.get(call.name)
    if operation is None or call.level not in operation.levels:
        raise error(
            404, "not-supported", f"Operation ${call.name} is not supported at {call.level} level"
        )
    if operation.types is not None and call.rtype not in operation.types:
        raise error(404, "not-supported", f"Operation ${call.name} is not defined for {call.rtype}")
    if call.method == "GET" and operation.changes_state:
        raise error(405, "not-supported", f"${call.name} changes state: use POST")
    return operation


def parameters_of(body: Any) -> tuple[list[tuple[str, Any]], dict[str, Any] | None]:
    """A POST body as (parameters, resource): a Parameters resource gives its parameters
    (operations.html#request); any other resource is passed whole."""
    if body is None:
        return [], None
    if not isinstance(body, dict) or "resourceType" not in body:
        raise bad_request("An operation takes a Parameters resource or a resource")
    if body["resourceType"] != "Parameters":
        return [], body
    parameters = body.get("parameter") or []
    if not isinstance(parameters, list):
        raise bad_request("Parameters.parameter must be a list", "Parameters.parameter")
    out = []
    for index, parameter in enumerate(parameters):
        if not isinstance(parameter, dict) or not isinstance(parameter.get("name"), str):
            raise bad_request("Every parameter needs a name", f"Parameters.parameter[{index}]")
        out.append((parameter["name"], parameter))
    return out, None
