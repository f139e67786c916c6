"""No existence leak (issue 4 item 7: "another patient's resource reads as 404"): patient
A's token against patient B's existing resource, B's deleted resource and an id that never
existed must get answers that cannot be told apart -- the same status and the same
OperationOutcome (issue code and diagnostics, with the id itself masked) -- through
update-as-create, conditional update, read, vread, history, patch and Bundle entries.
Also: a Bundle read of a type out of the token's reach is a 403 whatever the id, and a
query scope's values match the same whether percent-encoded or not (docs/AUTH.md)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest

from tests.auth.access_world import CATEGORY, World, body_for
from tests.auth.smart_app import bearer

pytestmark = pytest.mark.db

JSON_PATCH = {"Content-Type": "application/json-patch+json"}
SURVEY = f"{CATEGORY}|survey"


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=60) as client:
        yield client


class Ids:
    """B's existing, B's deleted and never-existing ids of one type, and A's own."""

    def __init__(self, world: World, http: httpx.Client, rtype: str) -> None:
        self.rtype = rtype
        self.b_existing = world.create(body_for(rtype, world.b))
        self.b_deleted = world.create(body_for(rtype, world.b))
        deleted = http.delete(f"{world.fhir}/{rtype}/{self.b_deleted}", headers=world.admin())
        assert deleted.status_code == 204, deleted.text
        self.never = f"never-{secrets.token_hex(6)}"
        self.a_own = world.create(body_for(rtype, world.a))
        self.a_deleted = world.create(body_for(rtype, world.a))
        deleted = http.delete(f"{world.fhir}/{rtype}/{self.a_deleted}", headers=world.admin())
        assert deleted.status_code == 204, deleted.text

    @property
    def hidden(self) -> dict[str, str]:
        return {"existing": self.b_existing, "deleted": self.b_deleted, "never": self.never}


@pytest.fixture(scope="module")
def obs(world: World, http: httpx.Client) -> Ids:
    return Ids(world, http, "Observation")


@pytest.fixture(scope="module")
def goals(world: World, http: httpx.Client) -> Ids:
    return Ids(world, http, "Goal")


def answer(response: httpx.Response, masked: str) -> tuple[int, list[tuple[str, str]]]:
    """The status and the OperationOutcome's (code, diagnostics), the id masked."""
    body = response.json() if response.content else {}
    issues = [
        (i.get("code", ""), str(i.get("diagnostics", "")).replace(masked, "<id>"))
        for i in body.get("issue", [])
    ]
    return response.status_code, issues


def entry_answer(entry: dict[str, Any], masked: str) -> tuple[str, list[tuple[str, str]]]:
    response = entry["response"]
    outcome = response.get("outcome", {})
    issues = [
        (i.get("code", ""), str(i.get("diagnostics", "")).replace(masked, "<id>"))
        for i in outcome.get("issue", [])
    ]
    return response["status"], issues


def same_for_all(answers: dict[str, Any], status: int | str) -> None:
    """All answers equal, and the status is the expected one."""
    first = next(iter(answers.values()))
    assert all(a == first for a in answers.values()), answers
    assert str(first[0]).startswith(str(status)), answers


def batch(world: World, http: httpx.Client, headers: dict[str, str], *entries: Any) -> Any:
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": list(entries)}
    response = http.post(f"{world.fhir}/", json=bundle, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["entry"]


# -- 1. update as create ----------------------------------------------------------------------


def test_put_cannot_tell_hidden_deleted_and_free_ids_apart(
    world: World, http: httpx.Client, obs: Ids
) -> None:
    headers = world.as_("patient-v2-cruds")
    answers = {}
    for kind, id in obs.hidden.items():
        body = body_for("Observation", world.a) | {"id": id}
        answers[kind] = answer(
            http.put(f"{world.fhir}/Observation/{id}", json=body, headers=headers), id
        )
    same_for_all(answers, 404)
    assert answers["never"][1] == [("not-found", "Observation/<id> is not known")]
    # nothing was created or resurrected
    for id in obs.hidden.values():
        read = http.get(f"{world.fhir}/Observation/{id}", headers=world.admin())
        assert read.status_code in (200, 404, 410)
        if read.status_code == 200:
            assert read.json()["subject"]["reference"] == f"Patient/{world.b}"
    # its own resource it updates; creating goes through POST (server-assigned id)
    own = body_for("Observation", world.a) | {"id": obs.a_own, "valueInteger": 9}
    assert (
        http.put(f"{world.fhir}/Observation/{obs.a_own}", json=own, headers=headers).status_code
        == 200
    )
    created = http.post(
        f"{world.fhir}/Observation", json=body_for("Observation", world.a), headers=headers
    )
    assert created.status_code == 201
    # a deletion it could see may be re-created under its id
    again = body_for("Observation", world.a) | {"id": obs.a_deleted}
    put = http.put(f"{world.fhir}/Observation/{obs.a_deleted}", json=again, headers=headers)
    assert put.status_code == 201, put.text


def test_clinician_put_cannot_tell_unconsented_ids_apart(
    world: World, http: httpx.Client, obs: Ids
) -> None:
    token = world.mint(
        "user/*.cruds", role="practitioner", fhir_user=f"Practitioner/{world.stranger}"
    )
    answers = {}
    for kind, id in obs.hidden.items():
        body = body_for("Observation", world.b) | {"id": id}
        response = http.put(f"{world.fhir}/Observation/{id}", json=body, headers=bearer(token))
        answers[kind] = answer(response, id)
    same_for_all(answers, 404)


def test_create_only_token_gets_403_for_every_put(
    world: World, http: httpx.Client, obs: Ids
) -> None:
    token = world.mint("patient/Observation.c", role="patient", patient=world.a)
    answers = {}
    for kind, id in {**obs.hidden, "own": obs.a_own}.items():
        body = body_for("Observation", world.a) | {"id": id}
        response = http.put(f"{world.fhir}/Observation/{id}", json=body, headers=bearer(token))
        answers[kind] = answer(response, id)
    same_for_all(answers, 403)


def test_conditional_put_with_a_body_id_cannot_tell_ids_apart(
    world: World, http: httpx.Client, obs: Ids
) -> None:
    headers = world.as_("patient-v2-cruds")
    criteria = f"identifier=urn:x|{secrets.token_hex(6)}"
    answers = {}
    for kind, id in obs.hidden.items():
        body = body_for("Observation", world.a) | {"id": id}
        response = http.put(f"{world.fhir}/Observation?{criteria}", json=body, headers=headers)
        answers[kind] = answer(response, id)
    same_for_all(answers, 404)
    # without a body id the server assigns one: a create that reveals nothing
    response = http.put(
        f"{world.fhir}/Observation?{criteria}",
        json=body_for("Observation", world.a),
        headers=headers,
    )
    assert response.status_code == 201, response.text


def test_put_in_a_batch_cannot_tell_ids_apart(world: World, http: httpx.Client, obs: Ids) -> None:
    headers = world.as_("patient-v2-cruds")
    entries = [
        {
            "resource": body_for("Observation", world.a) | {"id": id},
            "request": {"method": "PUT", "url": f"Observation/{id}"},
        }
        for id in obs.hidden.values()
    ]
    results = batch(world, http, headers, *entries)
    answers = {
        kind: entry_answer(entry, id)
        for (kind, id), entry in zip(obs.hidden.items(), results, strict=True)
    }
    same_for_all(answers, 404)


def test_system_scopes_and_admins_keep_update_as_create(world: World, http: httpx.Client) -> None:
    for headers in (world.as_("system-v2-cruds"), world.as_("user-v2-admin")):
        id = f"chosen-{secrets.token_hex(6)}"
        body = body_for("Observation", world.b) | {"id": id}
        response = http.put(f"{world.fhir}/Observation/{id}", json=body, headers=headers)
        assert response.status_code == 201, response.text


# -- 2. deleted resources ---------------------------------------------------------------------


def test_read_vread_history_patch_of_deletions_cannot_be_told_apart(
    world: World, http: httpx.Client, obs: Ids
) -> None:
    headers = world.as_("patient-v2-cruds")
    base = f"{world.fhir}/Observation"
    patch = [{"op": "replace", "path": "/status", "value": "amended"}]
    versions = {
        "existing": "1",
        "deleted": "2",
        "never": "1",
    }  # v2 of the deleted one: the deletion
    probes = {
        "read": lambda id, kind: http.get(f"{base}/{id}", headers=headers),
        "vread": lambda id, kind: http.get(
            f"{base}/{id}/_history/{versions[kind]}", headers=headers
        ),
        "vread-v1": lambda id, kind: http.get(f"{base}/{id}/_history/1", headers=headers),
        "history": lambda id, kind: http.get(f"{base}/{id}/_history", headers=headers),
        "patch": lambda id, kind: http.patch(
            f"{base}/{id}",
            content=orjson.dumps(patch),
            headers={**headers, **JSON_PATCH},
        ),
    }
    for name, probe in probes.items():
        answers = {kind: answer(probe(id, kind), id) for kind, id in obs.hidden.items()}
        if name == "vread":
            answers = {
                k: (s, [(c, d.replace(f"version {versions[k]}", "version <v>")) for c, d in i])
                for k, (s, i) in answers.items()
            }
        same_for_all(answers, 404)


def test_own_deletion_answers_410(world: World, http: httpx.Client) -> None:
    headers = world.as_("patient-v2-cruds")
    # An activity Observation: what a patient may delete (a Goal is the clinician's or
    # the engine's; docs/AUTH.md "Write authority").
    own = world.create(body_for("Observation", world.a, tag="activity"))
    assert http.delete(f"{world.fhir}/Observation/{own}", headers=headers).status_code == 204
    assert http.get(f"{world.fhir}/Observation/{own}", headers=headers).status_code == 410
    assert (
        http.get(f"{world.fhir}/Observation/{own}/_history/2", headers=headers).status_code == 410
    )
    assert (
        http.get(f"{world.fhir}/Observation/{own}/_history/1", headers=headers).status_code == 200
    )
    patched = http.patch(
        f"{world.fhir}/Observation/{own}", content=b"[]", headers={**headers, **JSON_PATCH}
    )
    assert patched.status_code == 410
    entry = batch(
        world, http, headers, {"request": {"method": "GET", "url": f"Observation/{own}"}}
    )[0]
    assert entry["response"]["status"].startswith("410")


def test_bundle_reads_of_deletions_cannot_be_told_apart(
    world: World, http: httpx.Client, goals: Ids
) -> None:
    headers = world.as_("patient-v2-cruds")
    kinds = list(goals.hidden.items())
    entries = [{"request": {"method": "GET", "url": f"Goal/{id}"}} for _, id in kinds]
    results = batch(world, http, headers, *entries)
    answers = {kind: entry_answer(e, id) for (kind, id), e in zip(kinds, results, strict=True)}
    same_for_all(answers, 404)
    entries = [
        {"request": {"method": "GET", "url": f"Goal/{goals.b_deleted}/_history/2"}},
        {"request": {"method": "GET", "url": f"Goal/{goals.never}/_history/2"}},
        {"request": {"method": "GET", "url": f"Goal/{goals.b_existing}/_history/2"}},
    ]
    results = batch(world, http, headers, *entries)
    ids = [goals.b_deleted, goals.never, goals.b_existing]
    answers = {id: entry_answer(e, id) for id, e in zip(ids, results, strict=True)}
    same_for_all(answers, 404)


# -- 3. Bundle reads of a type out of reach -----------------------------------------------------


def test_bundle_read_of_a_type_without_scope_is_403_whatever_the_id(
    world: World, http: httpx.Client, goals: Ids
) -> None:
    headers = bearer(world.mint("patient/Observation.rs", role="patient", patient=world.a))
    ids = {**goals.hidden, "own": goals.a_own}
    direct = {
        k: answer(http.get(f"{world.fhir}/Goal/{id}", headers=headers), id) for k, id in ids.items()
    }
    same_for_all(direct, 403)
    entries = [{"request": {"method": "GET", "url": f"Goal/{id}"}} for id in ids.values()]
    entries += [
        {"request": {"method": "GET", "url": f"Goal/{id}/_history/1"}} for id in ids.values()
    ]
    entries += [{"request": {"method": "DELETE", "url": f"Goal/{id}"}} for id in ids.values()]
    results = batch(world, http, headers, *entries)
    assert all(e["response"]["status"].startswith("403") for e in results), results


# -- 4. query scopes, percent-encoded or not ----------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        f"category={SURVEY}",  # SMART's own example (scopes-and-launch-context.html)
        f"category={quote(SURVEY, safe='')}",
    ],
    ids=["literal", "percent-encoded"],
)
def test_query_scope_matches_the_same_on_search_and_read(
    world: World, http: httpx.Client, query: str
) -> None:
    survey = world.create(body_for("Observation", world.a, tag="survey"))
    lab = world.create(body_for("Observation", world.a, tag="laboratory"))
    token = world.mint(f"patient/Observation.rs?{query}", role="patient", patient=world.a)
    headers = bearer(token)
    assert http.get(f"{world.fhir}/Observation/{survey}", headers=headers).status_code == 200
    found = http.get(
        f"{world.fhir}/Observation", params={"_id": f"{survey},{lab}"}, headers=headers
    )
    assert found.status_code == 200
    assert {e["resource"]["id"] for e in found.json().get("entry", [])} == {survey}
    # outside the query: as unknown, indistinguishable from an id that never existed
    never = f"never-{secrets.token_hex(6)}"
    answers = {
        id: answer(http.get(f"{world.fhir}/Observation/{id}", headers=headers), id)
        for id in (lab, never)
    }
    same_for_all(answers, 404)


def test_vread_is_decided_on_the_version_read(world: World, http: httpx.Client) -> None:
    """A resource that moved from A's compartment to B's: A may vread the version that
    was A's, and nothing after it (each version decided on its own body)."""
    headers = world.as_("patient-v2-cruds")
    moved = world.create(body_for("Observation", world.a))
    to_b = body_for("Observation", world.b) | {"id": moved}
    assert world.put(to_b).status_code == 200
    base = f"{world.fhir}/Observation/{moved}"
    assert http.get(f"{base}/_history/1", headers=headers).status_code == 200
    assert http.get(f"{base}/_history/2", headers=headers).status_code == 404
    assert http.get(base, headers=headers).status_code == 404
    # deleted after the move: decided on the version before the deletion (B's), so 404
    assert http.delete(base, headers=world.admin()).status_code == 204
    answers = {
        id: answer(http.get(f"{world.fhir}/Observation/{id}", headers=headers), id)
        for id in (moved, f"never-{secrets.token_hex(6)}")
    }
    same_for_all(answers, 404)
    assert http.get(f"{base}/_history/1", headers=headers).status_code == 200
