"""The SMART-on-FHIR authorization server and the access decision (docs/AUTH.md).

Public API (pure, light to import)::

    decide(claims, interaction, type, resource_or_query, ...) -> Allow | Deny | Filter
    Claims                                what an access token stands for
    Scopes, parse_scopes                  SMART v1/v2 scope parsing
    capability_security(base_url)         CapabilityStatement.rest.security (oauth-uris)

The HTTP and CLI halves, imported where they are wired in::

    fhir_server.auth.routes.mount_auth(app, state) -> AuthApp
        adds /auth/* and the discovery documents; app.state.auth.claims(token) resolves a
        bearer token to Claims (None when unknown, expired or revoked)
    fhir_server.auth.cli.register_cli(subparsers)
        `selfback client|keys|activation-code|account ...`
"""

from fhir_server.auth.access import Allow, Consent, Deny, Filter, decide
from fhir_server.auth.claims import Claims
from fhir_server.auth.discovery import capability_security
from fhir_server.auth.scopes import Scopes
from fhir_server.auth.scopes import parse as parse_scopes

__all__ = [
    "Allow",
    "Claims",
    "Consent",
    "Deny",
    "Filter",
    "Scopes",
    "capability_security",
    "decide",
    "parse_scopes",
]
