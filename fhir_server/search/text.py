"""Text normalisation for string search (FHIR R4 search.html#string).

"By default, a field matches a string query if the value of the field equals or starts
with the supplied parameter value, after both have been normalized by case and accent."
Both the indexed values and the search values go through :func:`normalise`.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

# Index column widths (fhir_server.storage.schema); values are cut on write and search.
STRING_WIDTH = 255


@lru_cache(maxsize=8192)
def normalise(text: str) -> str:
    """Case-fold and strip accents: ``"Müller"`` -> ``"muller"``; cut to the column width."""
    if text.isascii():
        return text.lower()[:STRING_WIDTH]
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return stripped.casefold()[:STRING_WIDTH]
