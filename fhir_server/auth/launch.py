"""EHR launch contexts: the EHR says who, for which patient; the app gets an opaque handle.

An EHR authenticated as a backend client (scope ``__ehr-launch``) creates a context --
the practitioner (``fhirUser``), the patient, optionally an encounter and ``fhirContext`` --
with one call and receives ``launch``, an unguessable value that is single use, lives
:data:`LAUNCH_TTL` seconds and is bound to the context and, when named, to the app's
client_id (SAL-16). The EHR then opens ``launch_uri?iss=<FHIR base>&launch=<value>``.

Authorizing with that value signs the practitioner in: the EHR vouched for them when it
created the context, and the value reaches only the app the EHR opened.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import insert, select, update

from fhir_server.auth.credentials import digest, new_secret
from fhir_server.auth.tables import auth_launch
from fhir_server.storage.database import Database

# fhirContext roles are absolute URIs (SAL-32); Patient and Encounter only with another role.
_CONTEXT_KEYS = ("reference", "canonical", "identifier")


class LaunchError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class LaunchContext:
    launch_hash: str
    created_by: str
    client_id: str | None
    context: dict[str, Any]
    expires_at: int
    used_at: int | None

    def usable_by(self, client_id: str, now: int) -> bool:
        return (
            self.used_at is None
            and self.expires_at > now
            and (self.client_id is None or self.client_id == client_id)
        )


def check_fhir_context(items: Any) -> list[dict[str, Any]]:
    """Validate ``fhirContext`` as SMART 2.2 defines it (SAL-32)."""
    if items is None:
        return []
    if not isinstance(items, list):
        raise LaunchError("fhirContext must be an array of objects")
    checked = []
    for item in items:
        if not isinstance(item, dict) or not any(
            isinstance(item.get(k), (str, dict)) for k in _CONTEXT_KEYS
        ):
            raise LaunchError("each fhirContext item needs a reference, canonical or identifier")
        reference = item.get("reference")
        if isinstance(reference, str) and ("://" in reference or "/" not in reference):
            raise LaunchError("fhirContext references are relative, e.g. Questionnaire/123")
        role = item.get("role")
        if role is not None and (
            not isinstance(role, str) or "://" not in role and not role.startswith("urn:")
        ):
            raise LaunchError("a fhirContext role is an absolute URI")
        if (
            isinstance(reference, str)
            and reference.split("/")[0] in ("Patient", "Encounter")
            and (not role or role == "launch")
        ):
            raise LaunchError("Patient and Encounter go in patient/encounter, not fhirContext")
        checked.append(item)
    return checked


class LaunchContexts:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create(
        self, *, created_by: str, client_id: str | None, context: dict[str, Any], ttl: int
    ) -> tuple[str, int]:
        now = int(time.time())
        value = new_secret(32)
        with self.db.writer.begin() as conn:
            conn.execute(
                insert(auth_launch).values(
                    launch_hash=digest(value),
                    created_by=created_by,
                    client_id=client_id,
                    context=orjson.dumps(context).decode(),
                    created_at=now,
                    expires_at=now + ttl,
                    used_at=None,
                )
            )
        return value, now + ttl

    def find(self, value: str) -> LaunchContext | None:
        if not value or len(value) > 512:
            return None
        with self.db.reader.connect() as conn:
            row = conn.execute(
                select(auth_launch).where(auth_launch.c.launch_hash == digest(value))
            ).first()
        if row is None:
            return None
        return LaunchContext(
            row.launch_hash,
            row.created_by,
            row.client_id,
            orjson.loads(row.context),
            row.expires_at,
            row.used_at,
        )

    def consume(self, conn: Any, launch_hash: str, now: int) -> bool:
        """Mark used inside the caller's transaction; False if it was already used."""
        result = conn.execute(
            update(auth_launch)
            .where(
                auth_launch.c.launch_hash == launch_hash,
                auth_launch.c.used_at.is_(None),
                auth_launch.c.expires_at > now,
            )
            .values(used_at=now)
        )
        return bool(result.rowcount == 1)
