"""The one result type of the validator: an OperationOutcome issue with a FHIRPath location."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# FHIR R4 valueset-issue-severity, most severe first.
SEVERITIES = ("fatal", "error", "warning", "information")


@dataclass(frozen=True, slots=True)
class Issue:
    """One OperationOutcome.issue (FHIR R4 operationoutcome.html).

    ``code`` is from http://hl7.org/fhir/issue-type; ``expression`` holds the FHIRPath
    location (``Patient.identifier[0].value``); ``rule`` names the rule that fired (a
    constraint key such as ``per-1``, or ``cardinality``, ``binding``, ``slicing`` ...) so a
    caller can tell issues apart without parsing messages.
    """

    severity: str
    code: str
    diagnostics: str
    expression: tuple[str, ...] = ()
    rule: str = ""

    @property
    def is_error(self) -> bool:
        return self.severity in ("fatal", "error")

    def to_fhir(self) -> dict[str, Any]:
        issue: dict[str, Any] = {"severity": self.severity, "code": self.code}
        if self.diagnostics:
            issue["diagnostics"] = self.diagnostics
        if self.expression:
            issue["expression"] = list(self.expression)
        return issue


def is_valid(issues: Iterable[Issue]) -> bool:
    """True when no issue is an error or fatal (warnings and information do not count)."""
    return not any(issue.is_error for issue in issues)


def operation_outcome(issues: Iterable[Issue]) -> dict[str, Any]:
    """The issues as an OperationOutcome; an empty list gives the R4 "all OK" information."""
    listed = [issue.to_fhir() for issue in issues]
    if not listed:
        # operationoutcome.html: an outcome has at least one issue.
        listed = [{"severity": "information", "code": "informational", "diagnostics": "All OK"}]
    return {"resourceType": "OperationOutcome", "issue": listed}
