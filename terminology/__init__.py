"""CodeSystems, ValueSets and ConceptMaps of the programme, and a small pure lookup API over them.

The content is FHIR R4 JSON under ``terminology/content/``. Nothing here does I/O beyond reading
those packaged files, and nothing imports ``fhir_server``.

    >>> from terminology import lookup, validate_code, ASSESSMENT
    >>> lookup(ASSESSMENT, "rmdq-total").display
    'RMDQ total score'
"""

from terminology._conceptmap import Translation, translate
from terminology._content import load_content, resource_by_url
from terminology._lookup import Concept, lookup
from terminology._valueset import ValidationResult, expand, validate_code
from terminology.errors import TerminologyError
from terminology.systems import (
    ASSESSMENT,
    BARRIER,
    CANONICAL_BASE,
    EDUCATION_THEME,
    EXERCISE_FEEDBACK_REASON,
    INSTRUMENT_ITEM,
    LOINC,
    PLAN_ACTIVITY_KIND,
    QUESTIONNAIRE_ANSWER,
    RED_FLAG,
    SCORE_BAND,
    SCORING_ALGORITHM,
    SNOMED_CT,
    UCUM,
)

__all__ = [
    "ASSESSMENT",
    "BARRIER",
    "CANONICAL_BASE",
    "EDUCATION_THEME",
    "EXERCISE_FEEDBACK_REASON",
    "INSTRUMENT_ITEM",
    "LOINC",
    "PLAN_ACTIVITY_KIND",
    "QUESTIONNAIRE_ANSWER",
    "RED_FLAG",
    "SCORE_BAND",
    "SCORING_ALGORITHM",
    "SNOMED_CT",
    "UCUM",
    "Concept",
    "TerminologyError",
    "Translation",
    "ValidationResult",
    "expand",
    "load_content",
    "lookup",
    "resource_by_url",
    "translate",
    "validate_code",
]
