"""The operations this server offers, by name (CapabilityStatement lists the same)."""

from fhir_server.operations import Operation
from fhir_server.operations.due_questionnaires import DUE_QUESTIONNAIRES
from fhir_server.operations.expand import EXPAND
from fhir_server.operations.extract import EXTRACT
from fhir_server.operations.lookup import LOOKUP
from fhir_server.operations.plan_apply import APPLY
from fhir_server.operations.plan_week import PLAN_WEEK, PLAN_WEEK_DRY_RUN
from fhir_server.operations.subsumes import SUBSUMES
from fhir_server.operations.translate import TRANSLATE
from fhir_server.operations.validate import VALIDATE
from fhir_server.operations.validate_code import VALIDATE_CODE

OPERATIONS: dict[str, Operation] = {
    op.name: op for op in (EXTRACT, VALIDATE, EXPAND, VALIDATE_CODE, LOOKUP, SUBSUMES, TRANSLATE)
}
# The plan engine's operations (docs/PLAN_ENGINE.md, "In the server").
OPERATIONS.update({op.name: op for op in (APPLY, PLAN_WEEK, PLAN_WEEK_DRY_RUN)})
# The patient app's weekly schedule of questions (docs/PLAN_ENGINE.md, "The patient app").
OPERATIONS[DUE_QUESTIONNAIRES.name] = DUE_QUESTIONNAIRES
