"""Our resources shaped for UK Core (England) and DK Core (Denmark) consumers (pure).

``export_for(resource, nation)`` returns a copy of a programme resource that claims the
national profile and meets the rules of it that we verified, or raises ``ExportError``
naming the rule the resource cannot meet (a missing subject, an NHS number that fails its
check digit, ...). Nothing is invented: an element the national profile requires that our
resource does not have is an error, never a placeholder. ``national_rule_violations`` lists
the verified rules a resource breaks, without shaping it.

What shaping does:

- ``meta.profile`` becomes the national profile of the type (our own profiles are dropped:
  a national consumer cannot resolve them, and its validator would warn);
- national identifiers of the other country are left out of the export (data
  minimisation, GDPR art. 5(1)(c): an English consumer has no use for a CPR number, nor a
  Danish one for an NHS number);
- a CPR identifier gets ``use: official``, which DK Core fixes for it;
- types without a verified national profile (QuestionnaireResponse, CarePlan, Goal,
  Consent) are returned unchanged, claiming no national profile.

The rules are facts checked against the published sources named beside each one (the
national StructureDefinitions are not packaged here, so they are encoded as rules):

- UK Core: https://build.fhir.org/ig/HL7-UK/UK-Core-Access/StructureDefinition-UKCore-Patient.html
  (official URL ``https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient``; NHS numbers
  under ``https://fhir.nhs.uk/Id/nhs-number``). The NHS-number verification-status extension
  of that slice is optional and is *not* added: the server does not trace numbers with the
  national Personal Demographics Service, so it cannot claim a verification status.
- DK Core: https://github.com/hl7dk/dk-core, input/fsh/DkCorePatient.fsh,
  DkCoreCprIdentifier.fsh and DkCoreObservation.fsh (profiles
  ``http://hl7.dk/fhir/core/StructureDefinition/dk-core-patient`` and ``dk-core-observation``).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from terminology.identifiers import CPR_SYSTEM, NHS_NUMBER_SYSTEM, is_valid_nhs_number

Nation = Literal["uk", "dk"]

UK_CORE_PATIENT = "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient"
UK_CORE_OBSERVATION = "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Observation"
DK_CORE_PATIENT = "http://hl7.dk/fhir/core/StructureDefinition/dk-core-patient"
DK_CORE_OBSERVATION = "http://hl7.dk/fhir/core/StructureDefinition/dk-core-observation"
UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"

NATIONAL_PROFILES: dict[Nation, dict[str, str]] = {
    "uk": {"Patient": UK_CORE_PATIENT, "Observation": UK_CORE_OBSERVATION},
    "dk": {"Patient": DK_CORE_PATIENT, "Observation": DK_CORE_OBSERVATION},
}
_FOREIGN_IDENTIFIER: dict[Nation, str] = {"uk": CPR_SYSTEM, "dk": NHS_NUMBER_SYSTEM}

# DK Core ``cpr`` invariant (DkCoreCprIdentifier.fsh): a real DDMM, then six digits.
# No modulus-11 check: numbers issued since 2007 may fail it (CPR-kontoret).
_DK_CORE_CPR = re.compile(
    r"^((((0[1-9]|1[0-9]|2[0-9]|3[0-1])(01|03|05|07|08|10|12))|"
    r"((0[1-9]|1[0-9]|2[0-9]|30)(04|06|09|11))|((0[1-9]|1[0-9]|2[0-9])(02)))[0-9]{6})$"
)


class ExportError(ValueError):
    """The resource cannot be shaped to meet a national profile; ``rule`` names the rule."""

    def __init__(self, rule: NationalRule, where: str) -> None:
        super().__init__(f"{rule.key}: {rule.description} ({where})")
        self.rule = rule
        self.where = where


@dataclass(frozen=True, slots=True)
class NationalRule:
    """One verified rule of a national profile: ``check`` answers, for a resource of
    ``resource_type``, the locations (FHIRPath) where it is broken."""

    key: str
    nation: Nation
    resource_type: str
    description: str
    source: str
    check: Callable[[dict[str, Any]], list[str]]


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _identifiers(resource: dict[str, Any], system: str) -> list[tuple[int, dict[str, Any]]]:
    return [
        (i, ident)
        for i, ident in enumerate(_list(resource.get("identifier")))
        if isinstance(ident, dict) and ident.get("system") == system
    ]


def _claims(url: str) -> Callable[[dict[str, Any]], list[str]]:
    def check(resource: dict[str, Any]) -> list[str]:
        meta = resource.get("meta")
        claimed = meta.get("profile") if isinstance(meta, dict) else None
        ok = url in _list(claimed)
        return [] if ok else [f"{resource.get('resourceType')}.meta.profile"]

    return check


def _nhs_numbers_valid(resource: dict[str, Any]) -> list[str]:
    return [
        f"Patient.identifier[{i}]"
        for i, ident in _identifiers(resource, NHS_NUMBER_SYSTEM)
        if not (isinstance(ident.get("value"), str) and is_valid_nhs_number(ident["value"]))
    ]


def _at_most_one(system: str) -> Callable[[dict[str, Any]], list[str]]:
    def check(resource: dict[str, Any]) -> list[str]:
        found = _identifiers(resource, system)
        return [f"Patient.identifier[{i}]" for i, _ in found[1:]]

    return check


def _has_identifier(resource: dict[str, Any]) -> list[str]:
    return [] if _list(resource.get("identifier")) else ["Patient.identifier"]


def _cpr_official(resource: dict[str, Any]) -> list[str]:
    return [
        f"Patient.identifier[{i}].use"
        for i, ident in _identifiers(resource, CPR_SYSTEM)
        if ident.get("use") != "official"
    ]


def _cpr_format(resource: dict[str, Any]) -> list[str]:
    return [
        f"Patient.identifier[{i}].value"
        for i, ident in _identifiers(resource, CPR_SYSTEM)
        if not (isinstance(ident.get("value"), str) and _DK_CORE_CPR.match(ident["value"]))
    ]


def _official_name_has_family(resource: dict[str, Any]) -> list[str]:
    return [
        f"Patient.name[{i}].family"
        for i, name in enumerate(_list(resource.get("name")))
        if isinstance(name, dict) and name.get("use") == "official" and not name.get("family")
    ]


def _one_official_name(resource: dict[str, Any]) -> list[str]:
    official = [
        i
        for i, name in enumerate(_list(resource.get("name")))
        if isinstance(name, dict) and name.get("use") == "official"
    ]
    return [f"Patient.name[{i}]" for i in official[1:]]


def _has_subject(resource: dict[str, Any]) -> list[str]:
    return [] if isinstance(resource.get("subject"), dict) else ["Observation.subject"]


def _subject_types(resource: dict[str, Any]) -> list[str]:
    subject = resource.get("subject")
    reference = subject.get("reference") if isinstance(subject, dict) else None
    if not isinstance(reference, str) or "/" not in reference:
        return []
    kind = reference.rsplit("/", 2)[-2]
    return [] if kind in ("Patient", "Group", "Location", "Device") else ["Observation.subject"]


def _quantities_in_ucum(resource: dict[str, Any]) -> list[str]:
    where = []
    quantity = resource.get("valueQuantity")
    if isinstance(quantity, dict) and quantity.get("system") != UCUM:
        where.append("Observation.value.ofType(Quantity).system")
    for i, component in enumerate(_list(resource.get("component"))):
        value = component.get("valueQuantity") if isinstance(component, dict) else None
        if isinstance(value, dict) and value.get("system") != UCUM:
            where.append(f"Observation.component[{i}].value.ofType(Quantity).system")
    return where


def _loinc_codings_have_codes(resource: dict[str, Any]) -> list[str]:
    code = resource.get("code")
    codings = _list(code.get("coding")) if isinstance(code, dict) else []
    return [
        f"Observation.code.coding[{i}].code"
        for i, coding in enumerate(codings)
        if isinstance(coding, dict) and coding.get("system") == LOINC and not coding.get("code")
    ]


def _one_loinc_coding(resource: dict[str, Any]) -> list[str]:
    code = resource.get("code")
    codings = _list(code.get("coding")) if isinstance(code, dict) else []
    loinc = [i for i, c in enumerate(codings) if isinstance(c, dict) and c.get("system") == LOINC]
    return [f"Observation.code.coding[{i}]" for i in loinc[1:]]


_UK_IG = "https://build.fhir.org/ig/HL7-UK/UK-Core-Access/StructureDefinition-UKCore-Patient.html"
_NHS_DD = "https://www.datadictionary.nhs.uk/attributes/nhs_number.html"
_DK = "https://github.com/hl7dk/dk-core/blob/master/input/fsh/"

RULES: tuple[NationalRule, ...] = (
    NationalRule(
        "ukcore-patient-profile",
        "uk",
        "Patient",
        "the Patient claims UK Core Patient",
        _UK_IG,
        _claims(UK_CORE_PATIENT),
    ),
    NationalRule(
        "ukcore-nhs-number-check-digit",
        "uk",
        "Patient",
        "an NHS number is ten digits whose last is the modulus-11 check digit of the first nine",
        _NHS_DD,
        _nhs_numbers_valid,
    ),
    NationalRule(
        "ukcore-nhs-number-once",
        "uk",
        "Patient",
        "at most one NHS number (the nhsNumber slice is 0..1)",
        _UK_IG,
        _at_most_one(NHS_NUMBER_SYSTEM),
    ),
    NationalRule(
        "ukcore-observation-profile",
        "uk",
        "Observation",
        "the Observation claims UK Core Observation",
        "https://github.com/NHSDigital/FHIR-R4-UKCORE-STAGING-MAIN",
        _claims(UK_CORE_OBSERVATION),
    ),
    NationalRule(
        "dkcore-patient-profile",
        "dk",
        "Patient",
        "the Patient claims DK Core Patient",
        _DK + "DkCorePatient.fsh",
        _claims(DK_CORE_PATIENT),
    ),
    NationalRule(
        "dkcore-patient-identifier",
        "dk",
        "Patient",
        "a DK Core Patient has at least one identifier (identifier 1..*)",
        _DK + "DkCorePatient.fsh",
        _has_identifier,
    ),
    NationalRule(
        "dkcore-cpr-once",
        "dk",
        "Patient",
        "at most one CPR number (the cpr slice is 0..1)",
        _DK + "DkCorePatient.fsh",
        _at_most_one(CPR_SYSTEM),
    ),
    NationalRule(
        "dkcore-cpr-use",
        "dk",
        "Patient",
        "a CPR identifier has use 'official' (fixed in DkCoreCprIdentifier)",
        _DK + "DkCoreCprIdentifier.fsh",
        _cpr_official,
    ),
    NationalRule(
        "dkcore-cpr-format",
        "dk",
        "Patient",
        "a CPR number is a valid DDMM followed by six digits (invariant cpr; no modulus 11)",
        _DK + "DkCoreCprIdentifier.fsh",
        _cpr_format,
    ),
    NationalRule(
        "dkcore-official-name-family",
        "dk",
        "Patient",
        "the official name has a family name (name[official].family 1..)",
        _DK + "DkCorePatient.fsh",
        _official_name_has_family,
    ),
    NationalRule(
        "dkcore-official-name-once",
        "dk",
        "Patient",
        "at most one official name (name[official] 0..1)",
        _DK + "DkCorePatient.fsh",
        _one_official_name,
    ),
    NationalRule(
        "dkcore-observation-profile",
        "dk",
        "Observation",
        "the Observation claims DK Core Observation",
        _DK + "DkCoreObservation.fsh",
        _claims(DK_CORE_OBSERVATION),
    ),
    NationalRule(
        "dkcore-observation-subject",
        "dk",
        "Observation",
        "a DK Core Observation has a subject (subject 1..)",
        _DK + "DkCoreObservation.fsh",
        _has_subject,
    ),
    NationalRule(
        "dkcore-observation-subject-type",
        "dk",
        "Observation",
        "the subject is a Patient, Group, Location or Device",
        _DK + "DkCoreObservation.fsh",
        _subject_types,
    ),
    NationalRule(
        "dkcore-observation-ucum",
        "dk",
        "Observation",
        "quantities are in UCUM (valueQuantity.system and component.valueQuantity.system)",
        _DK + "DkCoreObservation.fsh",
        _quantities_in_ucum,
    ),
    NationalRule(
        "dkcore-observation-loinc-code",
        "dk",
        "Observation",
        "a LOINC coding has a code, and there is at most one (code.coding[LOINC] 0..1)",
        _DK + "DkCoreObservation.fsh",
        lambda r: _loinc_codings_have_codes(r) + _one_loinc_coding(r),
    ),
)


def rules_for(nation: Nation, resource_type: str) -> list[NationalRule]:
    return [r for r in RULES if r.nation == nation and r.resource_type == resource_type]


def national_rule_violations(
    resource: dict[str, Any], nation: Nation
) -> list[tuple[NationalRule, str]]:
    """(rule, location) for every verified rule of ``nation`` that ``resource`` breaks."""
    found = []
    for rule in rules_for(nation, str(resource.get("resourceType"))):
        found += [(rule, where) for where in rule.check(resource)]
    return found


def export_for(resource: dict[str, Any], nation: Nation) -> dict[str, Any]:
    """A copy of ``resource`` shaped for ``nation``'s core profiles (see the module doc)."""
    if nation not in NATIONAL_PROFILES:
        raise ValueError(f"unknown nation {nation!r}: 'uk' or 'dk'")
    rtype = str(resource.get("resourceType"))
    shaped = copy.deepcopy(resource)
    profile = NATIONAL_PROFILES[nation].get(rtype)
    if profile is None:
        return shaped
    meta = dict(shaped.get("meta") or {})
    meta["profile"] = [profile]
    shaped["meta"] = meta
    if rtype == "Patient":
        foreign = _FOREIGN_IDENTIFIER[nation]
        kept = [
            ident
            for ident in _list(shaped.get("identifier"))
            if not (isinstance(ident, dict) and ident.get("system") == foreign)
        ]
        if nation == "dk":
            kept = [
                {**ident, "use": "official"}
                if isinstance(ident, dict) and ident.get("system") == CPR_SYSTEM
                else ident
                for ident in kept
            ]
        if kept:
            shaped["identifier"] = kept
        else:
            shaped.pop("identifier", None)
    broken = national_rule_violations(shaped, nation)
    if broken:
        rule, where = broken[0]
        raise ExportError(rule, where)
    return shaped
