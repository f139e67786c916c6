"""Canonical URLs and codes the engine writes into FHIR resources.

The programme's own CodeSystems live in ``terminology/``; this module names the systems and
the codes the engine emits so that rule code never spells a URL. ``tests/plan_engine`` checks
these codes against ``terminology/content`` whenever that package ships the same system.
"""

from __future__ import annotations

from typing import Final

CANONICAL_BASE: Final = "http://selfback.example.org/fhir"


def _code_system(name: str) -> str:
    return f"{CANONICAL_BASE}/CodeSystem/{name}"


# Programme CodeSystems (shared with terminology/).
EDUCATION_THEME: Final = _code_system("education-theme")
PLAN_ACTIVITY_KIND: Final = _code_system("plan-activity-kind")
EXERCISE_FEEDBACK_REASON: Final = _code_system("exercise-feedback-reason")
RED_FLAG: Final = _code_system("red-flag")
# Engine-owned CodeSystems (only the engine emits these codes).
EXERCISE_TYPE: Final = _code_system("exercise-type")
CONTRAINDICATION_TAG: Final = _code_system("exercise-contraindication")
PLAN_RULE: Final = _code_system("plan-rule")
PLAN_MODE: Final = _code_system("plan-mode")
PLAN_ENGINE_ACTIVITY: Final = _code_system("plan-engine-activity")  # safety-message only

# Definitions and identifiers.
ACTIVITY_DEFINITION_BASE: Final = f"{CANONICAL_BASE}/ActivityDefinition"
PLAN_DEFINITION_URL: Final = f"{CANONICAL_BASE}/PlanDefinition/weekly-lbp-self-management"
RULESET_LIBRARY_URL: Final = f"{CANONICAL_BASE}/Library/plan-engine-rules"
CASE_BASE_LIBRARY_URL: Final = f"{CANONICAL_BASE}/Library/plan-engine-case-base"
SIMILARITY_LIBRARY_URL: Final = f"{CANONICAL_BASE}/Library/plan-engine-similarity"
ENGINE_DEVICE_IDENTIFIER: Final = f"{CANONICAL_BASE}/identifier/software"
DECISION_IDENTIFIER: Final = f"{CANONICAL_BASE}/identifier/plan-decision"
EXTENSION_BASE: Final = f"{CANONICAL_BASE}/StructureDefinition"
EXT_EXERCISE_LEVEL: Final = f"{EXTENSION_BASE}/exercise-level"
EXT_EXERCISE_DOSAGE: Final = f"{EXTENSION_BASE}/exercise-dosage"
EXT_CONTRAINDICATION: Final = f"{EXTENSION_BASE}/exercise-contraindication"
EXT_EDUCATION_ORDER: Final = f"{EXTENSION_BASE}/education-order"
EXT_EDUCATION_QUIZ: Final = f"{EXTENSION_BASE}/education-quiz"
EXT_EDUCATION_TAG: Final = f"{EXTENSION_BASE}/education-tag"
EXT_TRANSLATION: Final = "http://hl7.org/fhir/StructureDefinition/translation"

# External terminologies (FHIR R4 / HL7 / LOINC / SNOMED CT / UCUM).
LOINC: Final = "http://loinc.org"
SNOMED: Final = "http://snomed.info/sct"
UCUM: Final = "http://unitsofmeasure.org"
LOINC_STEPS_PER_DAY: Final = "41950-7"  # Number of steps in 24 hour Measured
SNOMED_EXERCISE_THERAPY: Final = "229065009"
SNOMED_EDUCATION: Final = "409073007"
GOAL_CATEGORY: Final = "http://terminology.hl7.org/CodeSystem/goal-category"
FLAG_CATEGORY: Final = "http://terminology.hl7.org/CodeSystem/flag-category"
COMMUNICATION_CATEGORY: Final = "http://terminology.hl7.org/CodeSystem/communication-category"
PROVENANCE_PARTICIPANT_TYPE: Final = (
    "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
)
DATA_OPERATION: Final = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
ACT_REASON: Final = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
DETECTED_ISSUE_CATEGORY: Final = "http://terminology.hl7.org/CodeSystem/v3-ActCode"

# Codes of the shared systems.
FEEDBACK_EASY: Final = "easy"
FEEDBACK_DIFFICULT: Final = "difficult"
FEEDBACK_PAIN: Final = "pain"
FEEDBACK_UNCLEAR: Final = "instruction-unclear"
FEEDBACK_REASONS: Final = frozenset(
    {FEEDBACK_EASY, FEEDBACK_DIFFICULT, FEEDBACK_PAIN, FEEDBACK_UNCLEAR}
)
# Ratings of a completed exercise (same CodeSystem; "easy" is shared with the replace reasons).
RATING_EASY: Final = "easy"
RATING_RIGHT: Final = "just-right"
RATING_HARD: Final = "hard"
RATING_PAINFUL: Final = "painful"
EXERCISE_RATINGS: Final = frozenset({RATING_EASY, RATING_RIGHT, RATING_HARD, RATING_PAINFUL})

# plan-activity-kind codes (terminology/content/CodeSystem-plan-activity-kind.json).
ACTIVITY_KIND_EXERCISE: Final = "exercise"
ACTIVITY_KIND_PAIN_RELIEF_EXERCISE: Final = "pain-relief-exercise"
ACTIVITY_KIND_EDUCATION: Final = "education-message"
ACTIVITY_KIND_QUIZ: Final = "education-quiz"
ACTIVITY_KIND_STEP_GOAL: Final = "step-goal"
# Not (yet) in plan-activity-kind; emitted under PLAN_ENGINE_ACTIVITY.
ACTIVITY_KIND_SAFETY_MESSAGE: Final = "safety-message"

# Every red-flag answer (a RedFlagAnswers field) and its code in the shared red-flag
# CodeSystem. A Questionnaire item asking it carries that code in ``Questionnaire.item.code``;
# the server's reader and the coverage test (tests/integration/test_red_flag_coverage.py)
# map items to answers through this table.
RED_FLAG_ANSWER_CODES: Final = {
    "bladder_bowel_dysfunction": "bladder-bowel-dysfunction",
    "saddle_numbness": "saddle-numbness",
    "sexual_dysfunction": "sexual-dysfunction",
    "progressive_leg_weakness": "progressive-leg-weakness",
    "bilateral_leg_symptoms": "bilateral-leg-symptoms",
    "fever": "fever",
    "unexplained_weight_loss": "unexplained-weight-loss",
    "significant_trauma": "significant-trauma",
    "night_pain": "night-pain",
    "thoracic_pain": "thoracic-pain",
    "new_pain": "new-or-worsening-pain",
    "cancer_history": "cancer-history",
    "steroid_or_immunosuppression": "steroid-immunosuppression",
    "onset_age_outside_20_55": "onset-age-outside-20-55",
    "self_harm_thoughts": "self-harm-thoughts",
}
RED_FLAG_ANSWER_BY_CODE: Final = {code: name for name, code in RED_FLAG_ANSWER_CODES.items()}

# Safety findings with a code of their own in the shared red-flag CodeSystem (a finding
# from answers also carries the codes of its answers); every finding carries its id under
# PLAN_RULE.
FINDING_RED_FLAG_CODES: Final = {
    "RF-CANCER-HISTORY-NEW-PAIN": "cancer-history-new-pain",
    "REV-PAIN-VERY-HIGH": "severe-pain-persistent",
}

# Shared contract "safety alerts" (BRIEF_COMMON.md): the Flag, DetectedIssue and
# Communication of every finding a clinician must act on carry this meta.tag.
SECURITY_TAG: Final = _code_system("security-tag")
SAFETY_ALERT_TAG: Final = "safety-alert"
# Urgency of a finding -> Communication.priority (FHIR R4 request-priority): the Task the
# alert service makes takes its priority from it.
URGENCY_PRIORITY: Final = {
    "emergency": "stat",
    "urgent": "asap",
    "review": "routine",
    "info": "routine",
}

MODE_STANDARD: Final = "standard"
MODE_PAIN_RELIEF: Final = "pain-relief"
MODE_SAFETY_HOLD: Final = "safety-hold"
MODE_NOT_PERMITTED: Final = "not-permitted"

EXERCISE_TYPES: Final = (
    "abdominal",
    "back-extensor",
    "core-stability",
    "gluteal",
    "flexibility",
    "pain-relief",
)
EXERCISE_TYPE_PAIN_RELIEF: Final = "pain-relief"
