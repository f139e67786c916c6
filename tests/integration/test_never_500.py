"""House rule 3: bad input gets a clear OperationOutcome with a 4xx, never a 500.

Hypothesis throws arbitrary JSON, resource-shaped JSON and raw bytes at the write
interactions of the running server.
"""

from __future__ import annotations

import httpx
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)
element_names = st.sampled_from(
    [
        "id",
        "meta",
        "name",
        "gender",
        "birthDate",
        "identifier",
        "active",
        "telecom",
        "contained",
        "extension",
        "_gender",
        "text",
        "entry",
        "request",
        "resource",
        "type",
    ]
)
resource_like = st.fixed_dictionaries(
    {
        "resourceType": st.sampled_from(
            ["Patient", "Observation", "Bundle", "Parameters", "Nope", ""]
        )
    },
    optional={"x": json_values},
).flatmap(
    lambda base: st.dictionaries(element_names, json_values, max_size=5).map(
        lambda extra: {**extra, **base}
    )
)

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def assert_clean(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.json()["resourceType"] == "OperationOutcome"


@SETTINGS
@given(body=json_values | resource_like)
def test_create_and_update_never_500(fhir: httpx.Client, body: object) -> None:
    content = orjson.dumps(body)
    headers = {"Content-Type": "application/fhir+json"}
    assert_clean(fhir.post("/Patient", content=content, headers=headers))
    assert_clean(fhir.put("/Patient/fuzz-1", content=content, headers=headers))


@SETTINGS
@given(
    body=json_values | resource_like,
    kind=st.sampled_from(["transaction", "batch", "collection", 7]),
)
def test_bundles_never_500(fhir: httpx.Client, body: object, kind: object) -> None:
    entries = body if isinstance(body, list) else [body]
    bundle = {
        "resourceType": "Bundle",
        "type": kind,
        "entry": [
            e if not isinstance(e, dict) else {"request": {"method": "POST", "url": "Patient"}, **e}
            for e in entries
        ],
    }
    assert_clean(
        fhir.post(
            "", content=orjson.dumps(bundle), headers={"Content-Type": "application/fhir+json"}
        )
    )


@SETTINGS
@given(body=json_values)
def test_patch_never_500(fhir: httpx.Client, body: object) -> None:
    made = fhir.post("/Patient", json={"resourceType": "Patient"}).json()
    assert_clean(
        fhir.patch(
            f"/Patient/{made['id']}",
            content=orjson.dumps(body),
            headers={"Content-Type": "application/json-patch+json"},
        )
    )
    params = {"resourceType": "Parameters", "parameter": body}
    assert_clean(
        fhir.patch(
            f"/Patient/{made['id']}",
            content=orjson.dumps(params),
            headers={"Content-Type": "application/fhir+json"},
        )
    )


@SETTINGS
@given(
    raw=st.binary(max_size=200),
    content_type=st.sampled_from(
        ["application/fhir+json", "application/fhir+xml", "application/json-patch+json"]
    ),
)
def test_raw_bytes_never_500(fhir: httpx.Client, raw: bytes, content_type: str) -> None:
    assert_clean(fhir.post("/Observation", content=raw, headers={"Content-Type": content_type}))
    assert_clean(fhir.post("", content=raw, headers={"Content-Type": content_type}))


@SETTINGS
@given(
    query=st.dictionaries(
        st.sampled_from(
            [
                "_since",
                "_at",
                "_count",
                "_cursor",
                "identifier",
                "birthdate",
                "_summary",
                "_elements",
                "_format",
                "name:exact",
                "_sort",
            ]
        ),
        st.text(max_size=15),
        max_size=3,
    )
)
def test_reads_and_searches_never_500(fhir: httpx.Client, query: dict[str, str]) -> None:
    response = fhir.get("/Patient", params=query)
    assert response.status_code < 500 or response.status_code == 406, response.text
    history = fhir.get("/Patient/_history", params=query)
    assert history.status_code < 500, history.text
