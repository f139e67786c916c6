"""The value types of scoring: a Score, the coding it carries, and the one error type."""

from dataclasses import dataclass
from typing import Literal

ValueKind = Literal["integer", "decimal", "string", "band"]


class ScoringError(ValueError):
    """A QuestionnaireResponse cannot be scored as given.

    ``code`` is the FHIR OperationOutcome issue type (``invalid``, ``required``, ``value``).
    """

    def __init__(self, message: str, code: str = "invalid") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class ScoreCoding:
    system: str
    code: str
    display: str


@dataclass(frozen=True, slots=True)
class Score:
    """One score derived from one QuestionnaireResponse.

    ``value`` is an int for summed scores, a float for means, the 5-digit profile string for
    EQ-5D-5L, and the band code for a risk group (``value_kind == "band"``).
    """

    score_id: str
    instrument: str
    display: str
    codes: tuple[ScoreCoding, ...]
    value_kind: ValueKind
    value: int | float | str
    band: str | None
    items_answered: tuple[str, ...]
    items_missing: tuple[str, ...]
    prorated: bool
    effective: str
    algorithm_version: str
