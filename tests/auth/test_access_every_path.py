"""Issue 10 items 2 and 3: one access decision, asked by every read path, with 0 leaks.

A matrix of tokens (two patients; clinicians with Consent and CareTeam, without Consent,
with Consent but no CareTeam; a clinician who picked a patient; an EHR launch; narrowed
scopes; a backend) x read paths (read, vread, history, type/system/compartment search,
_include/_revinclude, _has, _total, batch GET entries, $extract, export kick-off). What a
token may read is restated here from docs/AUTH.md ("The access decision"); a path leaks
when it returns anything else. $everything is not offered by this server.

The authorize step: a clinician's pick, and an EHR launch, naming a patient the clinician
may not reach are refused exactly as an unknown id (the consent page reveals no ids).

The safety-alert exception: a Task / Communication tagged safety-alert is readable by its
addressee (Practitioner, one of their PractitionerRoles, their Organization) whatever the
Consent says -- and nothing else of the record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from fhir_server.auth.tokens import TokenStore
from fhir_server.config import normalise_database_url
from fhir_server.storage.database import open_database
from tests.auth.access_world import World, body_for, care_team, consent
from tests.auth.conftest import CLINICIAN_PASSWORD, SmartEnv
from tests.auth.smart_app import Browser, bearer, check_token_response

pytestmark = pytest.mark.db

ALERT_TAG = {
    "system": "http://selfback.example.org/fhir/CodeSystem/security-tag",
    "code": "safety-alert",
}
READ_TYPES = ("Patient", "Observation", "QuestionnaireResponse", "Task", "Communication")


@dataclass
class Leaks:
    world: World
    a: str = ""
    b: str = ""
    outsider: str = ""  # a patient whose Consent names no clinician of ours
    consented: str = ""  # Consent + CareTeam of A
    stranger: str = ""  # no Consent; the addressee of B's alerts
    noteam: str = ""  # Consent of A, no CareTeam link
    role: str = ""  # the stranger's PractitionerRole
    org: str = ""  # the stranger's Organization
    # label -> (type, id)
    res: dict[str, tuple[str, str]] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    expected: dict[str, set[str]] = field(default_factory=dict)

    @property
    def fhir(self) -> str:
        return self.world.fhir


def _obs(subject: str, performer: str | None = None) -> dict[str, Any]:
    body = body_for("Observation", subject)
    if performer:
        body["performer"] = [{"reference": f"Patient/{performer}"}]
    return body


def _alert(rtype: str, patient: str, addressee: str, *, tagged: bool = True) -> dict[str, Any]:
    meta = {"meta": {"tag": [ALERT_TAG]}} if tagged else {}
    if rtype == "Task":
        return {
            "resourceType": "Task",
            **meta,
            "status": "requested",
            "intent": "order",
            "priority": "stat",
            "for": {"reference": f"Patient/{patient}"},
            "owner": {"reference": addressee},
            "authoredOn": "2026-12-07T10:00:00Z",
            "description": "Red flag answer: call the patient today",
        }
    return {
        "resourceType": "Communication",
        **meta,
        "status": "completed",
        "subject": {"reference": f"Patient/{patient}"},
        "recipient": [{"reference": addressee}],
        "payload": [{"contentString": "Red flag answer: call the patient today"}],
    }


def _qr(patient: str) -> dict[str, Any]:
    return {
        "resourceType": "QuestionnaireResponse",
        "status": "completed",
        "subject": {"reference": f"Patient/{patient}"},
        "item": [{"linkId": "1", "answer": [{"valueInteger": 3}]}],
    }


@pytest.fixture(scope="module")
def leaks(smart: SmartEnv) -> Leaks:
    world = World(smart)
    world.store = TokenStore(open_database(normalise_database_url(smart.database_url)))
    w = Leaks(world)
    w.a = smart.new_patient("Aune-leaks")
    w.b = smart.new_patient("Bakke-leaks")
    w.outsider = smart.new_patient("Outsider-leaks")
    make = smart.create
    w.consented = make({"resourceType": "Practitioner", "name": [{"family": "Consented"}]})
    w.stranger = make({"resourceType": "Practitioner", "name": [{"family": "Stranger"}]})
    w.noteam = make({"resourceType": "Practitioner", "name": [{"family": "Noteam"}]})
    w.org = make({"resourceType": "Organization", "name": "Back pain clinic"})
    w.role = make(
        {
            "resourceType": "PractitionerRole",
            "practitioner": {"reference": f"Practitioner/{w.stranger}"},
            "organization": {"reference": f"Organization/{w.org}"},
        }
    )
    make(consent(w.a, f"Practitioner/{w.consented}"))
    make(care_team(w.a, f"Practitioner/{w.consented}"))
    make(consent(w.a, f"Practitioner/{w.noteam}"))
    # B consents to nobody; the stranger is on B's CareTeam but has no Consent.
    make(care_team(w.b, f"Practitioner/{w.stranger}"))
    w.res = {
        "patA": ("Patient", w.a),
        "patB": ("Patient", w.b),
        "obsA": ("Observation", make(_obs(w.a))),
        "obsB": ("Observation", make(_obs(w.b))),
        # in A's and B's compartments: readable only by who may read both
        "obsAB": ("Observation", make(_obs(w.a, performer=w.b))),
        "obsBA": ("Observation", make(_obs(w.b, performer=w.a))),
        "qrA": ("QuestionnaireResponse", make(_qr(w.a))),
        "qrB": ("QuestionnaireResponse", make(_qr(w.b))),
        "taskB": ("Task", make(_alert("Task", w.b, f"Practitioner/{w.stranger}"))),
        "commB": (
            "Communication",
            make(_alert("Communication", w.b, f"PractitionerRole/{w.role}")),
        ),
        "commOrgB": ("Communication", make(_alert("Communication", w.b, f"Organization/{w.org}"))),
        # untagged, or addressed to someone else: the exception does not apply
        "plainTaskB": (
            "Task",
            make(_alert("Task", w.b, f"Practitioner/{w.stranger}", tagged=False)),
        ),
        "otherTaskB": ("Task", make(_alert("Task", w.b, f"Practitioner/{w.consented}"))),
    }
    mint = world.mint
    pr = "practitioner"
    w.tokens = {
        "patient-a": mint("patient/*.rs", role="patient", patient=w.a, fhir_user=f"Patient/{w.a}"),
        "patient-b": mint("patient/*.rs", role="patient", patient=w.b, fhir_user=f"Patient/{w.b}"),
        "patient-a-obs": mint(
            "patient/Observation.rs", role="patient", patient=w.a, fhir_user=f"Patient/{w.a}"
        ),
        "consented-user": mint("user/*.rs", role=pr, fhir_user=f"Practitioner/{w.consented}"),
        "consented-user-obs": mint(
            "user/Observation.rs", role=pr, fhir_user=f"Practitioner/{w.consented}"
        ),
        "consented-picked-a": mint(
            "patient/*.rs", role=pr, patient=w.a, fhir_user=f"Practitioner/{w.consented}"
        ),
        # a launch context the authorize step now refuses; held to Consent even if minted
        "consented-context-b": mint(
            "patient/*.rs", role=pr, patient=w.b, fhir_user=f"Practitioner/{w.consented}"
        ),
        "stranger-user": mint("user/*.rs", role=pr, fhir_user=f"Practitioner/{w.stranger}"),
        "stranger-context-b": mint(
            "patient/*.rs", role=pr, patient=w.b, fhir_user=f"Practitioner/{w.stranger}"
        ),
        "noteam-user": mint("user/*.rs", role=pr, fhir_user=f"Practitioner/{w.noteam}"),
        "noteam-context-a": mint(
            "patient/*.rs", role=pr, patient=w.a, fhir_user=f"Practitioner/{w.noteam}"
        ),
        "backend": smart.cached_token("ehr", "system/*.rs"),
    }
    w.tokens["ehr-launch-a"] = _ehr_launch(smart, w.a, w.consented)
    a_data = {"patA", "obsA", "qrA"}
    alerts_b = {"taskB", "commB", "commOrgB"}
    w.expected = {
        "patient-a": a_data,
        "patient-b": {
            "patB",
            "obsB",
            "qrB",
            "taskB",
            "commB",
            "commOrgB",
            "plainTaskB",
            "otherTaskB",
        },
        "patient-a-obs": {"obsA"},
        # otherTaskB is an alert addressed to the consented clinician: B's Consent aside
        "consented-user": a_data | {"otherTaskB"},
        "consented-user-obs": {"obsA"},
        "consented-picked-a": a_data,
        "consented-context-b": {"otherTaskB"},
        "stranger-user": alerts_b,
        "stranger-context-b": alerts_b,
        "noteam-user": set(),
        "noteam-context-a": set(),
        "backend": set(w.res),
        "ehr-launch-a": a_data,
    }
    return w


def _ehr_launch(smart: SmartEnv, patient: str, practitioner: str) -> str:
    """A real EHR launch of the clinician app with ``patient`` for ``practitioner``."""
    answer = smart.launch(patient=patient, fhirUser=f"Practitioner/{practitioner}")
    browser = Browser()
    try:
        verifier, state = smart.start(
            browser, "clinician", "launch openid fhirUser patient/*.rs", launch=answer["launch"]
        )
        code = smart.approve(browser, state)
    finally:
        browser.close()
    body = check_token_response(smart.apps["clinician"].exchange(smart.token_url, code, verifier))
    assert body["patient"] == patient
    return str(body["access_token"])


class Probe:
    """One token's view: the readable truth (a read by id, cached) and the leak check."""

    def __init__(self, w: Leaks, name: str, http: httpx.Client) -> None:
        self.w, self.name, self.http = w, name, http
        self.headers = bearer(w.tokens[name])
        self.by_ref = {f"{t}/{i}": label for label, (t, i) in w.res.items()}
        self._read: dict[str, bool] = {}

    def readable(self, ref: str) -> bool:
        if ref not in self._read:
            r = self.http.get(f"{self.w.fhir}/{ref}", headers=self.headers)
            assert r.status_code in (200, 403, 404), (ref, r.status_code, r.text)
            self._read[ref] = r.status_code == 200
        return self._read[ref]

    def allowed(self, ref: str) -> bool:
        """Ours: as the rules say; anything else found: what a read by id returns."""
        label = self.by_ref.get(ref)
        if label is not None:
            return label in self.w.expected[self.name]
        return self.readable(ref)

    def get(self, path: str) -> httpx.Response:
        return self.http.get(f"{self.w.fhir}/{path}", headers=self.headers)

    def found(self, path: str) -> list[str] | None:
        """The references a search/history returns (every page), or None when refused."""
        refs: list[str] = []
        url: str | None = f"{self.w.fhir}/{path}"
        while url:
            r = self.http.get(url, headers=self.headers)
            if r.status_code in (403, 404):
                return None
            assert r.status_code == 200, (path, r.status_code, r.text)
            bundle = r.json()
            for entry in bundle.get("entry", []):
                resource = entry.get("resource", {})
                if entry.get("search", {}).get("mode") == "outcome":
                    continue
                if resource.get("resourceType") == "OperationOutcome":
                    continue
                refs.append(f"{resource['resourceType']}/{resource['id']}")
            url = next(
                (ln["url"] for ln in bundle.get("link", []) if ln["relation"] == "next"), None
            )
        return refs

    def leaks(self, path: str) -> list[str]:
        refs = self.found(path) or []
        return [f"{path} -> {ref}" for ref in refs if not self.allowed(ref)]


TOKENS = (
    "patient-a",
    "patient-b",
    "patient-a-obs",
    "consented-user",
    "consented-user-obs",
    "consented-picked-a",
    "consented-context-b",
    "stranger-user",
    "stranger-context-b",
    "noteam-user",
    "noteam-context-a",
    "backend",
    "ehr-launch-a",
)


@pytest.fixture(scope="module")
def http() -> Any:
    with httpx.Client(timeout=60) as client:
        yield client


@pytest.mark.parametrize("name", TOKENS)
def test_instance_reads_answer_exactly_what_the_rules_allow(
    leaks: Leaks, http: httpx.Client, name: str
) -> None:
    probe = Probe(leaks, name, http)
    wrong = []
    for label, (rtype, rid) in leaks.res.items():
        want = label in leaks.expected[name]
        for path in (f"{rtype}/{rid}", f"{rtype}/{rid}/_history/1", f"{rtype}/{rid}/_history"):
            status = probe.get(path).status_code
            if (status == 200) != want or status not in (200, 403, 404):
                wrong.append(
                    f"{path} [{label}] -> {status}, expected {'200' if want else 'refusal'}"
                )
    assert not wrong, wrong


@pytest.mark.parametrize("name", TOKENS)
def test_searches_return_no_more_than_the_rules_allow(
    leaks: Leaks, http: httpx.Client, name: str
) -> None:
    w = leaks
    probe = Probe(w, name, http)
    ids_of = {rtype: ",".join(i for t, i in w.res.values() if t == rtype) for rtype in READ_TYPES}
    paths = [f"{rtype}?_id={ids}" for rtype, ids in ids_of.items()]
    paths += [
        f"Observation?performer=Patient/{w.b}",
        f"Observation?performer=Patient/{w.a}",
        f"Observation?subject=Patient/{w.a}",
        f"Observation?patient={w.b}",
        f"Observation?_id={ids_of['Observation']}&_include=Observation:subject"
        "&_include=Observation:performer",
        f"Patient?_id={w.a},{w.b}&_revinclude=Observation:subject"
        "&_revinclude=Observation:performer&_revinclude=Task:patient",
        f"Task?_id={ids_of['Task']}&_include=Task:patient&_include=Task:owner",
        f"Patient?_id={w.a},{w.b}&_has:Observation:performer:status=final",
        f"Observation?subject:Patient.name=leaks&_id={ids_of['Observation']}",
        f"Observation?_id={ids_of['Observation']}&_total=accurate",
        "?_type=" + ",".join(READ_TYPES) + "&_id=" + ",".join(i for _, i in w.res.values()),
        "Observation/_history?_count=200&_since=2026-01-01",
    ]
    for patient in (w.a, w.b):
        # (Task is in no R4 Patient compartment: its compartment search is a 400)
        paths += [f"Patient/{patient}/{rtype}" for rtype in READ_TYPES[1:] if rtype != "Task"]
        paths.append(f"Patient/{patient}/*")
    found_leaks: list[str] = []
    for path in paths:
        found_leaks += probe.leaks(path)
    assert not found_leaks, found_leaks
    # ... and no less: a search by _id finds every resource of ours the token may read
    # of a type it may search.
    for rtype, ids in ids_of.items():
        refs = probe.found(f"{rtype}?_id={ids}")
        if refs is None:
            continue
        want = {
            f"{t}/{i}"
            for label, (t, i) in w.res.items()
            if t == rtype and label in w.expected[name]
        }
        assert set(refs) == want, (rtype, refs, want)
    # _total counts what the search may return, nothing hidden.
    r = probe.get(f"Observation?_id={ids_of['Observation']}&_total=accurate&_count=1")
    if r.status_code == 200:
        want_obs = sum(1 for label in w.expected[name] if w.res[label][0] == "Observation")
        assert r.json()["total"] == want_obs


@pytest.mark.parametrize("name", TOKENS)
def test_batch_get_entries_are_decided_like_reads(
    leaks: Leaks, http: httpx.Client, name: str
) -> None:
    w = leaks
    labels = list(w.res)
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"request": {"method": "GET", "url": f"{w.res[label][0]}/{w.res[label][1]}"}}
            for label in labels
        ]
        + [
            {"request": {"method": "GET", "url": f"Observation?performer=Patient/{w.b}"}},
            {"request": {"method": "GET", "url": f"Patient/{w.b}/Observation"}},
        ],
    }
    r = http.post(w.fhir, json=bundle, headers=bearer(w.tokens[name]))
    assert r.status_code == 200, r.text
    entries = r.json()["entry"]
    probe = Probe(w, name, http)
    for label, entry in zip(labels, entries, strict=False):
        status = int(entry["response"]["status"].split()[0])
        assert (status == 200) == (label in w.expected[name]), (label, entry["response"])
    for entry in entries[len(labels) :]:
        for inner in entry.get("resource", {}).get("entry", []):
            resource = inner["resource"]
            if resource.get("resourceType") == "OperationOutcome":
                continue
            ref = f"{resource['resourceType']}/{resource['id']}"
            assert probe.allowed(ref), ref


@pytest.mark.parametrize("name", TOKENS)
def test_operations_and_export_refuse_what_a_read_refuses(
    leaks: Leaks, http: httpx.Client, name: str
) -> None:
    w = leaks
    headers = bearer(w.tokens[name])
    for label in ("qrA", "qrB"):
        rid = w.res[label][1]
        r = http.post(
            f"{w.fhir}/QuestionnaireResponse/{rid}/$extract",
            json={"resourceType": "Parameters"},
            headers=headers,
        )
        if label in w.expected[name]:
            assert r.status_code not in (403, 404), (label, r.status_code, r.text)
        else:
            assert r.status_code in (403, 404), (label, r.status_code, r.text)
            assert "Observation" not in r.text
    r = http.get(
        f"{w.fhir}/Patient/$export",
        headers={**headers, "Accept": "application/fhir+json", "Prefer": "respond-async"},
    )
    if name == "backend":
        assert r.status_code == 202, r.text
        http.delete(r.headers["Content-Location"], headers=headers)
    else:
        assert r.status_code == 403, r.text


# -- the authorize step -------------------------------------------------------------------


def _clinician_picks(smart: SmartEnv, patient: str) -> httpx.Response:
    browser = Browser()
    try:
        smart.start(browser, "clinician", "launch/patient openid fhirUser patient/*.rs")
        browser.press("password", username="dr-jensen", password=CLINICIAN_PASSWORD)
        return browser.press("approve", patient=patient)
    finally:
        browser.close()


def test_the_picker_refuses_an_unreachable_patient_exactly_as_an_unknown_id(
    smart: SmartEnv, leaks: Leaks
) -> None:
    # dr-jensen has Consent + CareTeam for smart.patients only; leaks.a exists but has
    # not consented to them.
    unknown = _clinician_picks(smart, "no-such-patient-0000")
    unreachable = _clinician_picks(smart, leaks.a)
    assert unknown.status_code == unreachable.status_code == 400
    assert "location" not in unreachable.headers

    def page(r: httpx.Response) -> str:  # the flow handle differs per sign-in
        import re

        return re.sub(r'name="flow" value="[^"]*"', "", r.text)

    assert page(unknown) == page(unreachable)
    reachable = _clinician_picks(smart, smart.patients["b"])
    assert reachable.status_code == 302 and "code=" in reachable.headers["location"]


def test_an_ehr_launch_with_an_unreachable_patient_gets_no_token(
    smart: SmartEnv, leaks: Leaks
) -> None:
    for patient, practitioner in (
        (leaks.b, leaks.consented),  # Consent of A only
        (leaks.a, leaks.noteam),  # Consent but no CareTeam link
        (leaks.b, leaks.stranger),  # CareTeam but no Consent
    ):
        answer = smart.launch(patient=patient, fhirUser=f"Practitioner/{practitioner}")
        browser = Browser()
        try:
            _, _ = smart.start(
                browser, "clinician", "launch openid fhirUser patient/*.rs", launch=answer["launch"]
            )
            refused = browser.press("approve")
        finally:
            browser.close()
        assert refused.status_code == 400, (patient, practitioner, refused.status_code)
        assert "location" not in refused.headers


def test_the_safety_alert_exception_opens_nothing_else(leaks: Leaks, http: httpx.Client) -> None:
    w = leaks
    headers = bearer(w.tokens["stranger-user"])
    tasks = http.get(f"{w.fhir}/Task", headers=headers).json()
    comms = http.get(f"{w.fhir}/Communication", headers=headers).json()
    found = {e["resource"]["id"] for b in (tasks, comms) for e in b.get("entry", [])}
    assert {w.res["taskB"][1], w.res["commB"][1], w.res["commOrgB"][1]} <= found
    assert w.res["plainTaskB"][1] not in found and w.res["otherTaskB"][1] not in found
    # the alert names B, but B's record stays closed: no include through the alert
    inc = http.get(
        f"{w.fhir}/Task?_id={w.res['taskB'][1]}&_include=Task:patient", headers=headers
    ).json()
    assert [e["resource"]["resourceType"] for e in inc.get("entry", [])] == ["Task"]
    assert http.get(f"{w.fhir}/Patient/{w.b}", headers=headers).status_code == 404
    assert (
        http.get(f"{w.fhir}/Patient/{w.b}/Observation", headers=headers).json().get("entry", [])
        == []
    )
