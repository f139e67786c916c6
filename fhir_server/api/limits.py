"""The request limits of /fhir, from the settings: body size by role, structure, search,
URL. The rules themselves are pure and live with what they limit
(fhir_server.formats.limits, fhir_server.search.limits); this module picks the numbers
for a request and checks what only HTTP sees (the request line and headers).

Body size by role (docs/DEPLOYMENT.md "Limits"): a patient app sends questionnaire
answers, step counts and exercise feedback -- kilobytes -- so a patient token gets
``SELFBACK_PATIENT_MAX_BODY_BYTES`` (256 KiB); a clinician's app
``SELFBACK_PRACTITIONER_MAX_BODY_BYTES`` (1 MiB); admins, backend clients and
``--auth none`` the installation's ``SELFBACK_MAX_BODY_BYTES``, which caps the others too.
"""

from __future__ import annotations

from urllib.parse import unquote, unquote_plus

from fhir_server.access.claims import PATIENT, PRACTITIONER, Claims
from fhir_server.config import Settings
from fhir_server.errors import FhirError, error
from fhir_server.formats.limits import FORBIDDEN_CHARACTERS, StructureLimits, forbidden_character
from fhir_server.search.limits import SearchLimits

# Headers whose values reach a search or the database (http.html#cond-update, #ccreate).
_QUERY_HEADERS = (b"if-none-exist",)


def body_limit(claims: Claims, settings: Settings) -> int:
    """The largest body this token may send, in bytes."""
    limit = settings.max_body_bytes
    if claims.role == PATIENT:
        return min(limit, settings.patient_max_body_bytes)
    if claims.role == PRACTITIONER:
        return min(limit, settings.practitioner_max_body_bytes)
    return limit


def structure_limits(settings: Settings) -> StructureLimits:
    return StructureLimits(
        max_depth=settings.max_json_depth,
        max_array_items=settings.max_array_items,
        max_elements=settings.max_elements,
    )


def search_limits(settings: Settings) -> SearchLimits:
    return SearchLimits(
        max_params=settings.max_search_params,
        max_repeats=settings.max_param_repeats,
        max_values=settings.max_param_values,
        max_sort_keys=settings.max_sort_keys,
    )


def request_line_refusal(scope: dict, settings: Settings) -> FhirError | None:  # type: ignore[type-arg]
    """414 for a URL longer than ``SELFBACK_MAX_URL_BYTES`` (RFC 9110 section 15.5.15);
    400 for a path, query or If-None-Exist header holding a character FHIR R4 strings
    may not hold (datatypes.html#string). None when the request may go on."""
    path: str = scope.get("path", "")
    raw_path: bytes = scope.get("raw_path") or path.encode("utf-8", "surrogateescape")
    query: bytes = scope.get("query_string", b"")
    length = len(raw_path) + (len(query) + 1 if query else 0)
    if length > settings.max_url_bytes:
        return error(
            414,
            "too-costly",
            f"The URL is {length} bytes long; at most {settings.max_url_bytes} are accepted "
            "(use POST [type]/_search for long searches)",
        )
    if FORBIDDEN_CHARACTERS.search(path):
        return forbidden_character("The path", path)
    if query:
        text = unquote_plus(query.decode("latin-1"), errors="replace")
        if FORBIDDEN_CHARACTERS.search(text):
            return forbidden_character("The query", text)
    for name, value in scope.get("headers", ()):
        if name in _QUERY_HEADERS:
            text = unquote(value.decode("latin-1"), errors="replace")
            if FORBIDDEN_CHARACTERS.search(text):
                return forbidden_character(f"The {name.decode()} header", text)
    return None


__all__ = ["body_limit", "request_line_refusal", "search_limits", "structure_limits"]
