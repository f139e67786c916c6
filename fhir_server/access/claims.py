"""What an access token stands for, as the resource server sees it. Pure data."""

from __future__ import annotations

from dataclasses import dataclass

from fhir_server.access.scopes import Scopes

PATIENT = "patient"
PRACTITIONER = "practitioner"
ADMIN = "admin"
ROLES = (PATIENT, PRACTITIONER, ADMIN)


@dataclass(frozen=True, slots=True)
class Claims:
    """The facts behind one active access token.

    ``role`` is the signed-in person's role (``patient``, ``practitioner``, ``admin``);
    ``None`` for a backend client acting for itself (client credentials).
    ``patient`` and ``encounter`` are launch context (ids, not references).
    """

    client_id: str
    scopes: Scopes
    subject: str | None = None
    role: str | None = None
    fhir_user: str | None = None  # e.g. "Practitioner/123"
    patient: str | None = None
    encounter: str | None = None
    expires_at: int = 0  # seconds since the epoch
    grant_id: str = ""  # the authorization this token belongs to (for audit)

    @property
    def is_backend(self) -> bool:
        return self.role is None and self.subject is None
