"""What the terminology operations share: their parameters, the resource they act on,
and how a terminology error becomes an OperationOutcome.

FHIR R4 operations.html#request: by GET the parameters are query parameters (primitive
types only); by POST they are a Parameters resource, where complex values (``coding``,
``codeableConcept``) and resources (``valueSet``, ``codeSystem``, ``conceptMap``) travel.
The resource an operation works on is the instance (``ValueSet/[id]/$expand``), a resource
in the body, or a canonical ``url`` found in the database or in the shipped content
(fhir_server.storage.terminology).

Errors (terminology-service.html leaves the status to the server): the ValueSet,
CodeSystem or ConceptMap asked for is unknown -> 404; a missing, malformed or
contradictory parameter, or an unknown code where one is required -> 400; content the
server cannot expand or reason over (all of SNOMED CT, a grouped-by hierarchy) -> 422
``not-supported``; an expansion over the configured limit -> 422 ``too-costly``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fhir_server.errors import FhirError, bad_request, error, not_found
from fhir_server.operations import OperationCall
from fhir_server.storage.repository import Repository
from fhir_server.storage.terminology import StoredSource, terminology_service
from fhir_server.validation import validate_resource
from terminology import TerminologyError
from terminology.service import Coding, TerminologyService
from terminology.sources import Found

_STRING_KEYS = ("valueString", "valueUri", "valueCode", "valueCanonical", "valueUrl", "valueId")

_STATUS = {
    "not-found": 404,
    "invalid": 400,
    "code-invalid": 400,
    "required": 400,
    "value": 400,
    "not-supported": 422,
    "too-costly": 422,
    "processing": 422,
}


def failure(exc: TerminologyError, *, missing_is: int = 404) -> FhirError:
    """The OperationOutcome for a terminology error; ``missing_is`` is the status when
    something named is unknown (404 for what the request names)."""
    status = missing_is if exc.code == "not-found" else _STATUS.get(exc.code, 422)
    return error(status, exc.code, str(exc))


@contextmanager
def terminology(repo: Repository) -> Iterator[tuple[TerminologyService, StoredSource]]:
    """The service over one consistent read of the database (and the shipped content);
    terminology errors leave as OperationOutcomes."""
    with repo.reading() as conn:
        try:
            yield terminology_service(conn)
        except TerminologyError as exc:
            raise failure(exc) from exc


# --- primitive parameters -----------------------------------------------------------


def values(call: OperationCall, name: str) -> list[Any]:
    return [v for k, v in call.parameters if k == name]


def text(call: OperationCall, name: str) -> str | None:
    value = call.value(name)
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        for key in _STRING_KEYS:
            if isinstance(value.get(key), str):
                return str(value[key])
    raise bad_request(f"Parameter {name!r} must be a string, uri or code", name)


def texts(call: OperationCall, name: str) -> list[str]:
    out = []
    for value in values(call, name):
        if isinstance(value, str):
            out += [v for v in value.split(",") if v]
        elif isinstance(value, dict):
            found = next((value[k] for k in _STRING_KEYS if isinstance(value.get(k), str)), None)
            if found is None:
                raise bad_request(f"Parameter {name!r} must be a code", name)
            out.append(found)
    return out


def boolean(call: OperationCall, name: str) -> bool:
    value = call.value(name)
    if value is None:
        return False
    if isinstance(value, dict):
        value = value.get("valueBoolean")
        if isinstance(value, bool):
            return value
    elif value in ("true", "false"):
        return value == "true"
    raise bad_request(f"Parameter {name!r} must be true or false", name)


def integer(call: OperationCall, name: str) -> int | None:
    value = call.value(name)
    if value is None:
        return None
    if isinstance(value, dict):
        value = value.get("valueInteger")
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    elif isinstance(value, str) and value.isdigit() and len(value) < 10:
        return int(value)
    raise bad_request(f"Parameter {name!r} must be a non-negative integer", name)


# --- codes --------------------------------------------------------------------------


def _coding_of(value: Any, name: str) -> Coding:
    if not isinstance(value, dict) or not isinstance(value.get("code"), str):
        raise bad_request(f"Parameter {name!r} must be a Coding with a code", name)
    for key in ("system", "version", "display"):
        if key in value and not isinstance(value[key], str):
            raise bad_request(f"{name}.{key} must be a string", name)
    return Coding(value["code"], value.get("system"), value.get("version"), value.get("display"))


def coding(call: OperationCall, name: str) -> Coding | None:
    value = call.value(name)
    if value is None:
        return None
    if not isinstance(value, dict) or "valueCoding" not in value:
        raise bad_request(f"Parameter {name!r} is a Coding: send it in a Parameters body", name)
    return _coding_of(value["valueCoding"], name)


def codeable_concept(call: OperationCall, name: str) -> list[Coding] | None:
    value = call.value(name)
    if value is None:
        return None
    concept = value.get("valueCodeableConcept") if isinstance(value, dict) else None
    if not isinstance(concept, dict):
        raise bad_request(
            f"Parameter {name!r} is a CodeableConcept: send it in a Parameters body", name
        )
    codings = concept.get("coding")
    if not isinstance(codings, list) or not codings:
        raise bad_request(f"{name} has no coding", name)
    return [_coding_of(c, name) for c in codings]


def codings_to_check(
    call: OperationCall, *, system_name: str = "system", version_name: str = "version"
) -> list[Coding]:
    """The code(s) of a $validate-code / $lookup / $translate request: ``code`` (with
    ``system``, ``version``, ``display``), or ``coding``, or ``codeableConcept`` -- exactly
    one of them."""
    code = text(call, "code")
    given_coding = coding(call, "coding")
    concept = codeable_concept(call, "codeableConcept")
    forms = [f for f in (code, given_coding, concept) if f is not None]
    if not forms:
        raise bad_request("Give the code to check: code (with system), coding or codeableConcept")
    if len(forms) > 1:
        raise bad_request("Give only one of code, coding and codeableConcept")
    if concept is not None:
        return concept
    if given_coding is not None:
        return [given_coding]
    assert code is not None
    return [Coding(code, text(call, system_name), text(call, version_name), text(call, "display"))]


# --- the resource acted on ----------------------------------------------------------


def embedded(call: OperationCall, name: str, rtype: str) -> dict[str, Any] | None:
    """A resource sent in the body: as the Parameters parameter ``name``, or as the body;
    checked with the structural rules every write passes (400 with located issues)."""
    parameter = call.value(name)
    if parameter is not None:
        resource = parameter.get("resource") if isinstance(parameter, dict) else None
        if not isinstance(resource, dict) or resource.get("resourceType") != rtype:
            raise bad_request(f"Parameter {name!r} must hold a {rtype} resource", name)
        return validate_resource(resource, expected_type=rtype)
    if call.resource is not None:
        if call.resource.get("resourceType") != rtype:
            raise bad_request(
                f"The body must be Parameters or a {rtype}, not {call.resource.get('resourceType')}"
            )
        return validate_resource(call.resource, expected_type=rtype)
    return None


def acted_on(
    call: OperationCall,
    service: TerminologyService,
    stored: StoredSource,
    rtype: str,
    *,
    resource_name: str,
    url_name: str = "url",
    version_name: str | None = None,
    fallback_url: str | None = None,
) -> Found | None:
    """The instance, the resource in the body, or the one the ``url`` names (404 when
    unknown); None when the request names none. Naming two is contradictory (400)."""
    given = embedded(call, resource_name, rtype)
    url = text(call, url_name)
    version = text(call, version_name) if version_name else None
    named = [
        n for n, v in (("the instance", call.id), (resource_name, given), (url_name, url)) if v
    ]
    if len(named) > 1:
        raise bad_request(f"Name one {rtype} only (got {' and '.join(named)})")
    if call.id is not None:
        found = stored.read(rtype, call.id)
        if found is None:
            raise not_found(f"{rtype}/{call.id} is not known")
        return found
    if given is not None:
        return Found(given, None)
    url = url or fallback_url
    if url is None:
        return None
    try:
        return service.find(rtype, url, version)
    except TerminologyError as exc:
        raise failure(exc) from exc


def value_set_acted_on(
    call: OperationCall, service: TerminologyService, stored: StoredSource, operation: str
) -> Found:
    """The ValueSet of $expand or $validate-code: the instance, ``url`` (+
    ``valueSetVersion``) or ``valueSet``, the names both operation definitions give them
    (valueset-operation-expand, valueset-operation-validate-code); 400 when none."""
    found = acted_on(
        call, service, stored, "ValueSet", resource_name="valueSet", version_name="valueSetVersion"
    )
    if found is None:
        raise bad_request(f"${operation} needs a ValueSet: the instance, url or valueSet")
    return found


def code_system_instance(
    call: OperationCall, stored: StoredSource, system: str | None
) -> Found | None:
    """The stored CodeSystem of ``CodeSystem/[id]/$lookup`` or ``$subsumes`` (404 when
    unknown; 400 when the request also names another ``system``); None at type level."""
    if call.id is None:
        return None
    found = stored.read("CodeSystem", call.id)
    if found is None:
        raise not_found(f"CodeSystem/{call.id} is not known")
    url = found.resource.get("url")
    if system is not None and system != url:
        raise bad_request(f"CodeSystem/{call.id} is {url}, not {system}")
    return found
