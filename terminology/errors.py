"""The one error type of the terminology library."""


class TerminologyError(LookupError):
    """A value set or code system is unknown or cannot be expanded from our content.

    ``code`` is the FHIR OperationOutcome issue type the caller should report.
    """

    def __init__(self, message: str, code: str = "not-found") -> None:
        super().__init__(message)
        self.code = code
