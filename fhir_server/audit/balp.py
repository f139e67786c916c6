"""An AccessRecord in, an R4 AuditEvent out, shaped after IHE BALP.

Pure code: no clock, no I/O; the record carries its own time (``at_us``) and the caller
says who the observing server is (:class:`ServerIdentity`).

The patterns followed (IHE ITI Basic Audit Log Patterns, BALP 1.1,
https://profiles.ihe.net/ITI/BALP/, "3:5.7 Basic Audit Log Patterns"):

- FHIR RESTful activity (BALP "RESTful activities": Create, Read, Update, Delete, Query,
  each "with Patient"): ``type`` DICOM 110110 *Patient Record*, ``subtype`` the FHIR
  restful-interaction code, ``action`` C/R/U/D and E for a query; the data as an entity
  of type 2 *System Object* and role 4 *Domain Resource*, the patient as an entity of type
  1 *Person* and role 1 *Patient*, a search's query string base64 in ``entity.query``
  with role 24 *Query*.
- Get Access Token (BALP profile ``IHE.IUA.71``, IUA ITI-71): ``type`` DICOM 110114
  *User Authentication*, ``subtype`` ``urn:ihe:event-type-code|ITI-71``. Token
  introspection is IUA ITI-102 *Introspect Token* under the same type.
- Sign-in and revocation: DICOM 110114 with the DICOM subtypes 110122 *Login* and 110123
  *Logout* (DICOM PS3.16 CID 403); revoking a token ends the grant, which is the logout of
  an OAuth session.
- Every authorization-server event also carries a local subtype
  (:data:`AUTH_EVENT_SYSTEM`) naming it exactly, so one ``?subtype=`` search finds each
  kind, including the two that no standard names: ``launch`` (an EHR creating a launch
  context) and ``activation-code`` (a patient's first sign-in credential issued).

R4 rules kept (auditevent.html): ``outcome`` from audit-event-outcome (0 success,
4 minor failure, often an HTTP 4xx, 8 serious failure, often an HTTP 5xx); exactly the
agents that took part, the requestor flagged; ``source.type`` from security-source-type
(4 *Application Server*). No token, code or secret ever enters an AuditEvent.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import orjson

from fhir_server.access.compartment import PATIENT_COMPARTMENT
from fhir_server.audit.records import AccessRecord
from fhir_server.search.extraction import Rows, converter
from fhir_server.search.paths import reference_type
from fhir_server.search.registry import TABLE_OF_TYPE
from fhir_server.versioning import instant

DCM = "http://dicom.nema.org/resources/ontology/DCM"
RESTFUL_INTERACTION = "http://hl7.org/fhir/restful-interaction"
IHE_EVENT_TYPE = "urn:ihe:event-type-code"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
SECURITY_ROLE = "http://terminology.hl7.org/CodeSystem/extra-security-role-type"
NETWORK_TYPE_IP = "2"  # R4 network-type: 2 IP Address
# Local code systems, under the programme's canonical base, for what no standard names.
AUTH_EVENT_SYSTEM = "http://selfback.example.org/fhir/CodeSystem/auth-event"
OPERATION_SYSTEM = "http://selfback.example.org/fhir/CodeSystem/operation"
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")  # FHIR R4 datatypes.html#id
# The identifier system for OAuth client ids in agent.who (search: agent:identifier=).
CLIENT_ID_SYSTEM = "http://selfback.example.org/fhir/sid/oauth-client-id"
# A signed-in person known only by the authorization server's subject.
SUBJECT_SYSTEM = "http://selfback.example.org/fhir/sid/oauth-subject"

PATIENT_RECORD = {"system": DCM, "code": "110110", "display": "Patient Record"}
SYSTEM_OBJECT = {"system": ENTITY_TYPE, "code": "2", "display": "System Object"}
PERSON = {"system": ENTITY_TYPE, "code": "1", "display": "Person"}
DOMAIN_RESOURCE = {"system": OBJECT_ROLE, "code": "4", "display": "Domain Resource"}
PATIENT_ROLE = {"system": OBJECT_ROLE, "code": "1", "display": "Patient"}
LIFECYCLE_SYSTEM = "http://terminology.hl7.org/CodeSystem/dicom-audit-lifecycle"
LIFECYCLE: dict[str, dict[str, str]] = {
    "create": {"system": LIFECYCLE_SYSTEM, "code": "1", "display": "Origination / Creation"},
    "update": {"system": LIFECYCLE_SYSTEM, "code": "3", "display": "Amendment"},
    "patch": {"system": LIFECYCLE_SYSTEM, "code": "3", "display": "Amendment"},
    "delete": {"system": LIFECYCLE_SYSTEM, "code": "14", "display": "Logical deletion"},
}
USER_AUTHENTICATED = {"system": DCM, "code": "110114", "display": "User Authentication"}

# FHIR interactions: restful-interaction code (R4 valueset-type-restful-interaction) and
# the R4 audit-event-action (C create, R read/view/print, U update, D delete, E execute).
# BALP's Query pattern records searches as E; history reads versions, so R.
FHIR_INTERACTIONS: dict[str, tuple[str, str]] = {
    "read": ("read", "R"),
    "vread": ("vread", "R"),
    "history-instance": ("history-instance", "R"),
    "history-type": ("history-type", "R"),
    "history-system": ("history-system", "R"),
    "search-type": ("search-type", "E"),
    "search-system": ("search-system", "E"),
    "search-compartment": ("search-type", "E"),
    "create": ("create", "C"),
    "update": ("update", "U"),
    "patch": ("patch", "U"),
    "delete": ("delete", "D"),
    "batch": ("batch", "E"),
    "transaction": ("transaction", "E"),
    "operation": ("operation", "E"),
    "export": ("operation", "E"),
    "capabilities": ("capabilities", "R"),
}

# Authorization-server events: (standard subtype or None, display of the local subtype).
AUTH_EVENTS: dict[str, tuple[dict[str, str] | None, str]] = {
    "login": ({"system": DCM, "code": "110122", "display": "Login"}, "Sign-in"),
    "logout": ({"system": DCM, "code": "110123", "display": "Logout"}, "Sign-out"),
    "token": (
        {"system": IHE_EVENT_TYPE, "code": "ITI-71", "display": "Get Access Token"},
        "Token request",
    ),
    "introspect": (
        {"system": IHE_EVENT_TYPE, "code": "ITI-102", "display": "Introspect Token"},
        "Token introspection",
    ),
    "revoke": ({"system": DCM, "code": "110123", "display": "Logout"}, "Token revocation"),
    "launch": (None, "EHR launch context created"),
    "activation-code": (None, "Patient activation code issued"),
}


@dataclass(frozen=True, slots=True)
class ServerIdentity:
    """The observer: this server. ``site`` names the installation (host or base URL)."""

    site: str
    name: str = "SelfBack FHIR server"


def audit_event(record: AccessRecord, server: ServerIdentity) -> dict[str, Any]:
    """The AuditEvent (R4 4.0.1) for one record; no ``id`` or ``meta``: storage adds them."""
    if record.action in AUTH_EVENTS:
        standard, display = AUTH_EVENTS[record.action]
        event_type = USER_AUTHENTICATED
        subtypes = [standard] if standard else []
        subtypes.append({"system": AUTH_EVENT_SYSTEM, "code": record.action, "display": display})
        action = "E"
    else:
        code, action = FHIR_INTERACTIONS.get(record.action, ("operation", "E"))
        event_type = PATIENT_RECORD
        subtypes = [{"system": RESTFUL_INTERACTION, "code": code}]
        operation = record.operation or ("export" if record.action == "export" else None)
        if operation:
            subtypes.append({"system": OPERATION_SYSTEM, "code": operation})
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "type": event_type,
        "subtype": subtypes,
        "action": action,
        "recorded": instant(record.at_us),
        "outcome": outcome_code(record.outcome),
        "outcomeDesc": outcome_description(record),
        "agent": agents(record),
        "source": {
            "site": server.site,
            "observer": {"display": server.name},
            "type": [{"system": SOURCE_TYPE, "code": "4", "display": "Application Server"}],
        },
    }
    if record.period_us is not None:
        # R4 AuditEvent.period: "the period during which the activity occurred" -- the
        # window a coalesced summary covers.
        event["period"] = {
            "start": instant(record.period_us[0]),
            "end": instant(record.period_us[1]),
        }
    entities = entities_of(record)
    if record.count > 1 or record.period_us is not None:
        entities.append(coalesced_entity(record))
    if entities:
        event["entity"] = entities
    return event


# A summary of refused requests (fhir_server.audit.coalesce): the requests it stands for,
# as an entity of type 2 System Object whose detail carries the count (R4
# AuditEvent.entity.detail: "tagged value pairs for conveying additional information").
COALESCED_DETAIL = "coalesced-requests"


def coalesced_entity(record: AccessRecord) -> dict[str, Any]:
    return {
        "type": SYSTEM_OBJECT,
        "description": f"{record.count} requests refused with HTTP {record.outcome}",
        "detail": [{"type": COALESCED_DETAIL, "valueString": str(record.count)}],
    }


def outcome_code(status: int) -> str:
    """R4 audit-event-outcome from the HTTP status answered."""
    if status < 400:
        return "0"
    if status < 500:
        return "4"
    return "8"


def outcome_description(record: AccessRecord) -> str:
    text = f"HTTP {record.outcome}"
    return f"{text}: {printable(record.reason)}" if record.reason else text


# FHIR R4 datatypes.html#string: no code points below 32 but tab, CR and LF. What a client
# sent (a scope, a client_id, a reason quoting them) may hold them; PostgreSQL cannot store
# U+0000 at all, and one such AuditEvent would fail the whole batch it is written in.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")


def printable(text: str) -> str:
    """``text`` with the characters an R4 string may not hold replaced by U+FFFD."""
    return _CONTROL.sub("\ufffd", text)


def agents(record: AccessRecord) -> list[dict[str, Any]]:
    """The person (when there is one) is the requestor; the app acts for them. A backend
    client with no person is the requestor itself. Someone unidentified (no valid token,
    a failed sign-in) is still recorded as the requestor, by address only."""
    claims = record.claims
    client_id = record.client_id or (claims.client_id if claims else None)
    client_id = printable(client_id) if client_id else client_id
    person: dict[str, Any] | None = None
    if claims is not None and (claims.fhir_user or claims.subject):
        person = {
            "type": _role("humanuser", "human user"),
            "who": _person_reference(claims.fhir_user, claims.subject),
            "requestor": True,
        }
        if claims.role:
            person["role"] = [{"text": claims.role}]
    app: dict[str, Any] | None = None
    if client_id:
        app = {
            "type": {"coding": [{"system": DCM, "code": "110150", "display": "Application"}]},
            "who": {"identifier": {"system": CLIENT_ID_SYSTEM, "value": client_id}},
            "requestor": person is None,
        }
    found = [a for a in (person, app) if a is not None]
    if not found:
        found = [{"type": _role("humanuser", "human user"), "requestor": True}]
    if record.client_ip:
        requestor = found[0]
        requestor["network"] = {"address": record.client_ip, "type": NETWORK_TYPE_IP}
    return found


def entities_of(record: AccessRecord) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if record.resource_type and record.resource_id:
        reference = f"{record.resource_type}/{record.resource_id}"
        if record.version is not None:
            reference += f"/_history/{record.version}"
        entity: dict[str, Any] = {
            "what": {"reference": reference},
            "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
            "role": {"system": OBJECT_ROLE, "code": "4", "display": "Domain Resource"},
        }
        out.append(entity)
    written_patients: set[str] = set()
    for rtype, id, version, interaction in record.entities:
        # A Bundle's writes, one entity each: what (the version written) and how, as the
        # entity's lifecycle (DICOM ParticipantObjectDataLifeCycle, R4 binding
        # object-lifecycle-events: 1 Origination / Creation, 3 Amendment, 14 Logical
        # deletion). A Patient written is the Patient entity itself (BALP "with Patient").
        is_patient = rtype == "Patient"
        if is_patient:
            written_patients.add(id)
        out.append(
            {
                "what": {"reference": f"{rtype}/{id}/_history/{version}"},
                "type": PERSON if is_patient else SYSTEM_OBJECT,
                "role": PATIENT_ROLE if is_patient else DOMAIN_RESOURCE,
                "lifecycle": LIFECYCLE.get(interaction, LIFECYCLE["update"]),
            }
        )
    if record.query:  # the query as sent (an empty one has nothing to record)
        query: dict[str, Any] = {
            "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
            "role": {"system": OBJECT_ROLE, "code": "24", "display": "Query"},
            "query": base64.b64encode(record.query.encode()).decode("ascii"),
        }
        if record.resource_type and not record.resource_id:
            query["description"] = record.resource_type
        out.append(query)
    seen: set[str] = set()
    for patient_id in record.patient_ids:
        if not patient_id or patient_id in seen:
            continue
        seen.add(patient_id)
        if patient_id in written_patients:
            continue  # already an entity, as the Patient written
        if record.resource_type == "Patient" and record.resource_id == patient_id:
            # The resource is the patient: one entity says both (BALP "with Patient").
            out[0]["type"] = {"system": ENTITY_TYPE, "code": "1", "display": "Person"}
            out[0]["role"] = {"system": OBJECT_ROLE, "code": "1", "display": "Patient"}
            continue
        out.append(
            {
                "what": {"reference": f"Patient/{patient_id}"},
                "type": {"system": ENTITY_TYPE, "code": "1", "display": "Person"},
                "role": {"system": OBJECT_ROLE, "code": "1", "display": "Patient"},
            }
        )
    return out


def patients_in_query(resource_type: str | None, query: str) -> tuple[str, ...]:
    """The patients a search names (BALP "Query with Patient"): ``patient=``, or a
    Patient reference in ``subject=`` or another parameter that defines the R4 patient
    compartment of ``resource_type`` (``_id`` for Patient searches)."""
    compartment = set(PATIENT_COMPARTMENT.get(resource_type or "", ()))
    found: list[str] = []
    for name, value in parse_qsl(query, keep_blank_values=False):
        base = name.split(":", 1)[0]
        bare_ids = base == "patient" or (resource_type == "Patient" and base == "_id")
        if not (bare_ids or base == "subject" or base in compartment):
            continue
        for item in value.split(","):
            parts = item.rstrip("/").split("/")
            if len(parts) >= 2 and parts[-2] == "Patient":
                found.append(parts[-1])
            elif bare_ids and len(parts) == 1 and _ID.fullmatch(item):
                found.append(item)
    return tuple(dict.fromkeys(found))


def _role(code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": SECURITY_ROLE, "code": code, "display": display}]}


def _person_reference(fhir_user: str | None, subject: str | None) -> dict[str, Any]:
    who: dict[str, Any] = {}
    if fhir_user:
        # fhirUser may be absolute (id_token) or relative (claims); keep Type/id.
        parts = fhir_user.rstrip("/").split("/")
        who["reference"] = "/".join(parts[-2:]) if len(parts) >= 2 else fhir_user
    if subject:
        who["identifier"] = {"system": SUBJECT_SYSTEM, "value": subject}
    return who


# -- index rows --------------------------------------------------------------------------
# The rows fhir_server.search.extract_index_rows makes for an AuditEvent this builder made,
# computed straight from the known shape instead of walking every R4 AuditEvent search
# parameter's path (about a third of the trail's CPU per event). The same converters make
# the values, parameter by parameter in the registry's order; what the builder never sets
# (agent.name, agent.altId, agent.policy, entity.name, meta) has no rows either way.
# tests/audit/test_audit_balp.py proves the rows equal extract_index_rows for every kind
# of record; the trail uses them only while the AuditEvent parameters in force are the R4
# core ones (no custom SearchParameter on AuditEvent).
_CODE = converter("token", "code")
_CODING = converter("token", "Coding")
_CONCEPT = converter("token", "CodeableConcept")
_STRING = converter("string", "string")
_INSTANT = converter("date", "instant")
_REFERENCE = converter("reference", "Reference")
_TABLES = tuple(dict.fromkeys(TABLE_OF_TYPE.values()))
# The R4 AuditEvent parameters with values in what the builder makes, in the registry's
# order (extraction emits rows parameter by parameter in this order).
_ORDER = {
    code: n
    for n, code in enumerate(
        (
            "action", "address", "agent", "agent-role", "date", "entity", "entity-role",
            "entity-type", "outcome", "patient", "site", "source", "subtype", "type",
        )
    )
}  # fmt: skip
Part = tuple[tuple[int, str, dict[str, Any]], ...]
# Rows per part of an event (the codes and the server; the agents; the entities), keyed
# by the part's JSON: a part repeats from event to event (a client, an address, a resource
# read again), so each is converted once. Bounded.
_MEMO: dict[tuple[str, bytes], Part] = {}
_MEMO_MAX = 20_000
_MEMO_PART_MAX = 4  # agents or entities per part at most, for the part to be remembered


def _convert(steps: list[tuple[str, Any, Any]]) -> Part:
    scratch: Rows = {name: [] for name in _TABLES}
    found: list[tuple[int, str, dict[str, Any]]] = []
    for param, convert, value in steps:
        if value is None:
            continue
        convert(param, value, None, scratch)
        for table in _TABLES:
            rows = scratch[table]
            if rows:
                found.extend((_ORDER[param], table, row) for row in rows)
                rows.clear()
    return tuple(found)


def _head_steps(event: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    source = event.get("source") or {}
    return [
        ("action", _CODE, event.get("action")),
        ("outcome", _CODE, event.get("outcome")),
        ("site", _CODE, source.get("site")),
        ("source", _REFERENCE, source.get("observer")),
        *[("subtype", _CODING, subtype) for subtype in event.get("subtype") or ()],
        ("type", _CODING, event.get("type")),
    ]


def _agent_steps(agents_: list[dict[str, Any]]) -> list[tuple[str, Any, Any]]:
    steps: list[tuple[str, Any, Any]] = []
    for agent in agents_:
        steps.append(("address", _STRING, (agent.get("network") or {}).get("address")))
        who = agent.get("who")
        steps.append(("agent", _REFERENCE, who))
        steps.extend(("agent-role", _CONCEPT, role) for role in agent.get("role") or ())
        if who is not None and reference_type(who) == "Patient":
            steps.append(("patient", _REFERENCE, who))
    return steps


def _entity_steps(entities: list[dict[str, Any]]) -> list[tuple[str, Any, Any]]:
    steps: list[tuple[str, Any, Any]] = []
    for entity in entities:
        what = entity.get("what")
        steps.append(("entity", _REFERENCE, what))
        steps.append(("entity-role", _CODING, entity.get("role")))
        steps.append(("entity-type", _CODING, entity.get("type")))
        if what is not None and reference_type(what) == "Patient":
            steps.append(("patient", _REFERENCE, what))
    return steps


def _part(kind: str, value: Any, steps: Any) -> Part:
    if isinstance(value, list) and len(value) > _MEMO_PART_MAX:
        return _convert(steps(value))  # a Bundle's many entities: unique, not worth keeping
    key = (kind, orjson.dumps(value))
    found = _MEMO.get(key)
    if found is None:
        found = _convert(steps(value))
        if len(_MEMO) >= _MEMO_MAX:
            _MEMO.clear()
        _MEMO[key] = found
    return found


def index_rows(event: dict[str, Any]) -> Rows:
    """The index rows of an AuditEvent made by :func:`audit_event` (and stamped): the same
    rows as ``extract_index_rows(event)``, in the same order."""
    head = {k: event.get(k) for k in ("action", "outcome", "source", "subtype", "type")}
    date = _convert([("date", _INSTANT, event.get("recorded"))])  # unique per event
    entries = [
        *_part("head", head, _head_steps),
        *_part("agent", event.get("agent") or [], _agent_steps),
        *_part("entity", event.get("entity") or [], _entity_steps),
        *date,
    ]
    # Stable: within a parameter, the agents' rows come before the entities' (patient).
    entries.sort(key=_first)
    out: Rows = {name: [] for name in _TABLES}
    for _, table, row in entries:
        out[table].append(dict(row))
    return out


def _first(entry: tuple[int, str, dict[str, Any]]) -> int:
    return entry[0]
