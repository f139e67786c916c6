"""The negative-test matrix (issue 4, "Done when"): resource types x interactions x scope
kinds (patient/user/system, SMART v1 and v2) answer allow or deny as docs/AUTH.md
specifies, over HTTP against the real server. Tokens come from tests/auth/access_world.py
(one per scope kind, reused); the expected answers are the table in that module."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from fhir_server.access.compartment import PATIENT_COMPARTMENT
from fhir_server.access.decision import SHARED_TYPES
from fhir_server.definitions import R4_RESOURCE_TYPES
from tests.auth.access_world import (
    KINDS,
    REPRESENTATIVE,
    SCOPE_KINDS,
    World,
    body_for,
    expected_read,
    expected_search,
    permission,
)

pytestmark = pytest.mark.db

OWNERS = {
    "Patient": ("a", "b"),
    "Observation": ("a", "b", "ab"),
    "QuestionnaireResponse": ("a", "b"),
    "CarePlan": ("a", "b"),
    "Goal": ("a", "b"),
    "Consent": ("a", "b"),
    "Questionnaire": ("shared",),
    "Practitioner": ("shared",),
    "Group": ("group",),
    "AuditEvent": ("audit",),
}
READ_CASES = [
    (kind.name, rtype, owner)
    for kind in SCOPE_KINDS
    for rtype in REPRESENTATIVE
    for owner in OWNERS[rtype]
]


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=60) as client:
        yield client


def ids_of(bundle: dict[str, Any], mode: str = "match") -> set[str]:
    return {
        e["resource"]["id"]
        for e in bundle.get("entry", [])
        if "resource" in e
        and e.get("search", {}).get("mode", "match") == mode
        and e["resource"]["resourceType"] != "OperationOutcome"
    }


# -- read, vread, instance history -------------------------------------------------------------


@pytest.mark.parametrize(("kind", "rtype", "owner"), READ_CASES)
def test_read_vread_and_instance_history(
    world: World, http: httpx.Client, kind: str, rtype: str, owner: str
) -> None:
    rid = world.ids[(rtype, owner)]
    want = expected_read(KINDS[kind], rtype, owner)
    headers = world.as_(kind)
    for path in (f"{rtype}/{rid}", f"{rtype}/{rid}/_history/1", f"{rtype}/{rid}/_history"):
        response = http.get(f"{world.fhir}/{path}", headers=headers)
        assert response.status_code == want, (path, response.text)
        if want != 200:
            assert response.json()["resourceType"] == "OperationOutcome"
    if want == 404:
        # exactly what an unknown id gets: nothing tells "exists, not yours" apart
        unknown = http.get(f"{world.fhir}/{rtype}/no-such-{rid}", headers=headers)
        seen = http.get(f"{world.fhir}/{rtype}/{rid}", headers=headers)
        assert unknown.status_code == 404
        assert seen.json()["issue"][0]["code"] == unknown.json()["issue"][0]["code"]
        assert seen.json()["issue"][0]["diagnostics"].replace(rid, "X") == (
            unknown.json()["issue"][0]["diagnostics"].replace(f"no-such-{rid}", "X")
        )


# -- search, compartment search, type history --------------------------------------------------


@pytest.mark.parametrize("kind", [k.name for k in SCOPE_KINDS])
@pytest.mark.parametrize("rtype", REPRESENTATIVE)
def test_search_returns_exactly_what_reads_allow(
    world: World, http: httpx.Client, kind: str, rtype: str
) -> None:
    ids = {world.ids[(rtype, o)]: o for o in OWNERS[rtype]}
    response = http.get(
        f"{world.fhir}/{rtype}", params={"_id": ",".join(ids)}, headers=world.as_(kind)
    )
    want = expected_search(KINDS[kind], rtype)
    assert response.status_code == want, response.text
    if want != 200:
        return
    visible = {i for i, o in ids.items() if expected_read(KINDS[kind], rtype, o) == 200}
    assert ids_of(response.json()) == visible
    # the same through POST _search and a system search with _type
    posted = http.post(
        f"{world.fhir}/{rtype}/_search", data={"_id": ",".join(ids)}, headers=world.as_(kind)
    )
    assert ids_of(posted.json()) == visible
    system = http.get(
        world.fhir, params={"_type": rtype, "_id": ",".join(ids)}, headers=world.as_(kind)
    )
    if system.status_code == 200:
        assert ids_of(system.json()) <= visible


@pytest.mark.parametrize("kind", [k.name for k in SCOPE_KINDS])
def test_compartment_search_never_crosses_patients(
    world: World, http: httpx.Client, kind: str
) -> None:
    k = KINDS[kind]
    for owner in ("a", "b"):
        pid = world.ids[("Patient", owner)]
        for rtype in ("Observation", "Goal"):
            response = http.get(f"{world.fhir}/Patient/{pid}/{rtype}", headers=world.as_(kind))
            want = expected_search(k, rtype)
            assert response.status_code == want, response.text
            if want == 200:
                found = ids_of(response.json())
                mine = world.ids[(rtype, owner)]
                assert (mine in found) == (expected_read(k, rtype, owner) == 200)
                assert world.ids[(rtype, "b" if owner == "a" else "a")] not in found
        everything = http.get(f"{world.fhir}/Patient/{pid}/*", headers=world.as_(kind))
        if everything.status_code == 200:
            for (rtype, o), rid in world.ids.items():
                if rid in ids_of(everything.json()):
                    assert expected_read(k, rtype, o) == 200, (rtype, o)


@pytest.mark.parametrize("kind", [k.name for k in SCOPE_KINDS])
@pytest.mark.parametrize("rtype", ("Observation", "Patient", "Group", "AuditEvent"))
def test_type_and_system_history_hold_only_readable_versions(
    world: World, http: httpx.Client, kind: str, rtype: str
) -> None:
    k = KINDS[kind]
    response = http.get(
        f"{world.fhir}/{rtype}/_history", params={"_count": "1000"}, headers=world.as_(kind)
    )
    want = 403 if not permission(k, rtype, "r") else expected_search(k, rtype)
    assert response.status_code == want, response.text
    if want != 200:
        return
    found = {e["resource"]["id"] for e in response.json().get("entry", []) if "resource" in e}
    for owner in OWNERS[rtype]:
        rid = world.ids[(rtype, owner)]
        if expected_read(k, rtype, owner) != 200:
            assert rid not in found, owner
    system = http.get(f"{world.fhir}/_history", params={"_count": "1000"}, headers=world.as_(kind))
    if system.status_code == 200:
        everything = {
            (e["resource"]["resourceType"], e["resource"]["id"])
            for e in system.json().get("entry", [])
            if "resource" in e
        }
        for (t, owner), rid in world.ids.items():
            if expected_read(k, t, owner) != 200:
                assert (t, rid) not in everything, (t, owner)


# -- every R4 type: read and search -----------------------------------------------------------

REACHABLE_WITH_PATIENT_SCOPES = (set(PATIENT_COMPARTMENT) | {"Patient"} | set(SHARED_TYPES)) - {
    "Group",
    "AuditEvent",
}


@pytest.mark.parametrize("rtype", sorted(R4_RESOURCE_TYPES))
def test_every_type_read_and_search(world: World, http: httpx.Client, rtype: str) -> None:
    read = f"{world.fhir}/{rtype}/matrix-absent"
    search = f"{world.fhir}/{rtype}"
    # no token: 401 everywhere (INF-G6)
    assert http.get(read).status_code == 401
    assert http.get(search).status_code == 401
    # patient/*.cruds: types a patient scope can reach answer (404 for an absent id, an
    # empty or own-data Bundle); the rest are refused whatever the id
    patient = world.as_("patient-v2-cruds")
    reachable = rtype in REACHABLE_WITH_PATIENT_SCOPES
    assert http.get(read, headers=patient).status_code == (404 if reachable else 403)
    searched = http.get(search, params={"_count": "5"}, headers=patient)
    assert searched.status_code == (200 if reachable else 403), searched.text
    # system/Observation.rs: Observation only
    obs = world.as_("system-v2-obs-rs")
    assert http.get(read, headers=obs).status_code == (404 if rtype == "Observation" else 403)
    assert http.get(search, headers=obs).status_code == (200 if rtype == "Observation" else 403)


# -- create, update, patch, delete --------------------------------------------------------------

WRITE_TYPES = ("Observation", "Patient", "Questionnaire", "Group", "AuditEvent")
LETTER = {"create": "c", "update": "u", "patch": "u", "delete": "d"}
SUCCESS = {"create": 201, "update": 200, "patch": 200, "delete": 204}


def expected_write(kind_name: str, rtype: str, owner: str, interaction: str) -> int:
    """The status of ``interaction`` on a resource of ``owner`` (a, b) of ``rtype``."""
    k = KINDS[kind_name]
    if not permission(k, rtype, LETTER[interaction]):
        return 403
    if rtype == "AuditEvent":  # append-only; recorded by backend clients
        return 201 if interaction == "create" and k.context == "system" else 403
    ok = SUCCESS[interaction]
    if k.context == "system" or k.role == "admin":
        return ok
    if k.context == "patient":
        if rtype in ("Group", "Questionnaire") or (rtype == "Patient" and interaction == "create"):
            return 403
        if k.role == "patient" and rtype == "Patient" and interaction == "delete" and owner == "a":
            return 403  # write authority: a patient never deletes its record
    elif rtype in ("Questionnaire",) or (rtype == "Patient" and interaction == "create"):
        return ok  # not a patient's data: a user scope alone decides
    if owner == "a" and (k.context == "patient" or k.user == "consented"):
        return ok
    if interaction == "create":
        return 403
    return 204 if interaction == "delete" else 404  # as for a resource that is not there


WRITE_CASES = [
    (kind.name, rtype, owner, interaction)
    for kind in SCOPE_KINDS
    for rtype in WRITE_TYPES
    for interaction in ("create", "update", "patch", "delete")
    for owner in (("a",) if interaction == "create" else ("a", "b"))
]


def _fresh(world: World, rtype: str, owner: str) -> dict[str, Any]:
    patient = world.a if owner == "a" else world.b
    if rtype == "Patient":
        # A's own record is A itself (restored after the test); "b" is a new patient
        pid = world.a if owner == "a" else world.smart.new_patient("Fresh")
        return {**body_for("Patient", patient, tag="Andersen-matrix"), "id": pid}
    body = body_for(rtype, patient)
    return {**body, "id": world.create(body)}


@pytest.mark.parametrize(("kind", "rtype", "owner", "interaction"), WRITE_CASES)
def test_writes(
    world: World, http: httpx.Client, kind: str, rtype: str, owner: str, interaction: str
) -> None:
    want = expected_write(kind, rtype, owner, interaction)
    headers = world.as_(kind)
    if interaction == "create":
        body = body_for(rtype, world.a)
        response = http.post(f"{world.fhir}/{rtype}", json=body, headers=headers)
        assert response.status_code == want, response.text
        return
    target = _fresh(world, rtype, owner)
    url = f"{world.fhir}/{rtype}/{target['id']}"
    if interaction == "update":
        changed = (
            {**target, "language": "en"} if rtype != "Patient" else target | {"gender": "other"}
        )
        response = http.put(url, json=changed, headers=headers)
    elif interaction == "patch":
        ops = [{"op": "add", "path": "/language", "value": "da"}]
        response = http.patch(
            url,
            content=orjson.dumps(ops),
            headers={**headers, "Content-Type": "application/json-patch+json"},
        )
    else:
        response = http.delete(url, headers=headers)
    assert response.status_code == want, response.text
    still = http.get(url, headers=world.admin())
    if interaction == "delete":
        # a delete of what the token cannot see answers like an absent one and writes nothing
        deleted = want == 204 and sees(KINDS[kind], rtype, owner)
        assert still.status_code == (410 if deleted else 200)
    elif want != 200:
        assert still.json().get("language") is None  # nothing was written
    if rtype == "Patient" and target["id"] == world.a:
        world.put(body_for("Patient", world.a, tag="Andersen-matrix") | {"id": world.a})


def sees(k: Any, rtype: str, owner: str) -> bool:
    """Whether a token of kind ``k`` can see the resource it writes."""
    if k.context == "system" or k.role == "admin":
        return True
    if rtype == "Questionnaire":
        return k.context == "user"
    if rtype == "Group" and k.context == "patient":
        return False
    return owner == "a" and (k.context == "patient" or k.user == "consented")


# -- batch and transaction entries -----------------------------------------------------------


@pytest.mark.parametrize("kind", [k.name for k in SCOPE_KINDS])
def test_batch_entries_are_decided_one_by_one(world: World, http: httpx.Client, kind: str) -> None:
    k = KINDS[kind]
    mine, theirs = world.ids[("Observation", "a")], world.ids[("Observation", "b")]
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"request": {"method": "GET", "url": f"Observation/{mine}"}},
            {"request": {"method": "GET", "url": f"Observation/{theirs}"}},
            {"request": {"method": "GET", "url": f"Observation?_id={mine},{theirs}"}},
            {
                "resource": body_for("Observation", world.b),
                "request": {"method": "POST", "url": "Observation"},
            },
            {
                "resource": body_for("Observation", world.a),
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    response = http.post(world.fhir, json=bundle, headers=world.as_(kind))
    assert response.status_code == 200, response.text
    entries = response.json()["entry"]
    status = [int(e["response"]["status"].split()[0]) for e in entries]
    assert status[0] == expected_read(k, "Observation", "a")
    assert status[1] == expected_read(k, "Observation", "b")
    assert status[2] == expected_search(k, "Observation")
    if status[2] == 200:
        visible = {
            i for i, o in ((mine, "a"), (theirs, "b")) if expected_read(k, "Observation", o) == 200
        }
        assert ids_of(entries[2]["resource"]) == visible
    assert status[3] == expected_write(kind, "Observation", "b", "create")
    assert status[4] == expected_write(kind, "Observation", "a", "create")


@pytest.mark.parametrize("kind", [k.name for k in SCOPE_KINDS])
def test_a_refused_transaction_entry_fails_the_whole_bundle(
    world: World, http: httpx.Client, kind: str
) -> None:
    tag = f"tx-{kind}"
    entries = [
        {
            "fullUrl": f"urn:uuid:00000000-0000-4000-8000-00000000000{i}",
            "resource": body_for("Observation", patient, tag=tag),
            "request": {"method": "POST", "url": "Observation"},
        }
        for i, patient in enumerate((world.a, world.b))
    ]
    response = http.post(
        world.fhir,
        json={"resourceType": "Bundle", "type": "transaction", "entry": entries},
        headers=world.as_(kind),
    )
    want_a = expected_write(kind, "Observation", "a", "create")
    want_b = expected_write(kind, "Observation", "b", "create")
    written = http.get(
        f"{world.fhir}/Observation", params={"category": tag}, headers=world.admin()
    ).json()
    if want_a == want_b == 201:
        assert response.status_code == 200, response.text
        assert len(ids_of(written)) >= 2
    else:
        refused = want_a if want_a != 201 else want_b
        assert response.status_code == refused, response.text
        assert ids_of(written) == set()  # nothing of the Bundle was written


# -- operations ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [k.name for k in SCOPE_KINDS])
def test_operations(world: World, http: httpx.Client, kind: str) -> None:
    k = KINDS[kind]
    headers = world.as_(kind)
    validate = http.post(
        f"{world.fhir}/Observation/$validate",
        json=body_for("Observation", world.a),
        headers=headers,
    )
    any_scope = any(permission(k, "Observation", x) for x in "cruds")
    assert validate.status_code == (200 if any_scope else 403), validate.text
    for owner in ("a", "b"):
        qr = world.ids[("QuestionnaireResponse", owner)]
        extract = http.post(f"{world.fhir}/QuestionnaireResponse/{qr}/$extract", headers=headers)
        want = expected_read(k, "QuestionnaireResponse", owner)
        if want == 200:
            assert extract.status_code not in (401, 403, 404), extract.text
        else:
            assert extract.status_code == want, extract.text
    reindex = http.post(f"{world.fhir}/Questionnaire/$reindex", headers=headers)
    admin_like = k.role == "admin" or (
        k.context == "system" and any(permission(k, "*", x) for x in "cud")
    )
    assert reindex.status_code == (200 if admin_like else 403), reindex.text


def test_explain_needs_the_opt_in_and_an_admin_or_a_system_writer(world: World) -> None:
    """_explain shows SQL and plans: answered only where the installation opted in
    (SELFBACK_SEARCH_EXPLAIN=1) and only to admins and system/ clients that may write."""
    from tests.conftest import start_server, stop_server

    smart = world.smart
    for opted_in in (False, True):
        if opted_in:
            # a second process on the same database: the same tokens, the opt-in set
            server = start_server(
                smart.database_url,
                smart.data_dir / "explain",
                SELFBACK_AUTH="smart",
                SELFBACK_SEARCH_EXPLAIN="1",
                SELFBACK_LOAD_CONTENT="0",
            )
            fhir = server.fhir
        else:
            fhir = world.fhir
        try:
            for kind, allowed in (
                ("patient-v2-cruds", False),
                ("system-v1-read", False),
                ("user-v2-consented", False),
                ("user-v2-admin", True),
                ("system-v2-cruds", True),
            ):
                response = httpx.get(
                    f"{fhir}/Observation", params={"_explain": "true"}, headers=world.as_(kind)
                )
                assert response.status_code == 200
                assert (b"plan:" in response.content) == (allowed and opted_in), kind
        finally:
            if opted_in:
                stop_server(server)


def test_patch_in_a_transaction_is_decided(world: World, http: httpx.Client) -> None:
    theirs = world.ids[("Observation", "b")]
    ops = base64.b64encode(orjson.dumps([{"op": "add", "path": "/language", "value": "da"}]))
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {
                    "resourceType": "Binary",
                    "contentType": "application/json-patch+json",
                    "data": ops.decode(),
                },
                "request": {"method": "PATCH", "url": f"Observation/{theirs}"},
            }
        ],
    }
    response = http.post(world.fhir, json=bundle, headers=world.as_("patient-v2-cruds"))
    assert response.status_code == 404, response.text
