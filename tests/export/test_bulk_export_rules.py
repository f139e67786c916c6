"""The pure rules of bulk export, table-driven: the kick-off's headers and parameters
(export.html#bulk-data-kick-off-request), the types a job reads under which access
decision, Group membership and the NDJSON files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from fhir_server.access.compartment import PATIENT_COMPARTMENT
from fhir_server.definitions import R4_RESOURCE_TYPES
from fhir_server.errors import FhirError
from fhir_server.export.kickoff import (
    NDJSON,
    check_headers,
    parse_kickoff,
    parse_since,
    type_filter_nodes,
)
from fhir_server.export.plan import export_claims, export_plan, group_patients, refusals
from fhir_server.export.runner import NdjsonFiles, ndjson_line
from fhir_server.search.dates import instant_us
from fhir_server.search.query import Permitted
from fhir_server.search.registry import registry

TYPES = frozenset(R4_RESOURCE_TYPES)


@pytest.mark.parametrize(
    ("accept", "prefer", "ok"),
    [
        ("application/fhir+json", "respond-async", True),
        ("application/fhir+json;q=1.0", "respond-async, handling=lenient", True),
        ("application/fhir+json", "handling=lenient; respond-async", True),
        (None, "respond-async", False),
        ("application/json", "respond-async", False),
        ("application/fhir+json", None, False),
        ("application/fhir+json", "return=minimal", False),
    ],
)
def test_kick_off_headers(accept: str | None, prefer: str | None, ok: bool) -> None:
    if ok:
        check_headers(accept, prefer)
        return
    with pytest.raises(FhirError) as raised:
        check_headers(accept, prefer)
    assert raised.value.status == 400


@pytest.mark.parametrize(
    "alias", ["application/fhir+ndjson", "application/ndjson", "ndjson", "application/fhir ndjson"]
)
def test_every_output_format_alias_means_ndjson(alias: str) -> None:
    assert (
        parse_kickoff("system", [("_outputFormat", alias)], known_types=TYPES).output_format
        == NDJSON
    )


@pytest.mark.parametrize(
    ("parameters", "lenient", "message"),
    [
        ([("_outputFormat", "text/csv")], False, "_outputFormat"),
        ([("_type", "Observation,Pony")], False, "Pony"),
        ([("_since", "2026-11-14")], False, "instant"),
        ([("_elements", "id")], False, "not supported"),
        ([("patient", "Patient/1")], False, "not supported"),
        ([("_until", "2026-11-14T00:00:00Z")], False, "not supported"),
        ([("colour", "red")], False, "not a parameter"),
        ([("_type", "Patient"), ("_typeFilter", "Observation?status=final")], False, "_type"),
        ([("_typeFilter", "status=final")], False, "Type?query"),
        ([("_typeFilter", "Pony?status=final")], False, "Pony"),
    ],
)
def test_bad_parameters_are_400(
    parameters: list[tuple[str, Any]], lenient: bool, message: str
) -> None:
    with pytest.raises(FhirError) as raised:
        parse_kickoff("system", parameters, known_types=TYPES, lenient=lenient)
    assert raised.value.status == 400
    assert message in str(raised.value)


def test_lenient_handling_ignores_unsupported_parameters() -> None:
    wanted = parse_kickoff(
        "patient", [("_elements", "id"), ("_type", "Patient")], known_types=TYPES, lenient=True
    )
    assert wanted.ignored == ("_elements",) and wanted.types == ("Patient",)


def test_parameters_from_a_parameters_body() -> None:
    body = [
        ("_type", {"name": "_type", "valueString": "Patient,Observation"}),
        ("_type", {"name": "_type", "valueString": "Condition"}),
        ("_since", {"name": "_since", "valueInstant": "2026-11-14T09:00:00Z"}),
    ]
    wanted = parse_kickoff("group", body, known_types=TYPES, group_id="g1")
    assert wanted.types == ("Patient", "Observation", "Condition")
    assert wanted.since_us == instant_us("2026-11-14T09:00:00Z")
    assert wanted.group_id == "g1"


@pytest.mark.parametrize(
    ("text", "same_as"),
    [
        ("2026-11-14T09:00:00Z", "2026-11-14T09:00:00Z"),
        ("2026-11-14T10:00:00+01:00", "2026-11-14T09:00:00Z"),
        ("2026-11-14T10:00:00 01:00", "2026-11-14T09:00:00Z"),  # an unencoded '+' in a URL
        ("2026-11-14T09:00:00.123456Z", "2026-11-14T09:00:00.123456Z"),
    ],
)
def test_since_is_an_instant(text: str, same_as: str) -> None:
    assert parse_since(text) == instant_us(same_as)


def test_type_filters_of_one_type_are_alternatives() -> None:
    wanted = parse_kickoff(
        "system",
        [
            (
                "_typeFilter",
                "Observation?status=final,Observation?code=55423-8,Patient?gender=female",
            )
        ],
        known_types=TYPES,
    )
    nodes = type_filter_nodes(wanted.type_filters, reg=registry(), now_us=0)
    assert len(nodes["Observation"]) == 2 and len(nodes["Patient"]) == 1


@pytest.mark.parametrize(
    "query", ["_sort=date", "_count=5", "_include=Observation:subject", "pony=1", "_elements=id"]
)
def test_a_type_filter_is_a_selection_only(query: str) -> None:
    with pytest.raises(FhirError) as raised:
        type_filter_nodes([("Observation", query)], reg=registry(), now_us=0)
    assert raised.value.status == 400


# -- the plan ------------------------------------------------------------------------------------


def test_only_system_scopes_count() -> None:
    claims = export_claims("c1", "patient/*.rs user/*.rs system/Observation.read")
    assert [str(s) for s in claims.scopes.resources] == ["system/Observation.read"]
    assert not export_claims("c1", "patient/*.rs").scopes.resources


def test_types_outside_scope_or_compartment_are_refused_with_a_reason() -> None:
    claims = export_claims("c1", "system/Patient.rs system/Observation.rs system/Practitioner.rs")
    refused = refusals(claims, "patient", ["Patient", "Condition", "Practitioner"])
    assert set(refused) == {"Condition", "Practitioner"}
    assert "compartment" in refused["Practitioner"]
    assert refusals(claims, "system", ["Practitioner"]) == {}


def test_a_patient_level_plan_reads_the_compartment_types_the_scopes_cover() -> None:
    claims = export_claims("c1", "system/*.rs")
    selections, refused = export_plan(
        claims,
        "patient",
        {"types": [], "since": None, "type_filters": [], "patients": []},
        transaction_time=10,
        all_types=TYPES,
        reg=registry(),
        now_us=10,
    )
    assert refused == {}
    assert {s.rtype for s in selections} == {"Patient", *PATIENT_COMPARTMENT}
    assert all(s.compartment and s.all_patients and s.until_us == 10 for s in selections)


def test_a_query_scope_and_a_type_filter_become_criteria() -> None:
    claims = export_claims("c1", "system/Observation.rs?category=survey")
    selections, _ = export_plan(
        claims,
        "system",
        {"types": ["Observation"], "type_filters": [["Observation", "status=final"]]},
        transaction_time=10,
        all_types=TYPES,
        reg=registry(),
        now_us=10,
    )
    (selection,) = selections
    assert len(selection.criteria) == 2
    assert all(isinstance(node, Permitted) for node in selection.criteria)


@pytest.mark.parametrize(
    ("members", "expected"),
    [
        (
            [{"entity": {"reference": "Patient/a"}}, {"entity": {"reference": "Patient/b"}}],
            ("a", "b"),
        ),
        ([{"entity": {"reference": "Patient/a"}, "inactive": True}], ()),
        (
            [{"entity": {"reference": "Practitioner/p"}}, {"entity": {"reference": "Patient/a"}}],
            ("a",),
        ),
        ([{"entity": {"reference": "Patient/a"}}, {"entity": {"reference": "Patient/a"}}], ("a",)),
        ([{"entity": {"display": "someone"}}], ()),
    ],
)
def test_group_members_are_its_active_patients(
    members: list[dict[str, Any]], expected: tuple[str, ...]
) -> None:
    assert group_patients({"resourceType": "Group", "member": members}) == expected


# -- the files -----------------------------------------------------------------------------------


def test_files_split_at_the_limit(tmp_path: Path) -> None:
    files = NdjsonFiles(tmp_path, "Observation", limit=2)
    for n in range(5):
        files.add(ndjson_line(orjson.dumps({"resourceType": "Observation", "id": str(n)})))
    files.close()
    assert [(f["file"], f["count"]) for f in files.written] == [
        ("Observation-1.ndjson", 2),
        ("Observation-2.ndjson", 2),
        ("Observation-3.ndjson", 1),
    ]
    lines = (tmp_path / "Observation-3.ndjson").read_bytes().splitlines()
    assert [orjson.loads(line)["id"] for line in lines] == ["4"]


def test_a_body_with_a_line_break_is_one_line() -> None:
    line = ndjson_line(b'{"resourceType": "Patient",\n "id": "a"}')
    assert line.count(b"\n") == 1 and orjson.loads(line)["id"] == "a"
