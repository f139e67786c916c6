"""The BALP-style AuditEvent builder: one record in, one R4 AuditEvent out.

Each case names the rule it checks (IHE BALP 1.1 "RESTful activities" and IHE.IUA.71,
DICOM PS3.16 CID 400/403, FHIR R4 auditevent.html); every event built must be a valid R4
AuditEvent for the server's own structural validator.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from fhir_server.access.claims import Claims
from fhir_server.access.scopes import parse
from fhir_server.audit import AccessRecord, ServerIdentity, audit_event
from fhir_server.audit.balp import (
    AUTH_EVENT_SYSTEM,
    CLIENT_ID_SYSTEM,
    DCM,
    IHE_EVENT_TYPE,
    OPERATION_SYSTEM,
    RESTFUL_INTERACTION,
    SUBJECT_SYSTEM,
    patients_in_query,
)
from fhir_server.validation import validate_resource

SERVER = ServerIdentity(site="https://selfback.example/fhir")
AT = 1_763_700_000_123_456  # 2025-11-21T04:40:00.123456Z
PATIENT_USER = Claims(
    client_id="selfback-app",
    scopes=parse("patient/*.rs"),
    subject="acct-1",
    role="patient",
    fhir_user="Patient/p1",
    patient="p1",
)
CLINICIAN = Claims(
    client_id="dashboard",
    scopes=parse("user/*.rs"),
    subject="acct-7",
    role="practitioner",
    fhir_user="https://selfback.example/fhir/Practitioner/7",
)
BACKEND = Claims(client_id="region-ehr", scopes=parse("system/*.rs"))


def build(action: str, **fields: Any) -> dict[str, Any]:
    event = audit_event(AccessRecord(action=action, at_us=AT, **fields), SERVER)
    validate_resource(event, expected_type="AuditEvent")  # raises on any R4 problem
    return event


def codes(codings: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(c["system"], c["code"]) for c in codings}


# (action, expected type code, expected restful-interaction or auth subtype, expected action)
FHIR_CASES = [
    ("read", "110110", "read", "R"),
    ("vread", "110110", "vread", "R"),
    ("history-instance", "110110", "history-instance", "R"),
    ("history-type", "110110", "history-type", "R"),
    ("history-system", "110110", "history-system", "R"),
    ("search-type", "110110", "search-type", "E"),  # BALP Query: E execute
    ("search-system", "110110", "search-system", "E"),
    ("create", "110110", "create", "C"),
    ("update", "110110", "update", "U"),
    ("patch", "110110", "patch", "U"),
    ("delete", "110110", "delete", "D"),
    ("batch", "110110", "batch", "E"),
    ("transaction", "110110", "transaction", "E"),
    ("operation", "110110", "operation", "E"),
    ("export", "110110", "operation", "E"),
    ("capabilities", "110110", "capabilities", "R"),
]


@pytest.mark.parametrize(("action", "type_code", "subtype", "audit_action"), FHIR_CASES)
def test_fhir_interactions_are_patient_record_events_with_the_restful_interaction(
    action: str, type_code: str, subtype: str, audit_action: str
) -> None:
    event = build(action, outcome=200, claims=PATIENT_USER, resource_type="Observation")
    assert event["type"] == {"system": DCM, "code": type_code, "display": "Patient Record"}
    assert (RESTFUL_INTERACTION, subtype) in codes(event["subtype"])
    assert event["action"] == audit_action
    assert event["recorded"] == "2025-11-21T04:40:00.123456Z"


# BALP IHE.IUA.71 / IUA ITI-102 / DICOM CID 403 subtypes, plus the local name of each.
AUTH_CASES = [
    ("login", (DCM, "110122")),
    ("token", (IHE_EVENT_TYPE, "ITI-71")),
    ("introspect", (IHE_EVENT_TYPE, "ITI-102")),
    ("revoke", (DCM, "110123")),
    ("launch", None),
    ("activation-code", None),
]


@pytest.mark.parametrize(("action", "standard"), AUTH_CASES)
def test_authorization_server_events_are_user_authentication_events(
    action: str, standard: tuple[str, str] | None
) -> None:
    event = build(action, outcome=200, client_id="selfback-app", client_ip="10.0.0.5")
    assert event["type"]["system"] == DCM and event["type"]["code"] == "110114"
    found = codes(event["subtype"])
    assert (AUTH_EVENT_SYSTEM, action) in found
    if standard is not None:
        assert standard in found
    assert event["action"] == "E"


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(200, "0"), (201, "0"), (304, "0"), (401, "4"), (403, "4"), (404, "4"), (500, "8")],
)
def test_outcome_follows_r4_audit_event_outcome(status: int, outcome: str) -> None:
    """R4 audit-event-outcome: 4 minor failure (an HTTP 4xx), 8 serious failure (5xx)."""
    event = build("read", outcome=status, resource_type="Patient", resource_id="p1")
    assert event["outcome"] == outcome
    assert event["outcomeDesc"].startswith(f"HTTP {status}")


def test_a_refusal_says_its_reason() -> None:
    event = build(
        "read",
        outcome=403,
        claims=PATIENT_USER,
        resource_type="AuditEvent",
        resource_id="a1",
        reason="AuditEvent is readable only by admins and system clients",
    )
    assert event["outcomeDesc"] == (
        "HTTP 403: AuditEvent is readable only by admins and system clients"
    )


def test_the_person_is_the_requestor_and_the_app_acts_for_them() -> None:
    event = build("read", outcome=200, claims=CLINICIAN, client_ip="192.0.2.7")
    user, app = event["agent"]
    # fhirUser is absolute in id_tokens; the agent keeps the relative Type/id.
    assert user["who"]["reference"] == "Practitioner/7"
    assert user["who"]["identifier"] == {"system": SUBJECT_SYSTEM, "value": "acct-7"}
    assert user["requestor"] is True
    assert user["network"] == {"address": "192.0.2.7", "type": "2"}
    assert user["role"] == [{"text": "practitioner"}]
    assert app["who"]["identifier"] == {"system": CLIENT_ID_SYSTEM, "value": "dashboard"}
    assert app["requestor"] is False
    assert app["type"]["coding"][0]["code"] == "110150"  # DCM Application


def test_a_backend_client_is_the_requestor_itself() -> None:
    event = build("search-system", outcome=200, claims=BACKEND, query="_type=Patient")
    (app,) = event["agent"]
    assert app["who"]["identifier"]["value"] == "region-ehr"
    assert app["requestor"] is True


def test_someone_without_a_token_is_recorded_by_address() -> None:
    event = build("login", outcome=400, client_ip="203.0.113.9", reason="wrong SMS code")
    (agent,) = event["agent"]
    assert agent["requestor"] is True
    assert agent["network"]["address"] == "203.0.113.9"
    assert "who" not in agent


def test_the_resource_version_is_the_entity_and_the_patient_a_second_one() -> None:
    event = build(
        "read",
        outcome=200,
        claims=PATIENT_USER,
        resource_type="Observation",
        resource_id="o1",
        version=3,
        patient_ids=("p1",),
    )
    data, patient = event["entity"]
    assert data["what"] == {"reference": "Observation/o1/_history/3"}
    assert data["role"]["code"] == "4"  # object-role Domain Resource
    assert patient["what"] == {"reference": "Patient/p1"}
    assert (patient["type"]["code"], patient["role"]["code"]) == ("1", "1")  # Person, Patient


def test_reading_a_patient_makes_one_entity_that_is_both() -> None:
    event = build(
        "read",
        outcome=200,
        resource_type="Patient",
        resource_id="p1",
        version=1,
        patient_ids=("p1", "p1"),
    )
    (entity,) = event["entity"]
    assert entity["what"] == {"reference": "Patient/p1/_history/1"}
    assert entity["role"]["code"] == "1"


def test_a_search_carries_its_query_base64() -> None:
    query = "subject=Patient/p1&code=http://loinc.org|55423-8"
    event = build(
        "search-type",
        outcome=200,
        claims=BACKEND,
        resource_type="Observation",
        query=query,
        patient_ids=("p1",),
    )
    search, patient = event["entity"]
    assert base64.b64decode(search["query"]).decode() == query
    assert search["role"]["code"] == "24"  # object-role Query
    assert search["description"] == "Observation"
    assert patient["what"]["reference"] == "Patient/p1"


def test_an_operation_names_itself_in_a_second_subtype() -> None:
    event = build("operation", outcome=200, operation="everything", resource_type="Patient")
    assert codes(event["subtype"]) == {
        (RESTFUL_INTERACTION, "operation"),
        (OPERATION_SYSTEM, "everything"),
    }
    exported = build("export", outcome=202, claims=BACKEND)
    assert (OPERATION_SYSTEM, "export") in codes(exported["subtype"])


def test_the_observer_is_this_server_an_application_server() -> None:
    event = build("read", outcome=200)
    assert event["source"]["site"] == "https://selfback.example/fhir"
    assert event["source"]["type"] == [
        {
            "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
            "code": "4",
            "display": "Application Server",
        }
    ]


def test_no_id_or_meta_storage_assigns_them() -> None:
    event = build("create", outcome=201, resource_type="Observation", resource_id="o1", version=1)
    assert "id" not in event and "meta" not in event


@pytest.mark.parametrize(
    ("rtype", "query", "patients"),
    [
        ("Observation", "subject=Patient/p1&code=http://loinc.org|55423-8", ("p1",)),
        ("Observation", "patient=p1,p2", ("p1", "p2")),
        ("Observation", "subject:Patient=https://other.example/fhir/Patient/p3", ("p3",)),
        ("Observation", "subject=Group/g1", ()),  # not a patient
        ("Observation", "code=55423-8", ()),
        ("CarePlan", "performer=Patient/p4", ("p4",)),  # a compartment parameter
        ("Patient", "_id=p5", ("p5",)),
        ("Observation", "_id=o1", ()),  # an Observation's id is not a patient
        ("Observation", "subject=Patient%2Fp6", ("p6",)),  # URL-encoded
    ],
)
def test_a_search_names_its_patients_when_the_query_does(
    rtype: str, query: str, patients: tuple[str, ...]
) -> None:
    """BALP "Query with Patient": the patient a search asks about is an entity too."""
    assert patients_in_query(rtype, query) == patients


# -- index rows ----------------------------------------------------------------------------
# The trail stores the rows balp.index_rows computes instead of extracting them; a search
# over AuditEvents can only give the same results if they are exactly the rows extraction
# makes, for every kind of record the builder turns into an event.

ANONYMOUS_PERSON = Claims(client_id="", scopes=parse("patient/*.rs"), subject="acct-9")
ODD_USER = Claims(
    client_id="odd-app",
    scopes=parse("user/*.rs"),
    subject="acct-3",
    role="admin",
    fhir_user="RelatedPerson",  # no type/id: kept as is, not a resolvable reference
)
INDEX_ACTIONS = [case[0] for case in FHIR_CASES] + [
    "search-compartment",
    "login",
    "logout",
    "token",
    "introspect",
    "revoke",
    "launch",
    "activation-code",
    "something-new",  # unknown actions are recorded as operations
]
INDEX_CLAIMS = [None, PATIENT_USER, CLINICIAN, BACKEND, ANONYMOUS_PERSON, ODD_USER]
# (resource_type, resource_id, version, patient_ids)
INDEX_TARGETS = [
    (None, None, None, ()),
    ("Observation", "o1", 3, ()),
    ("Observation", "o1", None, ("p1",)),
    ("Observation", "o-2.x", 1, ("p1", "p2", "p1", "")),
    ("Patient", "p1", 2, ("p1",)),
    ("Patient", "p1", None, ("p1", "p9")),
    ("Observation", None, None, ("p5",)),  # a type-level search naming a patient
    ("Organization", "org-1", 1, ()),
]
INDEX_QUERIES = [None, "", "patient=Patient/p1&code=8867-4", "_id=x&_count=10"]
INDEX_EXTRAS = [
    {},
    {"client_ip": "203.0.113.9"},
    {"client_id": "override-client", "client_ip": "::1", "reason": "refused: no scope"},
    {"operation": "everything", "client_ip": "10.0.0.1"},
]


def index_cases() -> list[tuple[str, AccessRecord]]:
    cases = []
    for action in INDEX_ACTIONS:
        for n, claims in enumerate(INDEX_CLAIMS):
            for m, (rtype, rid, version, patients) in enumerate(INDEX_TARGETS):
                for k, query in enumerate(INDEX_QUERIES):
                    extra = INDEX_EXTRAS[(n + m + k) % len(INDEX_EXTRAS)]
                    outcome = (200, 201, 401, 403, 404, 500)[(n + m + k) % 6]
                    record = AccessRecord(
                        action=action,
                        outcome=outcome,
                        at_us=AT + n * 1_000 + m,
                        claims=claims,
                        client_id=extra.get("client_id") or (claims.client_id if claims else None),
                        resource_type=rtype,
                        resource_id=rid,
                        version=version,
                        patient_ids=patients,
                        query=query,
                        operation=extra.get("operation"),
                        client_ip=extra.get("client_ip"),
                        reason=extra.get("reason", ""),
                    )
                    cases.append((f"{action}-{n}-{m}-{k}", record))
    return cases


def test_index_rows_equal_extraction_for_every_kind_of_record() -> None:
    """Table-driven over every action kind, every kind of caller (none, patient app,
    clinician with an absolute fhirUser, backend client, a person without fhirUser, an odd
    fhirUser), with and without resource, version, patients (repeated, empty, the resource
    itself), query, client and IP: the rows are exactly extract_index_rows' rows under the
    R4 core parameters, table by table and in the same order -- of the event as built (what
    write_version would extract) and of the stored body (what a reindex extracts). Each
    event twice: once computed, once from the memo."""
    from fhir_server.audit.balp import index_rows
    from fhir_server.search import extract_index_rows, registry
    from fhir_server.versioning import stamp

    core = registry()
    cases = index_cases()
    assert len(cases) == len(INDEX_ACTIONS) * len(INDEX_CLAIMS) * len(INDEX_TARGETS) * 4
    kinds: set[tuple[str, ...]] = set()
    for label, record in cases:
        event = audit_event(record, SERVER)
        expected = extract_index_rows(event, core)
        assert index_rows(event) == expected, label
        assert index_rows(event) == expected, label  # memoised parts
        stored = orjson.loads(stamp(event, "a1", 1, AT))
        assert extract_index_rows(stored, core) == expected, label
        kinds.add(tuple(sorted({row["param"] for rows in expected.values() for row in rows})))
    # The table reaches every AuditEvent parameter the builder can fill.
    reached = {param for kind in kinds for param in kind}
    assert reached >= {
        "action", "address", "agent", "agent:identifier", "agent-role", "date", "entity",
        "entity-role", "entity-type", "outcome", "patient", "patient:identifier", "site",
        "subtype", "type",
    }  # fmt: skip


def test_index_rows_are_fresh_dicts_each_time() -> None:
    """The memo hands out copies: a caller changing a row cannot change the next event's."""
    from fhir_server.audit.balp import index_rows

    event = build("read", outcome=200, claims=BACKEND, resource_type="Patient", resource_id="p1")
    first = index_rows(event)
    first["sp_token"][0]["code"] = "changed"
    assert index_rows(event)["sp_token"][0]["code"] != "changed"


def bundle_record(n_entities: int, outcome: int = 200) -> AccessRecord:
    interactions = ("create", "update", "patch", "delete")
    entities = tuple(
        (
            "Patient" if i % 5 == 0 else "Observation",
            f"r{i}",
            1 + i % 3,
            interactions[i % len(interactions)],
        )
        for i in range(n_entities)
    )
    return AccessRecord(
        action="transaction",
        outcome=outcome,
        at_us=AT,
        claims=INDEX_CLAIMS[1],
        client_id="loader",
        entities=entities,
        patient_ids=("r0", "p-other"),
        client_ip="192.0.2.1",
    )


def test_a_bundle_is_one_event_with_an_entity_per_write_and_its_lifecycle() -> None:
    event = audit_event(bundle_record(6), SERVER)
    assert event["subtype"] == [
        {"system": "http://hl7.org/fhir/restful-interaction", "code": "transaction"}
    ]
    written = [e for e in event["entity"] if "lifecycle" in e]
    assert [e["what"]["reference"] for e in written] == [
        "Patient/r0/_history/1",
        "Observation/r1/_history/2",
        "Observation/r2/_history/3",
        "Observation/r3/_history/1",
        "Observation/r4/_history/2",
        "Patient/r5/_history/3",
    ]
    # DICOM ParticipantObjectDataLifeCycle: 1 creation, 3 amendment, 14 logical deletion
    assert [e["lifecycle"]["code"] for e in written] == ["1", "3", "3", "14", "1", "3"]
    assert written[0]["role"]["code"] == "1" and written[0]["type"]["code"] == "1"
    assert written[1]["role"]["code"] == "4" and written[1]["type"]["code"] == "2"
    # the patient written is not repeated as a second entity; another patient named is
    patients = [e["what"]["reference"] for e in event["entity"] if "lifecycle" not in e]
    assert patients == ["Patient/p-other"]
    validate_resource(event, expected_type="AuditEvent")


@pytest.mark.parametrize("n_entities", [1, 4, 5, 100])
def test_index_rows_equal_extraction_for_bundle_events(n_entities: int) -> None:
    """Many entities are converted without the memo (each Bundle is unique): the rows
    must still be extraction's rows, and the memo must not keep them."""
    from fhir_server.audit import balp
    from fhir_server.search import extract_index_rows, registry

    event = audit_event(bundle_record(n_entities), SERVER)
    before = len(balp._MEMO)
    assert balp.index_rows(event) == extract_index_rows(event, registry())
    if n_entities > balp._MEMO_PART_MAX:
        assert not any(
            key == "entity" and len(orjson.loads(value)) > balp._MEMO_PART_MAX
            for key, value in balp._MEMO
        )
    assert len(balp._MEMO) <= before + 3
