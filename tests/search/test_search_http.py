"""Search through the real server (tests/conftest.py ``fhir``: SQLite, or PostgreSQL in
the ``-m db`` pass): compartment routes, ``POST [type]/_search``, system search with
``_type``, ``_explain`` refused by default, and paging while another client inserts
matching resources (http.html#paging: every original match exactly once)."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import httpx
import pytest

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def match_ids(bundle: dict[str, Any]) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


def outcome(bundle: dict[str, Any]) -> dict[str, Any] | None:
    found = [e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == "outcome"]
    return found[0] if found else None


def put(fhir: httpx.Client, resource: dict[str, Any]) -> None:
    r = fhir.put(f"/{resource['resourceType']}/{resource['id']}", json=resource)
    assert r.status_code in (200, 201), r.text


@pytest.fixture(scope="module")
def family(fhir_module: httpx.Client) -> dict[str, str]:
    """A patient, an encounter, their observations and a practitioner, with fresh ids."""
    u = uuid.uuid4().hex[:8]
    ids = {k: f"{k}-{u}" for k in ("pat", "other", "enc", "prac", "o1", "o2", "o3", "cond")}
    fhir = fhir_module
    put(fhir, {"resourceType": "Patient", "id": ids["pat"], "gender": "female"})
    put(fhir, {"resourceType": "Patient", "id": ids["other"], "gender": "male"})
    put(fhir, {"resourceType": "Practitioner", "id": ids["prac"]})
    put(
        fhir,
        {
            "resourceType": "Encounter",
            "id": ids["enc"],
            "status": "finished",
            "class": {"code": "AMB"},
            "subject": {"reference": f"Patient/{ids['pat']}"},
        },
    )
    # Heart rate: a daily-step code (41950-7) would make these programme resources, held
    # to the daily-step profile on write (docs/VALIDATOR.md).
    code = {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}
    put(
        fhir,
        {
            "resourceType": "Observation",
            "id": ids["o1"],
            "status": "final",
            "code": code,
            "subject": {"reference": f"Patient/{ids['pat']}"},
            "encounter": {"reference": f"Encounter/{ids['enc']}"},
            "effectiveDateTime": "2024-01-02",
        },
    )
    put(
        fhir,
        {
            "resourceType": "Observation",
            "id": ids["o2"],
            "status": "final",
            "code": code,
            "subject": {"reference": f"Patient/{ids['other']}"},
            "performer": [{"reference": f"Practitioner/{ids['prac']}"}],
            "effectiveDateTime": "2024-01-03",
        },
    )
    put(
        fhir,
        {
            "resourceType": "Observation",
            "id": ids["o3"],
            "status": "final",
            "code": code,
            "subject": {"reference": f"Patient/{ids['other']}"},
            "performer": [{"reference": f"Patient/{ids['pat']}"}],
            "effectiveDateTime": "2024-01-04",
        },
    )
    put(
        fhir,
        {
            "resourceType": "Condition",
            "id": ids["cond"],
            "subject": {"reference": f"Patient/{ids['pat']}"},
        },
    )
    return ids


@pytest.fixture(scope="module")
def fhir_module(server: Any) -> Any:
    with httpx.Client(base_url=server.fhir, timeout=120) as client:
        yield client


# --- compartments -------------------------------------------------------------------


def test_patient_compartment_by_subject_or_performer(
    fhir: httpx.Client, family: dict[str, str]
) -> None:
    r = fhir.get(f"/Patient/{family['pat']}/Observation", params={"_sort": "date"})
    assert r.status_code == 200, r.text
    bundle = r.json()
    assert match_ids(bundle) == [family["o1"], family["o3"]]
    self_link = next(link["url"] for link in bundle["link"] if link["relation"] == "self")
    assert f"/Patient/{family['pat']}/Observation?" in self_link


def test_compartment_with_criteria_and_star(fhir: httpx.Client, family: dict[str, str]) -> None:
    pat = family["pat"]
    narrowed = fhir.get(f"/Patient/{pat}/Observation", params={"date": "ge2024-01-04"}).json()
    assert match_ids(narrowed) == [family["o3"]]
    everything = fhir.get(f"/Patient/{pat}/*").json()
    # The audit trail's AuditEvents about this patient are in the compartment too (R4
    # CompartmentDefinition patient: AuditEvent.patient); the clinical data is the rest.
    clinical = {
        e["resource"]["id"]
        for e in everything.get("entry", [])
        if e["search"]["mode"] == "match" and e["resource"]["resourceType"] != "AuditEvent"
    }
    assert clinical == {family["o1"], family["o3"], family["enc"], family["cond"]}
    some = fhir.get(f"/Patient/{pat}/*", params={"_type": "Condition,Encounter"}).json()
    assert set(match_ids(some)) == {family["enc"], family["cond"]}


def test_other_compartments(fhir: httpx.Client, family: dict[str, str]) -> None:
    enc = fhir.get(f"/Encounter/{family['enc']}/*").json()
    # the encounter itself is in its own compartment ({def})
    assert set(match_ids(enc)) == {family["o1"], family["enc"]}
    prac = fhir.get(f"/Practitioner/{family['prac']}/Observation").json()
    assert match_ids(prac) == [family["o2"]]


def test_compartment_paging_keeps_the_compartment(
    fhir: httpx.Client, family: dict[str, str]
) -> None:
    first = fhir.get(f"/Patient/{family['pat']}/Observation", params={"_count": 1}).json()
    (next_url,) = [link["url"] for link in first["link"] if link["relation"] == "next"]
    assert f"/Patient/{family['pat']}/Observation?" in next_url
    second = httpx.get(next_url).json()
    assert match_ids(first) + match_ids(second) == [family["o1"], family["o3"]]


def test_compartment_post_search(fhir: httpx.Client, family: dict[str, str]) -> None:
    r = fhir.post(
        f"/Patient/{family['pat']}/Observation/_search", content="date=le2024-01-02", headers=FORM
    )
    assert r.status_code == 200, r.text
    assert match_ids(r.json()) == [family["o1"]]


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/Observation/x/Patient", 404),  # not a compartment
        ("/Patient/x/NoSuchType", 404),
        ("/Patient/x/Organization", 400),  # never in a patient compartment
        ("/Patient/bad$id/Observation", 400),
        ("/Patient/x/Observation?date=notadate", 400),
        ("/Patient/x/*?code=1", 200),  # not common to every type: ignored, with a warning
    ],
)
def test_compartment_refusals(fhir: httpx.Client, path: str, status: int) -> None:
    r = fhir.get(path)
    assert r.status_code == status, r.text
    assert r.json()["resourceType"] == ("Bundle" if status == 200 else "OperationOutcome")


# --- POST [type]/_search and system search -------------------------------------------


def test_post_search_form_encoded(fhir: httpx.Client, family: dict[str, str]) -> None:
    got = fhir.post(
        "/Observation/_search",
        content=f"subject=Patient/{family['other']}&_sort=-date",
        headers=FORM,
    )
    assert got.status_code == 200, got.text
    assert match_ids(got.json()) == [family["o3"], family["o2"]]
    # query string and body parameters combine (http.html#search)
    both = fhir.post(
        f"/Observation/_search?subject=Patient/{family['other']}",
        content="date=le2024-01-03",
        headers=FORM,
    )
    assert match_ids(both.json()) == [family["o2"]]
    wrong = fhir.post("/Observation/_search", json={"subject": "x"})
    assert wrong.status_code == 415


def test_system_search_with_type(fhir: httpx.Client, family: dict[str, str]) -> None:
    ids = ",".join(family.values())
    r = fhir.get("", params={"_type": "Patient,Practitioner", "_id": ids, "_sort": "_id"})
    assert r.status_code == 200, r.text
    assert sorted(match_ids(r.json())) == sorted([family["pat"], family["other"], family["prac"]])
    by_subject = fhir.get(
        "", params={"_type": "Observation,Condition", "subject": f"Patient/{family['pat']}"}
    ).json()
    assert set(match_ids(by_subject)) == {family["o1"], family["cond"]}
    assert fhir.get("", params={"_type": "Nope"}).status_code == 400


def test_explain_is_refused_unless_the_server_allows_it(
    fhir: httpx.Client, family: dict[str, str]
) -> None:
    r = fhir.get("/Observation", params={"subject": f"Patient/{family['pat']}", "_explain": "true"})
    assert r.status_code == 200
    text = str(outcome(r.json()))
    assert "_explain" in text and "SELECT" not in text
    strict = fhir.get(
        "/Observation", params={"_explain": "true"}, headers={"Prefer": "handling=strict"}
    )
    assert strict.status_code == 400


# --- paging while inserting ---------------------------------------------------------


@pytest.mark.parametrize("sort", ["", "-date", "date"])
def test_paging_while_another_client_inserts(server: Any, fhir: httpx.Client, sort: str) -> None:
    """Keyset cursors (never OFFSET): rows inserted between pages -- before, among and after
    the ones already seen -- never shift a page, so every original match comes exactly once."""
    system = f"urn:test:paging:{uuid.uuid4().hex[:8]}"

    def observation(n: int, day: int) -> dict[str, Any]:
        return {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": system, "code": "steps"}]},
            "effectiveDateTime": f"2024-03-{day:02d}T{n % 24:02d}:00:00Z",
        }

    originals = set()
    for n in range(23):
        r = fhir.post("/Observation", json=observation(n, 1 + n % 28))
        assert r.status_code == 201
        originals.add(r.headers["Location"].split("/")[-3])

    stop = threading.Event()
    inserted: list[str] = []

    def insert_more() -> None:
        with httpx.Client(base_url=server.fhir, timeout=60) as other:
            n = 100
            while not stop.is_set() and n < 160:
                r = other.post("/Observation", json=observation(n, 1 + (n * 7) % 28))
                assert r.status_code == 201
                inserted.append(r.headers["Location"].split("/")[-3])
                n += 1

    params = {"code": f"{system}|steps", "_count": "5"}
    if sort:
        params["_sort"] = sort
    seen: list[str] = []
    inserter = threading.Thread(target=insert_more)
    inserter.start()
    try:
        page = fhir.get("/Observation", params=params).json()
        while True:
            seen += match_ids(page)
            links = {link["relation"]: link["url"] for link in page["link"]}
            if "next" not in links:
                break
            page = httpx.get(links["next"], timeout=60).json()
    finally:
        stop.set()
        inserter.join()
    assert inserted, "the other client inserted nothing while we paged"
    assert len(seen) == len(set(seen)), "a resource came twice"
    assert originals <= set(seen), "an original match was skipped"
