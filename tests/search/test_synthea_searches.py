"""Conformance: the 51 Synthea bundles (../shared/synthea-r4) loaded into a fresh server as
transactions, then searched; every expected answer is computed here from the raw bundle
JSON with plain Python (no code of the server's search package), the ``urn:uuid:`` ids
mapped to the ids the server assigned from the transaction responses.

Covers token, string (case and accent folding), date ranges, quantity, reference, chain,
``_has``, ``_include``/``_revinclude``, compartment, ``_sort``, ``_count`` paging and
``_total``. SQLite in the default pass, PostgreSQL in the ``-m db`` pass.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import (
    SHARED,
    drop_database,
    fresh_database_url,
    start_server,
    stop_server,
)

pytestmark = [
    pytest.mark.conformance,
    pytest.mark.db,
    pytest.mark.skipif(not SHARED.exists(), reason="../shared reference data is absent"),
]

SYNTHEA = SHARED / "synthea-r4"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"


@dataclass
class Loaded:
    client: httpx.Client
    # every resource as loaded, references rewritten to the ids the server gave
    resources: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def of(self, rtype: str) -> list[dict[str, Any]]:
        return self.resources.get(rtype, [])


def _rewrite(node: Any, ids: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {
            k: ids.get(v, v) if k == "reference" and isinstance(v, str) else _rewrite(v, ids)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_rewrite(v, ids) for v in node]
    return node


@pytest.fixture(scope="module")
def synthea(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    folder = tmp_path_factory.mktemp("synthea")
    url = fresh_database_url(folder, "synthea")
    running = start_server(url, folder, SELFBACK_LOAD_CONTENT="0")
    try:
        with httpx.Client(base_url=running.fhir, timeout=300) as client:
            loaded = Loaded(client)
            for path in sorted(SYNTHEA.glob("*.json")):
                if path.name == "index.json":
                    continue
                bundle = orjson.loads(path.read_bytes())
                r = client.post(
                    "", content=path.read_bytes(), headers={"Content-Type": "application/fhir+json"}
                )
                assert r.status_code == 200, r.text[:2000]
                ids: dict[str, str] = {}
                answers = r.json()["entry"]
                for entry, answer in zip(bundle["entry"], answers, strict=True):
                    rtype, rid = answer["response"]["location"].split("/")[-4:-2]
                    ids[entry["fullUrl"]] = f"{rtype}/{rid}"
                for entry in bundle["entry"]:
                    resource = _rewrite(entry["resource"], ids)
                    resource["id"] = ids[entry["fullUrl"]].split("/")[1]
                    loaded.resources.setdefault(resource["resourceType"], []).append(resource)
            yield loaded
    finally:
        stop_server(running)
        drop_database(url)


# --- reading the answers --------------------------------------------------------------


def search_all(
    client: httpx.Client, path: str, params: dict[str, str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(matches, includes) over every page, following `next` links."""
    matches: list[dict[str, Any]] = []
    includes: list[dict[str, Any]] = []
    r = client.get(path, params=params, headers={"Prefer": "handling=strict"})
    while True:
        assert r.status_code == 200, r.text[:2000]
        page = r.json()
        for entry in page.get("entry", []):
            mode = entry["search"]["mode"]
            (matches if mode == "match" else includes).append(entry["resource"])
        nxt = [link["url"] for link in page.get("link", []) if link["relation"] == "next"]
        if not nxt:
            return matches, includes
        r = client.get(nxt[0])


def ids_of(resources: list[dict[str, Any]]) -> set[str]:
    return {r["id"] for r in resources}


# --- independent expectations -----------------------------------------------------------


def fold(text: str) -> str:
    """Case and accent folding: NFD, drop combining marks, lower case."""
    return "".join(
        c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c)
    ).lower()


def codings(concept: Any) -> list[tuple[str | None, str | None]]:
    if not isinstance(concept, dict):
        return []
    return [(c.get("system"), c.get("code")) for c in concept.get("coding", [])]


def has_code(resource: dict[str, Any], system: str, code: str, element: str = "code") -> bool:
    return (system, code) in codings(resource.get(element))


def instant(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def ref(resource: dict[str, Any], element: str) -> str | None:
    value = resource.get(element)
    return value.get("reference") if isinstance(value, dict) else None


# --- the searches -------------------------------------------------------------------------


def test_token_system_and_code(synthea: Loaded) -> None:
    expected = {o["id"] for o in synthea.of("Observation") if has_code(o, LOINC, "72514-3")}
    found, _ = search_all(
        synthea.client, "/Observation", {"code": f"{LOINC}|72514-3", "_count": "200"}
    )
    assert len(expected) > 100 and ids_of(found) == expected


def test_token_code_any_system_and_not(synthea: Loaded) -> None:
    sinusitis = {
        c["id"]
        for c in synthea.of("Condition")
        if any(code == "444814009" for _, code in codings(c.get("code")))
    }
    found, _ = search_all(synthea.client, "/Condition", {"code": "444814009"})
    assert sinusitis and ids_of(found) == sinusitis
    not_male = {p["id"] for p in synthea.of("Patient") if p.get("gender") != "male"}
    found, _ = search_all(synthea.client, "/Patient", {"gender:not": "male"})
    assert ids_of(found) == not_male


def test_string_starts_with_folded(synthea: Loaded) -> None:
    # search.html#string: any name part starting with the value, ignoring case and accents
    def parts(p: dict[str, Any]) -> list[str]:
        out: list[str] = []
        for name in p.get("name", []):
            out += [
                name.get("family", ""),
                *name.get("given", []),
                *name.get("prefix", []),
                *name.get("suffix", []),
                name.get("text", ""),
            ]
        return [x for x in out if x]

    for value in ("AGU", "mr", "an"):
        expected = {
            p["id"]
            for p in synthea.of("Patient")
            if any(fold(x).startswith(fold(value)) for x in parts(p))
        }
        found, _ = search_all(synthea.client, "/Patient", {"name": value})
        assert ids_of(found) == expected, value
    family = synthea.of("Patient")[0]["name"][0]["family"]
    exact = {
        p["id"] for p in synthea.of("Patient") if any(n.get("family") == family for n in p["name"])
    }
    found, _ = search_all(synthea.client, "/Patient", {"family:exact": family})
    assert ids_of(found) == exact


def test_birthdate_range(synthea: Loaded) -> None:
    expected = {
        p["id"] for p in synthea.of("Patient") if "1970-01-01" <= p["birthDate"] < "1990-01-01"
    }
    found, _ = search_all(
        synthea.client, "/Patient", {"birthdate": ["ge1970-01-01", "lt1990-01-01"]}
    )  # type: ignore[dict-item]
    assert expected and ids_of(found) == expected


def test_observation_date_range_in_utc(synthea: Loaded) -> None:
    low, high = instant("2015-01-01T00:00:00Z"), instant("2017-07-01T00:00:00Z")
    expected = {
        o["id"]
        for o in synthea.of("Observation")
        if has_code(o, LOINC, "29463-7") and low <= instant(o["effectiveDateTime"]) < high
    }
    found, _ = search_all(
        synthea.client,
        "/Observation",
        {"code": "29463-7", "date": ["ge2015-01-01", "lt2017-07-01"], "_count": "500"},
    )  # type: ignore[dict-item]
    assert expected and ids_of(found) == expected


def test_quantity_with_units(synthea: Loaded) -> None:
    expected = {
        o["id"]
        for o in synthea.of("Observation")
        if has_code(o, LOINC, "29463-7") and o["valueQuantity"]["value"] > 90
    }
    found, _ = search_all(
        synthea.client,
        "/Observation",
        {"code": "29463-7", "value-quantity": "gt90|http://unitsofmeasure.org|kg"},
    )
    assert expected and ids_of(found) == expected
    # the same weight in grams (UCUM canonical units)
    grams, _ = search_all(
        synthea.client,
        "/Observation",
        {"code": "29463-7", "value-quantity": "gt90000|http://unitsofmeasure.org|g"},
    )
    assert ids_of(grams) == expected


def test_reference_and_compartment(synthea: Loaded) -> None:
    patient = synthea.of("Patient")[3]["id"]
    expected = {
        o["id"] for o in synthea.of("Observation") if ref(o, "subject") == f"Patient/{patient}"
    }
    found, _ = search_all(
        synthea.client, "/Observation", {"subject": f"Patient/{patient}", "_count": "1000"}
    )
    assert expected and ids_of(found) == expected
    encounters = {
        e["id"] for e in synthea.of("Encounter") if ref(e, "subject") == f"Patient/{patient}"
    }
    in_compartment, _ = search_all(synthea.client, f"/Patient/{patient}/Encounter", {})
    assert encounters and ids_of(in_compartment) == encounters


def test_chain(synthea: Loaded) -> None:
    women = {f"Patient/{p['id']}" for p in synthea.of("Patient") if p.get("gender") == "female"}
    expected = {d["id"] for d in synthea.of("DiagnosticReport") if ref(d, "subject") in women}
    found, _ = search_all(synthea.client, "/DiagnosticReport", {"subject:Patient.gender": "female"})
    assert expected and ids_of(found) == expected


def test_has(synthea: Loaded) -> None:
    with_hypertension = {
        ref(c, "subject").split("/")[1]  # type: ignore[union-attr]
        for c in synthea.of("Condition")
        if has_code(c, SNOMED, "38341003")
    }
    found, _ = search_all(
        synthea.client, "/Patient", {"_has:Condition:subject:code": f"{SNOMED}|38341003"}
    )
    assert with_hypertension and ids_of(found) == with_hypertension


def test_include_and_revinclude(synthea: Loaded) -> None:
    pain = [
        o
        for o in synthea.of("Observation")
        if has_code(o, LOINC, "72514-3") and o["valueQuantity"]["value"] >= 5
    ]
    found, included = search_all(
        synthea.client,
        "/Observation",
        {
            "code": f"{LOINC}|72514-3",
            "value-quantity": "ge5",
            "_include": "Observation:patient",
            "_count": "1000",
        },
    )
    assert ids_of(found) == {o["id"] for o in pain}
    assert ids_of(included) == {ref(o, "subject").split("/")[1] for o in pain}  # type: ignore[union-attr]
    patient = synthea.of("Patient")[7]["id"]
    conditions = {
        c["id"] for c in synthea.of("Condition") if ref(c, "subject") == f"Patient/{patient}"
    }
    found, included = search_all(
        synthea.client, "/Patient", {"_id": patient, "_revinclude": "Condition:subject"}
    )
    assert ids_of(found) == {patient} and ids_of(included) == conditions


def test_sort(synthea: Loaded) -> None:
    found, _ = search_all(synthea.client, "/Patient", {"_sort": "birthdate", "_count": "100"})
    assert [p["birthDate"] for p in found] == sorted(p["birthDate"] for p in synthea.of("Patient"))
    found, _ = search_all(synthea.client, "/Patient", {"_sort": "-birthdate,_id", "_count": "7"})
    assert [p["birthDate"] for p in found] == sorted(
        (p["birthDate"] for p in synthea.of("Patient")), reverse=True
    )


def test_count_paging_and_total(synthea: Loaded) -> None:
    patient = synthea.of("Patient")[1]["id"]
    expected = {
        o["id"] for o in synthea.of("Observation") if ref(o, "subject") == f"Patient/{patient}"
    }
    pages = []
    r = synthea.client.get(
        "/Observation",
        params={
            "subject": f"Patient/{patient}",
            "_count": "7",
            "_sort": "-date",
            "_total": "accurate",
        },
    )
    while True:
        page = r.json()
        assert page["total"] == len(expected)
        pages.append([e["resource"] for e in page.get("entry", [])])
        nxt = [link["url"] for link in page["link"] if link["relation"] == "next"]
        if not nxt:
            break
        r = synthea.client.get(nxt[0])
    assert all(len(p) == 7 for p in pages[:-1]) and 0 < len(pages[-1]) <= 7
    seen = [o["id"] for p in pages for o in p]
    assert len(seen) == len(set(seen)) and set(seen) == expected
    dates = [instant(o["effectiveDateTime"]) for p in pages for o in p]
    assert dates == sorted(dates, reverse=True)
    counted = synthea.client.get("/Encounter", params={"_summary": "count"}).json()
    assert counted["total"] == len(synthea.of("Encounter"))
