"""How the programme's inputs to the plan engine are written in FHIR R4.

The plan engine (``plan_engine``) takes a :class:`plan_engine.PatientSnapshot`; the server
builds it from stored resources. Where R4 and our content already say how a fact is
recorded (score Observations, QuestionnaireResponses, daily steps, the engine's own
CarePlans and Goals) we read that. Where nothing was defined, this module defines it; each
convention is documented in docs/PLAN_ENGINE.md, "In the server", and absence is accepted.
"""

from __future__ import annotations

from typing import Final

from plan_engine import codes

BASE: Final = codes.CANONICAL_BASE
QUESTIONNAIRE: Final = f"{BASE}/Questionnaire"
BASELINE_QUESTIONNAIRE: Final = f"{QUESTIONNAIRE}/selfback-baseline"
WEEKLY_QUESTIONNAIRE: Final = f"{QUESTIONNAIRE}/selfback-weekly"
EXERCISE_FEEDBACK_QUESTIONNAIRE: Final = f"{QUESTIONNAIRE}/selfback-exercise-feedback"
GOAL_SETTING_QUESTIONNAIRE: Final = f"{QUESTIONNAIRE}/selfback-goal-setting"
MENTAL_HEALTH_QUESTIONNAIRE: Final = f"{QUESTIONNAIRE}/selfback-mental-health"
PAIN_PERCEPTION_QUESTIONNAIRE: Final = f"{QUESTIONNAIRE}/selfback-pain-perception"
# Responses to these re-plan the target week only when the new decision differs from the
# plan stored for it (mode, status, goal, exercises, education or findings); otherwise
# nothing is written (docs: "Triggers").
REPLAN_IF_CHANGED: Final = (
    GOAL_SETTING_QUESTIONNAIRE,
    MENTAL_HEALTH_QUESTIONNAIRE,
    PAIN_PERCEPTION_QUESTIONNAIRE,
)
# Responses to these trigger planning once they are scored (docs: "Triggers").
PLANNING_QUESTIONNAIRES: Final = (
    BASELINE_QUESTIONNAIRE,
    WEEKLY_QUESTIONNAIRE,
    EXERCISE_FEEDBACK_QUESTIONNAIRE,
    *REPLAN_IF_CHANGED,
)

# The programme-level CarePlan: CarePlan.category carries this coding. The weekly plans
# the engine makes are ``basedOn`` it. Engine-owned CodeSystem, like plan-mode.
CAREPLAN_KIND: Final = f"{BASE}/CodeSystem/careplan-kind"
PROGRAMME: Final = "programme"

EXTENSION: Final = f"{BASE}/StructureDefinition"
# On the programme CarePlan: the minutes a session of exercise the patient chose.
EXT_EXERCISE_MINUTES: Final = f"{EXTENSION}/exercise-minutes"
# On a daily-steps Observation: false when wear time / data coverage was too low for the
# day to count (absent: the day is valid).
EXT_STEP_DAY_VALID: Final = f"{EXTENSION}/step-day-valid"
# On an education-read Communication: whether the message's quiz was passed.
EXT_QUIZ_PASSED: Final = f"{EXTENSION}/education-quiz-passed"
# On a weekly CarePlan replaced by a newer plan for the same week (re-planned from newer
# data before the week began): the plan that replaces it.
EXT_SUPERSEDED_BY: Final = f"{EXTENSION}/superseded-by"

LOINC_STEPS: Final = codes.LOINC_STEPS_PER_DAY
SCORING_ALGORITHM: Final = f"{BASE}/CodeSystem/scoring-algorithm"
