"""Issue 10 item 3, as a property: a search never returns what a read by the same token
refuses. Random resources naming several patients (subject, performer, author, sender,
recipient), random tokens (patients, clinicians with and without Consent / CareTeam,
clinicians with a patient context, narrowed and query scopes, a backend), and every search
form (type search by _id / subject / performer, compartment search, system search with
_type, _include / _revinclude, _has, chains, _total): result is a subset of readable.

One server and one set of people for all examples (the session's ``smart``); each example
writes its few resources with the set-up client and searches with a minted token.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fhir_server.auth.tokens import TokenStore
from fhir_server.config import normalise_database_url
from fhir_server.storage.database import open_database
from tests.auth.access_world import CATEGORY, LOINC, World, care_team, consent
from tests.auth.conftest import SmartEnv
from tests.auth.smart_app import bearer

pytestmark = pytest.mark.db

N_PATIENTS = 3
ALERT_TAG = {
    "system": "http://selfback.example.org/fhir/CodeSystem/security-tag",
    "code": "safety-alert",
}


class People:
    def __init__(self, smart: SmartEnv) -> None:
        world = World(smart)
        world.store = TokenStore(open_database(normalise_database_url(smart.database_url)))
        self.smart = smart
        make = smart.create
        self.patients = [smart.new_patient(f"Prop{i}") for i in range(N_PATIENTS)]
        p0, p1, p2 = self.patients
        doc = [
            make({"resourceType": "Practitioner", "name": [{"family": f"Doc{i}"}]})
            for i in range(3)
        ]
        d0, d1, d2 = (f"Practitioner/{d}" for d in doc)
        # d0: Consent + CareTeam of p0 and p1; d1: Consent of p0, no CareTeam; d2: CareTeam
        # of p2 without Consent (and the addressee of alerts).
        for patient in (p0, p1):
            make(consent(patient, d0))
            make(care_team(patient, d0))
        make(consent(p0, d1))
        make(care_team(p2, d2))
        self.doctors = (d0, d1, d2)
        pr = "practitioner"
        mint = world.mint
        self.tokens: dict[str, str] = {}
        for i, p in enumerate(self.patients):
            self.tokens[f"patient{i}"] = mint(
                "patient/*.rs", role="patient", patient=p, fhir_user=f"Patient/{p}"
            )
        self.tokens["patient0-obs"] = mint(
            "patient/Observation.rs", role="patient", patient=p0, fhir_user=f"Patient/{p0}"
        )
        self.tokens["patient0-survey"] = mint(
            f"patient/Observation.rs?category={CATEGORY}|survey patient/Patient.rs",
            role="patient",
            patient=p0,
            fhir_user=f"Patient/{p0}",
        )
        self.tokens["d0-user"] = mint("user/*.rs", role=pr, fhir_user=d0)
        self.tokens["d0-user-obs"] = mint("user/Observation.rs", role=pr, fhir_user=d0)
        self.tokens["d0-context-p1"] = mint("patient/*.rs", role=pr, patient=p1, fhir_user=d0)
        self.tokens["d0-context-p2"] = mint("patient/*.rs", role=pr, patient=p2, fhir_user=d0)
        self.tokens["d1-user"] = mint("user/*.rs", role=pr, fhir_user=d1)
        self.tokens["d1-context-p0"] = mint("patient/*.rs", role=pr, patient=p0, fhir_user=d1)
        self.tokens["d2-user"] = mint("user/*.rs", role=pr, fhir_user=d2)
        self.tokens["d2-context-p2"] = mint("patient/*.rs", role=pr, patient=p2, fhir_user=d2)
        self.tokens["backend-obs"] = smart.cached_token("es384", "system/Observation.cruds")
        self.readable: dict[tuple[str, str], bool] = {}
        self.http = httpx.Client(timeout=60)

    def can_read(self, token: str, ref: str) -> bool:
        key = (token, ref)
        if key not in self.readable:
            r = self.http.get(f"{self.smart.fhir}/{ref}", headers=bearer(self.tokens[token]))
            assert r.status_code in (200, 403, 404), (ref, r.status_code, r.text)
            self.readable[key] = r.status_code == 200
        return self.readable[key]

    def search(self, token: str, path: str) -> tuple[list[str], int | None]:
        """Every reference a search returns (all pages) and its total; ([], None) refused."""
        refs: list[str] = []
        total = None
        url: str | None = f"{self.smart.fhir}/{path}"
        while url:
            r = self.http.get(url, headers=bearer(self.tokens[token]))
            if r.status_code == 403:
                return [], None
            assert r.status_code == 200, (path, r.status_code, r.text)
            bundle = r.json()
            total = bundle.get("total", total)
            for entry in bundle.get("entry", []):
                res = entry["resource"]
                if res["resourceType"] != "OperationOutcome":
                    refs.append(f"{res['resourceType']}/{res['id']}")
            url = next(
                (ln["url"] for ln in bundle.get("link", []) if ln["relation"] == "next"), None
            )
        return refs, total


@pytest.fixture(scope="module")
def people(smart: SmartEnv) -> Any:
    found = People(smart)
    yield found
    found.http.close()


def _ref(patient: str) -> dict[str, str]:
    return {"reference": f"Patient/{patient}"}


# A resource: (type, subject index, other patients' indexes, category, tagged alert?)
resource_shapes = st.tuples(
    st.sampled_from(["Observation", "QuestionnaireResponse", "Communication", "Task"]),
    st.integers(0, N_PATIENTS - 1),
    st.lists(st.integers(0, N_PATIENTS - 1), max_size=2, unique=True),
    st.sampled_from(["survey", "activity"]),
    st.booleans(),
)


def _body(people: People, shape: tuple[str, int, list[int], str, bool]) -> dict[str, Any]:
    rtype, subject, others, category, alert = shape
    p = people.patients
    if rtype == "Observation":
        return {
            "resourceType": "Observation",
            "status": "final",
            "category": [{"coding": [{"system": CATEGORY, "code": category}]}],
            "code": {"coding": [{"system": LOINC, "code": "72514-3"}]},
            "subject": _ref(p[subject]),
            **({"performer": [_ref(p[i]) for i in others]} if others else {}),
            "valueInteger": 2,
        }
    if rtype == "QuestionnaireResponse":
        body: dict[str, Any] = {
            "resourceType": "QuestionnaireResponse",
            "status": "completed",
            "subject": _ref(p[subject]),
        }
        if others:
            body["author"] = _ref(p[others[0]])
        return body
    meta = {"meta": {"tag": [ALERT_TAG]}} if alert else {}
    if rtype == "Communication":
        return {
            "resourceType": "Communication",
            **meta,
            "status": "completed",
            "subject": _ref(p[subject]),
            "recipient": [{"reference": people.doctors[2]}] + [_ref(p[i]) for i in others],
        }
    return {
        "resourceType": "Task",
        **meta,
        "status": "requested",
        "intent": "order",
        "for": _ref(p[subject]),
        "owner": {"reference": people.doctors[2 if not others else 0]},
    }


FORMS = (
    "type-id",
    "subject",
    "performer",
    "compartment",
    "system",
    "include",
    "revinclude",
    "has",
    "chain",
    "total",
)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    shapes=st.lists(resource_shapes, min_size=1, max_size=3),
    token=st.sampled_from(
        [
            "patient0",
            "patient1",
            "patient2",
            "patient0-obs",
            "patient0-survey",
            "d0-user",
            "d0-user-obs",
            "d0-context-p1",
            "d0-context-p2",
            "d1-user",
            "d1-context-p0",
            "d2-user",
            "d2-context-p2",
            "backend-obs",
        ]
    ),
    forms=st.lists(st.sampled_from(FORMS), min_size=1, max_size=3, unique=True),
    who=st.integers(0, N_PATIENTS - 1),
)
def test_search_results_are_a_subset_of_what_reads_return(
    people: People, shapes: list[Any], token: str, forms: list[str], who: int
) -> None:
    made: dict[str, list[str]] = {}
    for shape in shapes:
        body = _body(people, shape)
        made.setdefault(body["resourceType"], []).append(people.smart.create(body))
    patient = people.patients[who]
    all_patients = ",".join(people.patients)
    ids = {t: ",".join(v) for t, v in made.items()}
    every = ",".join(i for v in made.values() for i in v)
    paths: list[str] = []
    for form in forms:
        for rtype, idlist in ids.items():
            if form == "type-id":
                paths.append(f"{rtype}?_id={idlist}")
            elif form == "subject" and rtype != "Task":
                paths.append(f"{rtype}?subject=Patient/{patient}&_id={idlist}")
            elif form == "subject":
                paths.append(f"Task?patient=Patient/{patient}&_id={idlist}")
            elif form == "performer" and rtype == "Observation":
                paths.append(f"Observation?performer=Patient/{patient}&_id={idlist}")
            elif form == "compartment" and rtype != "Task":
                paths.append(f"Patient/{patient}/{rtype}?_id={idlist}")
            elif form == "include" and rtype == "Observation":
                paths.append(
                    f"Observation?_id={idlist}&_include=Observation:subject"
                    "&_include=Observation:performer"
                )
            elif form == "include" and rtype == "Task":
                paths.append(f"Task?_id={idlist}&_include=Task:patient&_include=Task:focus")
            elif form == "chain" and rtype == "Observation":
                paths.append(f"Observation?_id={idlist}&performer:Patient.name=Prop")
            elif form == "total":
                paths.append(f"{rtype}?_id={idlist}&_total=accurate&_count=1")
        if form == "system":
            paths.append(
                "?_type=Observation,QuestionnaireResponse,Communication,Task,Patient"
                f"&_id={every},{all_patients}"
            )
        elif form == "revinclude":
            paths.append(
                f"Patient?_id={all_patients}&_revinclude=Observation:performer"
                "&_revinclude=QuestionnaireResponse:author&_revinclude=Communication:recipient"
                "&_revinclude=Task:patient&_count=3"
            )
        elif form == "has":
            paths.append(f"Patient?_id={all_patients}&_has:Observation:performer:status=final")
        elif form == "compartment":
            paths.append(f"Patient/{patient}/*?_id={every}")
    for path in paths:
        refs, total = people.search(token, path)
        leaked = [ref for ref in refs if not people.can_read(token, ref)]
        assert not leaked, (token, path, leaked)
        if total is not None and "_total=accurate" in path:
            rtype = path.split("?", 1)[0]
            readable = [i for i in made[rtype] if people.can_read(token, f"{rtype}/{i}")]
            # what a search counts, a read returns: no hidden resource is counted
            assert total <= len(readable), (token, path, total, readable)
