"""StructureDefinitions of the programme and the profile validator (no I/O).

    >>> from profiles import validate, is_valid
    >>> issues = validate({"resourceType": "Patient", "gender": "unknown-ish"})
    >>> is_valid(issues), issues[0].expression
    (False, ('Patient.gender',))

``validate(resource, profiles=None)`` checks a FHIR R4 JSON resource against the R4 base
definition of its type and against ``profiles`` (canonical URLs; when None, the resource's
``meta.profile``). It returns every :class:`Issue` found, each with a severity, an issue-type
code, a message and a FHIRPath location; an empty list means valid. Unknown profiles are
errors. Nothing is raised for invalid content.

What it checks and how is in docs/VALIDATOR.md. Our profiles (canonical base
``http://selfback.example.org/fhir/StructureDefinition/``) are in ``profiles/content`` as
StructureDefinitions whose snapshots were generated from the differentials in
``profiles/differential`` by :mod:`profiles.snapshot`.
"""

from __future__ import annotations

import copy
from typing import Any

from profiles._bindings import using
from profiles._definitions import own_structure_definitions, registry
from profiles._invariants import register_check, registered_checks, unevaluable_invariants
from profiles._issue import Issue, is_valid, operation_outcome
from profiles._validator import ValidationOptions, Walk
from profiles.national_identifiers import (
    CPR_SYSTEM,
    NHS_NUMBER_SYSTEM,
    is_valid_nhs_number,
    is_well_formed_cpr,
)
from profiles.questionnaire_response import check_questionnaire_response

CANONICAL_BASE = "http://selfback.example.org/fhir/StructureDefinition/"
PATIENT = CANONICAL_BASE + "selfback-patient"
DAILY_STEPS = CANONICAL_BASE + "selfback-daily-steps"
PROM_SCORE = CANONICAL_BASE + "selfback-prom-score"
WEEKLY_CAREPLAN = CANONICAL_BASE + "selfback-weekly-careplan"
PROGRAMME_RESPONSE = CANONICAL_BASE + "selfback-programme-response"
STEP_GOAL = CANONICAL_BASE + "selfback-step-goal"
DATA_SHARING_CONSENT = CANONICAL_BASE + "selfback-data-sharing-consent"

_DEFAULT_OPTIONS = ValidationOptions()


def validate(
    resource: Any,
    profiles: list[str] | None = None,
    *,
    options: ValidationOptions | None = None,
) -> list[Issue]:
    """Every issue of ``resource`` against its R4 base definition and ``profiles``.

    ``profiles`` defaults to ``meta.profile``. The resource is not changed.
    """
    walk = Walk(options or _DEFAULT_OPTIONS)
    with using(walk.options.validate_code):
        return _validate(walk, resource, profiles)


def _validate(walk: Walk, resource: Any, profiles: list[str] | None) -> list[Issue]:
    if not isinstance(resource, dict):
        walk.report("fatal", "structure", "A resource must be a JSON object", "", "json")
        return walk.issues
    resource_type = resource.get("resourceType")
    where = resource_type if isinstance(resource_type, str) else ""
    if profiles is None:
        meta = resource.get("meta")
        claimed = meta.get("profile") if isinstance(meta, dict) else None
        requested = [
            (url, f"{where}.meta.profile[{index}]")
            for index, url in enumerate(claimed if isinstance(claimed, list) else [])
            if isinstance(url, str)
        ]
    else:
        requested = [(url, where) for url in profiles]
    resolved = []
    for url, location in requested:
        definition = registry().get(url)
        if definition is None or definition.kind != "resource":
            # An explicitly requested profile must be known; one merely claimed in
            # meta.profile follows options.unknown_profiles.
            severity = "error" if profiles is not None else walk.options.unknown_profiles
            if severity == "ignore":
                continue
            walk.report(
                severity,
                "not-found",
                f"Profile {url} is not known to this validator",
                location,
                "profile-unknown",
            )
        else:
            resolved.append(definition)
    walk.resource(resource, where, resolved)
    return walk.issues


def known_profiles() -> list[str]:
    """Canonical URLs of every StructureDefinition the validator holds (R4 core and ours)."""
    return registry().urls()


def profile_type(url: str) -> str | None:
    """The resource type a known resource profile constrains (``Patient``), else None."""
    definition = registry().get(url)
    if definition is None or definition.kind != "resource":
        return None
    return definition.type


def our_structure_definitions() -> list[dict[str, Any]]:
    """Our StructureDefinitions (differential + generated snapshot), e.g. to serve them."""
    return [copy.deepcopy(sd) for sd in own_structure_definitions()]


def add_structure_definition(structure_definition: dict[str, Any]) -> str:
    """Make a StructureDefinition with a snapshot available by its URL; returns the URL."""
    return registry().add(structure_definition)


__all__ = [
    "CANONICAL_BASE",
    "CPR_SYSTEM",
    "DAILY_STEPS",
    "DATA_SHARING_CONSENT",
    "NHS_NUMBER_SYSTEM",
    "PATIENT",
    "PROGRAMME_RESPONSE",
    "PROM_SCORE",
    "STEP_GOAL",
    "WEEKLY_CAREPLAN",
    "Issue",
    "ValidationOptions",
    "add_structure_definition",
    "check_questionnaire_response",
    "is_valid",
    "is_valid_nhs_number",
    "is_well_formed_cpr",
    "known_profiles",
    "operation_outcome",
    "our_structure_definitions",
    "profile_type",
    "register_check",
    "registered_checks",
    "unevaluable_invariants",
    "validate",
]
