"""The SMART-on-FHIR authorization server: endpoints, grants, tokens, clients, keys,
accounts and onboarding (docs/AUTH.md).

What a token may do is decided elsewhere, in ``fhir_server.access`` (the one access
decision); this package only issues, refreshes, introspects and revokes tokens, and asks
``fhir_server.access`` at the authorize step whether the chosen patient is reachable.

Public API::

    capability_security(base_url)         CapabilityStatement.rest.security (oauth-uris)

The HTTP and CLI halves, imported where they are wired in::

    fhir_server.auth.routes.mount_auth(app, state) -> AuthApp
        adds /auth/* and the discovery documents; app.state.auth.claims(token) resolves a
        bearer token to Claims (None when unknown, expired or revoked)
    fhir_server.auth.cli.register_cli(subparsers)
        `selfback client|keys|activation-code|account ...`
"""

from fhir_server.auth.discovery import capability_security

__all__ = ["capability_security"]
