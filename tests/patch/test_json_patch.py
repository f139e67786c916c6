"""apply_json_patch: RFC 6902 on FHIR resources, statuses per FHIR R4 http.html#patch."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from fhir_server.errors import FhirError
from fhir_server.patch import apply_json_patch

PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "p1",
    "active": True,
    "name": [{"family": "Smith", "given": ["Ann", "B"]}],
    "identifier": [{"system": "s", "value": "1"}, {"system": "s", "value": "2"}],
}

APPLIED = {
    # RFC 6902 §4.1 add: object member, array insert, array append with "-"
    "add member": ([{"op": "add", "path": "/gender", "value": "female"}], {"gender": "female"}),
    "add inserts into array": (
        [{"op": "add", "path": "/name/0/given/1", "value": "X"}],
        {"name": [{"family": "Smith", "given": ["Ann", "X", "B"]}]},
    ),
    "add appends with -": (
        [{"op": "add", "path": "/name/0/given/-", "value": "C"}],
        {"name": [{"family": "Smith", "given": ["Ann", "B", "C"]}]},
    ),
    # §4.2 remove
    "remove member": ([{"op": "remove", "path": "/active"}], {"active": None}),
    "remove array item": (
        [{"op": "remove", "path": "/identifier/0"}],
        {"identifier": [{"system": "s", "value": "2"}]},
    ),
    # §4.3 replace
    "replace value": ([{"op": "replace", "path": "/active", "value": False}], {"active": False}),
    "replace array item": (
        [{"op": "replace", "path": "/name/0/given/0", "value": "Anna"}],
        {"name": [{"family": "Smith", "given": ["Anna", "B"]}]},
    ),
    # §4.4 move, §4.5 copy
    "move item": (
        [{"op": "move", "from": "/identifier/1", "path": "/identifier/0"}],
        {"identifier": [{"system": "s", "value": "2"}, {"system": "s", "value": "1"}]},
    ),
    "copy member": (
        [{"op": "copy", "from": "/name/0/family", "path": "/name/0/suffix"}],
        {"name": [{"family": "Smith", "given": ["Ann", "B"], "suffix": "Smith"}]},
    ),
    # §4.6 test then change: atomic sequence
    "test passes": (
        [
            {"op": "test", "path": "/name/0/given", "value": ["Ann", "B"]},
            {"op": "replace", "path": "/active", "value": False},
        ],
        {"active": False},
    ),
    "pointer escapes ~0 ~1": (
        [{"op": "add", "path": "/extension", "value": [{"url": "a/b~c", "valueString": "v"}]}],
        {"extension": [{"url": "a/b~c", "valueString": "v"}]},
    ),
    "empty patch changes nothing": ([], {}),
}


@pytest.mark.parametrize(("patch", "changes"), APPLIED.values(), ids=APPLIED.keys())
def test_rfc6902_operation(patch: list[dict[str, Any]], changes: dict[str, Any]) -> None:
    before = copy.deepcopy(PATIENT)
    result = apply_json_patch(PATIENT, patch)
    expected = {**PATIENT, **changes}
    expected = {k: v for k, v in expected.items() if v is not None}
    assert result == expected
    assert before == PATIENT  # never mutate the input


def test_result_shares_no_objects_with_the_patch() -> None:
    value = {"system": "t", "value": "9"}
    result = apply_json_patch(PATIENT, [{"op": "add", "path": "/identifier/-", "value": value}])
    value["value"] = "changed"
    assert result["identifier"][-1]["value"] == "9"


REFUSED = {
    # 400: not an RFC 6902 document (http.html#patch: the patch document is invalid)
    "not an array": ({"op": "add"}, 400),
    "operation not an object": (["add"], 400),
    "unknown op": ([{"op": "merge", "path": "/a"}], 400),
    "add without value": ([{"op": "add", "path": "/gender"}], 400),
    "move without from": ([{"op": "move", "path": "/gender"}], 400),
    "path not a pointer": ([{"op": "remove", "path": "active"}], 400),
    "bad pointer escape": ([{"op": "remove", "path": "/a~2b"}], 400),
    "move into own child": ([{"op": "move", "from": "/name", "path": "/name/0"}], 400),
    # 422: valid patch that cannot be applied to this resource ("unprocessable")
    "test fails": ([{"op": "test", "path": "/active", "value": False}], 422),
    "test distinguishes true from 1": ([{"op": "test", "path": "/active", "value": 1}], 422),
    "remove missing member": ([{"op": "remove", "path": "/gender"}], 422),
    "replace missing member": ([{"op": "replace", "path": "/gender", "value": "x"}], 422),
    "index out of range": ([{"op": "remove", "path": "/identifier/5"}], 422),
    "index with leading zero": ([{"op": "remove", "path": "/identifier/01"}], 422),
    "add under missing parent": ([{"op": "add", "path": "/contact/0/name", "value": {}}], 422),
    "remove the whole resource": ([{"op": "remove", "path": ""}], 422),
    # 400: a patch may not change the resource's identity (http.html#update: id must match)
    "change id": ([{"op": "replace", "path": "/id", "value": "p2"}], 400),
    "remove id": ([{"op": "remove", "path": "/id"}], 400),
    "change resourceType": ([{"op": "replace", "path": "/resourceType", "value": "Group"}], 400),
}


@pytest.mark.parametrize(("patch", "status"), REFUSED.values(), ids=REFUSED.keys())
def test_refused_patch(patch: object, status: int) -> None:
    before = copy.deepcopy(PATIENT)
    with pytest.raises(FhirError) as caught:
        apply_json_patch(PATIENT, patch)
    assert caught.value.status == status
    assert caught.value.issues[0].diagnostics
    assert before == PATIENT


def test_failed_operation_leaves_no_partial_change() -> None:
    patch = [
        {"op": "replace", "path": "/active", "value": False},
        {"op": "test", "path": "/active", "value": True},
    ]
    with pytest.raises(FhirError):
        apply_json_patch(PATIENT, patch)
    assert PATIENT["active"] is True
