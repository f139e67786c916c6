"""The server's signing keys: created on first start, rotated from the CLI, published as JWKS.

Keys live in the database (``auth_signing_key``), so every server process behind a load
balancer signs with the same key and publishes the same set. The newest unretired key
signs; rotation retires the others, which stay in the JWKS for :data:`KEY_RETENTION`
seconds so id_tokens they signed still verify (SAL-50, issue 4 item 9). Each process
re-reads the table at most every few seconds, so a rotation reaches all of them quickly.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import orjson
from joserfc.jwk import RSAKey
from sqlalchemy import insert, select, update

from fhir_server.auth.credentials import new_secret
from fhir_server.auth.policy import KEY_RETENTION
from fhir_server.auth.tables import auth_signing_key
from fhir_server.storage.database import Database

SIGNING_ALG = "RS256"  # OIDC: RS256 SHALL be supported (SAL-50)
RSA_BITS = 2048
_RELOAD_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    key: RSAKey
    created_at: int
    retired_at: int | None

    def public_jwk(self) -> dict[str, Any]:
        return {
            **self.key.as_dict(private=False),
            "kid": self.kid,
            "alg": SIGNING_ALG,
            "use": "sig",
        }


class SigningKeys:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._lock = threading.Lock()
        self._loaded_at = 0.0
        self._keys: list[SigningKey] = []

    # -- reading ---------------------------------------------------------------------

    def current(self) -> SigningKey:
        """The key that signs now: the newest one not retired."""
        keys = self._fresh()
        active = [k for k in keys if k.retired_at is None]
        if not active:
            self.ensure()
            keys = self._fresh(force=True)
            active = [k for k in keys if k.retired_at is None]
        return max(active, key=lambda k: (k.created_at, k.kid))

    def published(self, now: int | None = None) -> list[SigningKey]:
        """Keys in the JWKS: the active ones and those retired less than KEY_RETENTION ago."""
        now = int(time.time()) if now is None else now
        return [
            k for k in self._fresh() if k.retired_at is None or k.retired_at + KEY_RETENTION > now
        ]

    def jwks(self) -> dict[str, Any]:
        return {"keys": [k.public_jwk() for k in self.published()]}

    def _fresh(self, force: bool = False) -> list[SigningKey]:
        with self._lock:
            if force or time.monotonic() - self._loaded_at > _RELOAD_SECONDS or not self._keys:
                self._keys = self._load()
                self._loaded_at = time.monotonic()
            return list(self._keys)

    def _load(self) -> list[SigningKey]:
        t = auth_signing_key
        with self.db.reader.connect() as conn:
            rows = conn.execute(select(t).order_by(t.c.created_at)).all()
        return [
            SigningKey(
                row.kid,
                RSAKey.import_key(orjson.loads(row.private_jwk)),
                row.created_at,
                row.retired_at,
            )
            for row in rows
        ]

    # -- writing ---------------------------------------------------------------------

    def ensure(self) -> SigningKey | None:
        """Create the first key if there is none yet; returns it, or None if one existed."""
        t = auth_signing_key
        with self.db.writer.begin() as conn:
            exists = conn.execute(select(t.c.kid).where(t.c.retired_at.is_(None)).limit(1)).first()
            if exists:
                return None
            created = _insert_new_key(conn)
        self._fresh(force=True)
        return created

    def rotate(self, now: int | None = None) -> tuple[SigningKey, list[str]]:
        """A new signing key; every other active key is retired. Returns (new, retired kids)."""
        now = int(time.time()) if now is None else now
        t = auth_signing_key
        with self.db.writer.begin() as conn:
            retired = [
                row.kid
                for row in conn.execute(select(t.c.kid).where(t.c.retired_at.is_(None))).all()
            ]
            if retired:
                conn.execute(update(t).where(t.c.kid.in_(retired)).values(retired_at=now))
            created = _insert_new_key(conn, now)
        self._fresh(force=True)
        return created, retired


def _insert_new_key(conn: Any, now: int | None = None) -> SigningKey:
    now = int(time.time()) if now is None else now
    kid = new_secret(12)
    key = RSAKey.generate_key(
        RSA_BITS, parameters={"kid": kid, "alg": SIGNING_ALG, "use": "sig"}, private=True
    )
    conn.execute(
        insert(auth_signing_key).values(
            kid=kid,
            alg=SIGNING_ALG,
            private_jwk=orjson.dumps(key.as_dict(private=True)).decode(),
            created_at=now,
            retired_at=None,
        )
    )
    return SigningKey(kid, key, now, None)
