"""Every packaged terminology resource is valid R4 and internally consistent."""

import pytest
from fhir.resources.R4B import get_fhir_model_class

from terminology import CANONICAL_BASE, load_content, lookup
from terminology.codesystem import walk_concepts

CONTENT = load_content()
OURS = {r["url"] for r in CONTENT if r["resourceType"] == "CodeSystem"}


def _ids(resources):
    return [f"{r['resourceType']}/{r['id']}" for r in resources]


@pytest.mark.parametrize("resource", CONTENT, ids=_ids(CONTENT))
def test_resource_validates_with_r4b_model(resource):
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)


@pytest.mark.parametrize("resource", CONTENT, ids=_ids(CONTENT))
def test_canonical_url_is_ours_and_ends_with_type_and_id(resource):
    assert resource["url"] == f"{CANONICAL_BASE}/{resource['resourceType']}/{resource['id']}"
    assert resource["version"]


def test_canonical_urls_are_unique():
    urls = [r["url"] for r in CONTENT]
    assert len(urls) == len(set(urls))


CODESYSTEMS = [r for r in CONTENT if r["resourceType"] == "CodeSystem"]


@pytest.mark.parametrize("cs", CODESYSTEMS, ids=_ids(CODESYSTEMS))
def test_codesystem_count_matches_and_codes_are_unique(cs):
    codes = [c["code"] for c, _ in walk_concepts(cs["concept"])]
    assert cs["count"] == len(codes)
    assert len(codes) == len(set(codes))


@pytest.mark.parametrize(
    "cs_id",
    [
        "assessment",
        "score-band",
        "exercise-feedback-reason",
        "red-flag",
        "plan-activity-kind",
        "education-theme",
        "barrier",
        "questionnaire-answer",
    ],
)
def test_patient_facing_codes_have_danish_designations(cs_id):
    cs = next(r for r in CODESYSTEMS if r["id"] == cs_id)
    for concept, _ in walk_concepts(cs["concept"]):
        languages = {d["language"] for d in concept.get("designation", [])}
        assert "da" in languages, concept["code"]


def test_education_themes_are_the_fourteen_of_the_intervention():
    cs = next(r for r in CODESYSTEMS if r["id"] == "education-theme")
    assert len(cs["concept"]) == 14


def test_codesystem_valueset_links_resolve():
    urls = {r["url"] for r in CONTENT}
    for cs in CODESYSTEMS:
        if "valueSet" in cs:
            assert cs["valueSet"] in urls, cs["id"]


VALUESET_INCLUDES = [
    (vs["id"], include)
    for vs in CONTENT
    if vs["resourceType"] == "ValueSet"
    for include in vs["compose"]["include"]
]


@pytest.mark.parametrize("vs_id,include", VALUESET_INCLUDES, ids=[v for v, _ in VALUESET_INCLUDES])
def test_valueset_codes_exist_in_their_codesystems(vs_id, include):
    system = include["system"]
    if system in OURS:
        for c in include.get("concept", []):
            concept = lookup(system, c["code"])
            assert concept is not None, f"{vs_id}: {system}#{c['code']}"
            assert concept.display == c["display"], f"{vs_id}: {c['code']} display differs"
    else:
        # External codes must be listed explicitly (we cannot expand LOINC) with a display.
        assert include.get("concept"), f"{vs_id}: whole external system {system}"
        assert all(c.get("display") for c in include["concept"])


def test_valuesets_over_external_systems_say_where_codes_were_verified():
    for vs in CONTENT:
        if vs["resourceType"] != "ValueSet":
            continue
        if any(i["system"] not in OURS for i in vs["compose"]["include"]):
            assert vs.get("purpose", "").startswith("Verified"), vs["id"]


CONCEPTMAPS = [r for r in CONTENT if r["resourceType"] == "ConceptMap"]


@pytest.mark.parametrize("cm", CONCEPTMAPS, ids=_ids(CONCEPTMAPS))
def test_conceptmap_sources_and_targets_are_known_codes(cm):
    for group in cm["group"]:
        for element in group["element"]:
            assert lookup(group["source"], element["code"]) is not None, element["code"]
            for target in element["target"]:
                if target["equivalence"] == "unmatched":
                    assert "code" not in target
                else:
                    known = lookup(group["target"], target["code"])
                    assert known is not None, target["code"]
                    assert known.display == target["display"]
