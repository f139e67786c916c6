"""Event handlers, by the resource type whose writes they react to."""

from fhir_server.events.handlers.questionnaire_scoring import score_questionnaire_response
from fhir_server.events.worker import Handler

HANDLERS: dict[str, Handler] = {
    "QuestionnaireResponse": score_questionnaire_response,
}
