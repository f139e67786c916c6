"""Pure transforms: questionnaire scoring, wearable imports, national-profile shaping (no I/O).

Questionnaire content and scoring (this package's clinical content):

- ``load_questionnaires()`` / ``questionnaire(url)``: the programme's FHIR R4 Questionnaires
- ``score_response(qr, as_of) -> list[Score]``: scores by the rules in ``data/scoring.json``
- ``score_observations(qr, scores, as_of) -> list[dict]``: Observations + one Provenance
- ``due_groups(week, baseline, step_goal_fraction)``: the weekly check-in schedule;
  ``due_questionnaire(questionnaire, due)``: the weekly Questionnaire with only those groups
- ``export_for(resource, "uk" | "dk")``: a resource shaped for UK Core / DK Core consumers
"""

from mappings.national_profiles import ExportError, export_for, national_rule_violations
from mappings.questionnaire_content import load_questionnaires, questionnaire, red_flag_items
from mappings.score import Score, ScoreCoding, ScoringError
from mappings.score_observations import score_observations
from mappings.scoring import score_response, scoring_config
from mappings.weekly_schedule import due_groups, due_questionnaire, weekly_schedule

__all__ = [
    "red_flag_items",
    "ExportError",
    "export_for",
    "national_rule_violations",
    "Score",
    "ScoreCoding",
    "ScoringError",
    "due_groups",
    "due_questionnaire",
    "load_questionnaires",
    "questionnaire",
    "score_observations",
    "score_response",
    "scoring_config",
    "weekly_schedule",
]
