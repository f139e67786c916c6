"""How much one search may ask for, checked before it is parsed. Pure.

Every search parameter becomes a condition in the generated SQL; every alternative of
a comma-separated value an OR branch; every ``_sort`` key a join. Unbounded, a request
answers 500 from the database instead of a refusal (SQLite: "Expression tree is too
large (maximum depth 1000)" for 2,000 repeated ``name=``, "too many FROM clause terms"
for 500 ``_sort`` keys). FHIR R4 search.html leaves such limits to the server
("Servers may limit the number of parameters"); we refuse with 400 and say which limit.

Values holding characters FHIR R4 strings may not hold (datatypes.html#string: control
characters other than tab, CR and LF) are refused here too: PostgreSQL cannot compare
text with U+0000 in it (an error, hence a 500, where SQLite answered).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from fhir_server.errors import FhirError, error
from fhir_server.formats.limits import FORBIDDEN_CHARACTERS, forbidden_character

# Parameters about the response, not the match: never limited as repeats (_include may
# fairly repeat) but counted like the rest.
_REPEATABLE = frozenset({"_include", "_revinclude", "_elements", "_type"})


@dataclass(frozen=True, slots=True)
class SearchLimits:
    max_params: int = 100
    max_repeats: int = 20
    max_values: int = 100
    max_sort_keys: int = 8


def too_many(diagnostics: str) -> FhirError:
    return error(400, "too-costly", diagnostics)


def check_search(params: list[tuple[str, str]], limits: SearchLimits) -> None:
    """Raise 400 when a search passes one of ``limits`` or holds a forbidden character."""
    if len(params) > limits.max_params:
        raise too_many(
            f"The search has {len(params)} parameters; at most {limits.max_params} are accepted"
        )
    repeats = Counter(name.split(":", 1)[0] for name, _ in params)
    for name, count in repeats.items():
        if count > limits.max_repeats and name not in _REPEATABLE:
            raise too_many(
                f"The parameter {name!r} is given {count} times; at most "
                f"{limits.max_repeats} are accepted"
            )
    sort_keys = 0
    for name, value in params:
        if FORBIDDEN_CHARACTERS.search(name):
            raise forbidden_character("A search parameter name", name)
        if FORBIDDEN_CHARACTERS.search(value):
            raise forbidden_character(f"The value of {name!r}", value)
        alternatives = value.count(",") + 1
        if name.split(":", 1)[0] == "_sort":
            sort_keys += alternatives
            if sort_keys > limits.max_sort_keys:
                raise too_many(
                    f"_sort has more than {limits.max_sort_keys} keys; at most "
                    f"{limits.max_sort_keys} are accepted"
                )
        elif alternatives > limits.max_values:
            raise too_many(
                f"The value of {name!r} has {alternatives} alternatives; at most "
                f"{limits.max_values} are accepted"
            )


__all__ = ["SearchLimits", "check_search"]
