"""One error type for everything a client can get wrong.

Every refusal the server makes is a :class:`FhirError`: an HTTP status plus one or more
:class:`Issue` values, rendered as an OperationOutcome (FHIR R4 operationoutcome.html).
Pure code (parsers, validators, search, patch) raises it; the HTTP layer renders it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Issue:
    """One OperationOutcome.issue. ``code`` is from http://hl7.org/fhir/issue-type."""

    code: str
    diagnostics: str
    severity: str = "error"
    expression: tuple[str, ...] = ()

    def to_fhir(self) -> dict[str, Any]:
        issue: dict[str, Any] = {"severity": self.severity, "code": self.code}
        if self.diagnostics:
            issue["diagnostics"] = self.diagnostics
        if self.expression:
            issue["expression"] = list(self.expression)
        return issue


@dataclass(slots=True)
class FhirError(Exception):
    """A refusal with an HTTP status and the issues that explain it."""

    status: int
    issues: list[Issue] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status}: " + "; ".join(i.diagnostics for i in self.issues)

    def to_operation_outcome(self) -> dict[str, Any]:
        return operation_outcome(self.issues)

    def with_location(self, prefix: str) -> FhirError:
        """The same error with every expression put under ``prefix`` (e.g. a bundle entry)."""
        issues = [
            Issue(
                i.code,
                i.diagnostics,
                i.severity,
                tuple(f"{prefix}.{e}" if e else prefix for e in i.expression) or (prefix,),
            )
            for i in self.issues
        ]
        return FhirError(self.status, issues, dict(self.headers))


def operation_outcome(issues: list[Issue]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [i.to_fhir() for i in issues]}


def error(status: int, code: str, diagnostics: str, *expression: str) -> FhirError:
    """Shorthand: ``raise error(404, "not-found", "Patient/x is not known")``."""
    return FhirError(status, [Issue(code, diagnostics, "error", tuple(expression))])


# Named constructors for the statuses FHIR R4 http.html assigns meaning to.
def bad_request(diagnostics: str, *expression: str, code: str = "invalid") -> FhirError:
    return error(400, code, diagnostics, *expression)


def not_found(diagnostics: str) -> FhirError:
    return error(404, "not-found", diagnostics)


def gone(diagnostics: str) -> FhirError:
    return error(410, "deleted", diagnostics)


def conflict(diagnostics: str) -> FhirError:
    return error(409, "conflict", diagnostics)


def precondition_failed(diagnostics: str) -> FhirError:
    return error(412, "conflict", diagnostics)


def unprocessable(diagnostics: str, *expression: str, code: str = "processing") -> FhirError:
    return error(422, code, diagnostics, *expression)
