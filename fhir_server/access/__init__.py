"""The one access decision (ARCHITECTURE.md "Access control", docs/AUTH.md).

Everything that decides what a token may read or write lives here, apart from the OAuth
server (``fhir_server.auth``), which only issues tokens:

    claims.py       what an access token stands for (role, scopes, patient, fhirUser)
    scopes.py       SMART v1/v2 scope parsing
    compartment.py  the R4 Patient compartment as the decision reads it
    consent.py      Consent and CareTeam rules (pure)
    decision.py     decide(claims, interaction, type, resource_or_query, ...)

Public API (pure, light to import)::

    decide(...) -> Allow | Deny | Filter
    Claims, Scopes, parse_scopes
"""

from fhir_server.access.claims import Claims
from fhir_server.access.decision import Allow, Consent, Deny, Filter, decide
from fhir_server.access.scopes import Scopes
from fhir_server.access.scopes import parse as parse_scopes

__all__ = [
    "Allow",
    "Claims",
    "Consent",
    "Deny",
    "Filter",
    "Scopes",
    "decide",
    "parse_scopes",
]
