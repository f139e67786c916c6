"""What a write interaction reports back to whoever called it (HTTP route or bundle)."""

from __future__ import annotations

from dataclasses import dataclass

from fhir_server.storage.repository import StoredResource


@dataclass(frozen=True, slots=True)
class WriteOutcome:
    """``status`` is the HTTP status FHIR assigns to the interaction's result
    (http.html: 201 created, 200 updated or matched, 204 deleted)."""

    status: int
    stored: StoredResource | None = None

    @property
    def created(self) -> bool:
        return self.status == 201
