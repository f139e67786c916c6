"""SMART scopes (SAL-40..44): parsing v1 and v2, query scopes, and the granted intersection."""

from __future__ import annotations

import pytest

from fhir_server.access.scopes import (
    ResourceScope,
    intersect,
    is_subset,
    parse,
    parse_resource_scope,
    render,
)
from fhir_server.auth.policy import ROLE_SCOPES


@pytest.mark.parametrize(
    ("text", "context", "rtype", "permissions", "query", "v1"),
    [
        # SAL-40 v2 syntax: letters of cruds, in order
        ("patient/Observation.rs", "patient", "Observation", "rs", (), False),
        ("user/*.cruds", "user", "*", "cruds", (), False),
        ("system/*.rs", "system", "*", "rs", (), False),
        ("patient/Patient.r", "patient", "Patient", "r", (), False),
        ("user/Observation.cud", "user", "Observation", "cud", (), False),
        # SAL-41 v1 spellings
        ("patient/Observation.read", "patient", "Observation", "rs", (), True),
        ("user/*.write", "user", "*", "cud", (), True),
        ("system/*.*", "system", "*", "cruds", (), True),
        ("system/*.read", "system", "*", "rs", (), True),
        # SAL-42 query scopes
        (
            "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|survey",
            "patient",
            "Observation",
            "rs",
            (("category", "http://terminology.hl7.org/CodeSystem/observation-category|survey"),),
            False,
        ),
        (
            "user/Observation.rs?code=1234-5&status=final",
            "user",
            "Observation",
            "rs",
            (("code", "1234-5"), ("status", "final")),
            False,
        ),
    ],
)
def test_SAL_40_parses_resource_scopes(
    text: str, context: str, rtype: str, permissions: str, query: tuple, v1: bool
) -> None:
    scope = parse_resource_scope(text)
    assert scope == ResourceScope(context, rtype, frozenset(permissions), query, v1)


@pytest.mark.parametrize(
    "text",
    [
        "patient/Observation.sr",  # wrong order
        "patient/Observation.rr",
        "patient/Observation.x",
        "patient/Observation.",
        "practitioner/Observation.rs",
        "patient/observation.rs",
        "patient/Observation.rs?",
        "patient/Observation.rs?category",
        "patient/Observation.rs?=x",
        "Observation.read",
    ],
)
def test_SAL_40_malformed_scopes_are_never_granted(text: str) -> None:
    assert parse_resource_scope(text) is None
    assert not parse(text)


def test_SAL_44_special_and_custom_scopes_are_kept() -> None:
    scopes = parse(
        "launch launch/patient openid fhirUser offline_access online_access __ehr-launch bogus"
    )
    assert set(scopes.others) == {
        "launch",
        "launch/patient",
        "openid",
        "fhirUser",
        "offline_access",
        "online_access",
        "__ehr-launch",
    }
    assert scopes.wants_refresh


@pytest.mark.parametrize(
    ("requested", "allowed", "granted"),
    [
        # requested broader than allowed: the allowed part
        ("patient/*.cruds", "patient/Observation.rs", "patient/Observation.rs"),
        # requested narrower: the request
        ("patient/Observation.rs", "patient/*.cruds", "patient/Observation.rs"),
        # SAL-41: asked in v1, answered in v1 when the permissions have a v1 name
        ("patient/*.read", "patient/*.cruds", "patient/*.read"),
        ("system/*.read", "system/*.rs", "system/*.read"),
        # ... and in v2 when they have not
        ("patient/*.read", "patient/*.r", "patient/*.r"),
        # contexts never mix
        ("user/*.rs", "patient/*.rs", ""),
        # query scopes: the conditions of both hold
        (
            "patient/Observation.rs",
            "patient/Observation.rs?category=survey",
            "patient/Observation.rs?category=survey",
        ),
        # special scopes only where both have them
        ("openid fhirUser offline_access", "openid fhirUser", "openid fhirUser"),
        # write does not imply read (SAL-40)
        ("patient/Observation.r", "patient/Observation.cud", ""),
    ],
)
def test_SAL_43_granted_is_requested_intersect_allowed(
    requested: str, allowed: str, granted: str
) -> None:
    assert render(intersect(parse(requested), parse(allowed))) == granted


def test_granted_is_requested_intersect_client_intersect_role() -> None:
    requested = parse(
        "launch/patient openid fhirUser offline_access patient/*.rs user/*.rs system/*.rs"
    )
    client = parse("launch/patient openid fhirUser offline_access patient/*.cruds user/*.rs")
    granted = intersect(requested, client, ROLE_SCOPES["patient"])
    assert render(granted) == "launch/patient openid fhirUser offline_access patient/*.rs"


def test_covered_scopes_are_folded() -> None:
    assert (
        render(parse("patient/*.rs patient/Observation.r patient/Observation.rs?category=a"))
        == "patient/*.rs"
    )


@pytest.mark.parametrize(
    ("requested", "granted", "subset"),
    [
        ("patient/Observation.rs", "patient/*.rs", True),
        ("patient/*.rs", "patient/*.rs offline_access", True),
        ("patient/*.rs offline_access", "patient/*.rs", False),
        ("patient/*.cruds", "patient/*.rs", False),
        ("patient/Observation.rs?category=a", "patient/Observation.rs", True),
        ("patient/Observation.rs", "patient/Observation.rs?category=a", False),
    ],
)
def test_SAL_61_refresh_scope_must_be_a_subset(requested: str, granted: str, subset: bool) -> None:
    assert is_subset(parse(requested), parse(granted)) is subset
