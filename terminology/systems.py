"""Canonical URLs of the code systems the programme uses."""

CANONICAL_BASE = "http://selfback.example.org/fhir"

# Our CodeSystems (terminology/content/CodeSystem-*.json)
ASSESSMENT = f"{CANONICAL_BASE}/CodeSystem/assessment"
INSTRUMENT_ITEM = f"{CANONICAL_BASE}/CodeSystem/instrument-item"
SCORING_ALGORITHM = f"{CANONICAL_BASE}/CodeSystem/scoring-algorithm"
SCORE_BAND = f"{CANONICAL_BASE}/CodeSystem/score-band"
EXERCISE_FEEDBACK_REASON = f"{CANONICAL_BASE}/CodeSystem/exercise-feedback-reason"
RED_FLAG = f"{CANONICAL_BASE}/CodeSystem/red-flag"
PLAN_ACTIVITY_KIND = f"{CANONICAL_BASE}/CodeSystem/plan-activity-kind"
EDUCATION_THEME = f"{CANONICAL_BASE}/CodeSystem/education-theme"
BARRIER = f"{CANONICAL_BASE}/CodeSystem/barrier"
QUESTIONNAIRE_ANSWER = f"{CANONICAL_BASE}/CodeSystem/questionnaire-answer"
SECURITY_TAG = f"{CANONICAL_BASE}/CodeSystem/security-tag"
ALERT = f"{CANONICAL_BASE}/CodeSystem/alert"

# External systems (FHIR R4 terminologies page)
LOINC = "http://loinc.org"
SNOMED_CT = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
