"""Grants, authorization codes and tokens: issued, looked up, rotated and revoked.

A *grant* is one authorization: who (subject, role, fhirUser), which client, which scope
and which launch context. Authorization codes, access tokens and refresh tokens all point
at their grant, so revoking the grant ends every token it produced at once (SAL-73), and
the resource server resolves a token to its :class:`Claims` with one indexed join.

Codes and refresh tokens are claimed with a conditional UPDATE (``... WHERE used_at IS
NULL``): of two racing requests exactly one wins. Presenting a used code or a rotated
refresh token again revokes the whole grant (RFC 6749 4.1.2, RFC 9700 4.14.2).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from authlib.oauth2.rfc6749 import TokenMixin
from authlib.oidc.core import AuthorizationCodeMixin
from sqlalchemy import and_, delete, insert, select, update

from fhir_server.access.claims import PRACTITIONER, Claims
from fhir_server.access.scopes import parse
from fhir_server.auth.credentials import digest, new_secret
from fhir_server.auth.tables import auth_code, auth_grant, auth_launch, auth_token
from fhir_server.storage.database import Database

ACCESS = "access"
REFRESH = "refresh"
_PURGE_EVERY = 600.0  # seconds between clean-ups of dead codes and tokens, per process
# The resource server resolves a bearer token on every FHIR request. A short in-process
# cache saves that database round trip; every revocation made by this process clears it,
# so here revocation takes effect on the next request, and a revocation made by another
# process within CLAIMS_CACHE_SECONDS (docs/AUTH.md, "Enforcement on /fhir").
CLAIMS_CACHE_SECONDS = 2.0
CLAIMS_CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class Grant:
    grant_id: str
    client_id: str
    subject: str | None
    role: str | None
    fhir_user: str | None
    scope: str
    context: dict[str, Any]
    created_at: int
    refresh_expires_at: int | None
    revoked_at: int | None


@dataclass(frozen=True)
class AuthorizationCode(AuthorizationCodeMixin):
    code_hash: str
    grant: Grant
    client_id: str
    redirect_uri: str
    scope: str
    code_challenge: str
    nonce: str | None
    auth_time: int
    expires_at: int
    used_at: int | None

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time


@dataclass(frozen=True)
class Token(TokenMixin):
    token_hash: str
    kind: str
    grant: Grant
    client_id: str
    scope: str
    issued_at: int
    expires_at: int
    used_at: int | None
    revoked_at: int | None
    now: int = field(default_factory=lambda: int(time.time()), compare=False)

    def check_client(self, client: Any) -> bool:
        return bool(client) and client.get_client_id() == self.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return max(0, self.expires_at - self.issued_at)

    def is_expired(self) -> bool:
        return self.expires_at <= self.now

    def is_revoked(self) -> bool:
        return (
            self.revoked_at is not None
            or self.grant.revoked_at is not None
            or (self.kind == REFRESH and self.used_at is not None)
        )

    def get_user(self) -> Grant:
        return self.grant

    def get_client(self) -> Any:  # pragma: no cover - authlib's optional hook
        return None

    @property
    def active(self) -> bool:
        return not self.is_expired() and not self.is_revoked()

    def claims(self) -> Claims:
        g = self.grant
        return Claims(
            client_id=self.client_id,
            scopes=parse(self.scope),
            subject=g.subject,
            role=g.role,
            fhir_user=g.fhir_user,
            patient=g.context.get("patient"),
            encounter=g.context.get("encounter"),
            expires_at=self.expires_at,
            grant_id=g.grant_id,
        )


def _grant_from(row: Any) -> Grant:
    return Grant(
        grant_id=row.grant_id,
        client_id=row.g_client_id if hasattr(row, "g_client_id") else row.client_id,
        subject=row.subject,
        role=row.role,
        fhir_user=row.fhir_user,
        scope=row.g_scope if hasattr(row, "g_scope") else row.scope,
        context=orjson.loads(row.context),
        created_at=row.created_at,
        refresh_expires_at=row.refresh_expires_at,
        revoked_at=row.g_revoked_at if hasattr(row, "g_revoked_at") else row.revoked_at,
    )


_GRANT_COLUMNS = (
    auth_grant.c.grant_id,
    auth_grant.c.client_id.label("g_client_id"),
    auth_grant.c.subject,
    auth_grant.c.role,
    auth_grant.c.fhir_user,
    auth_grant.c.scope.label("g_scope"),
    auth_grant.c.context,
    auth_grant.c.created_at,
    auth_grant.c.refresh_expires_at,
    auth_grant.c.revoked_at.label("g_revoked_at"),
)


class TokenStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._purged_at = 0.0
        # token digest -> (claims, monotonic time cached); see CLAIMS_CACHE_SECONDS
        self._claims: dict[str, tuple[Claims, float]] = {}

    def forget_claims(self) -> None:
        """Drop every cached token: called by each revocation this process makes."""
        self._claims = {}

    # -- grants and codes -------------------------------------------------------------

    def issue_code(
        self,
        *,
        code: str,
        client_id: str,
        redirect_uri: str,
        scope: str,
        subject: str | None,
        role: str | None,
        fhir_user: str | None,
        context: dict[str, Any],
        code_challenge: str,
        nonce: str | None,
        auth_time: int,
        ttl: int,
        conn: Any = None,
    ) -> str:
        """Create the grant and store its authorization code (hashed); returns the grant id."""
        now = int(time.time())
        grant_id = new_secret(16)

        def write(c: Any) -> None:
            c.execute(
                insert(auth_grant).values(
                    grant_id=grant_id,
                    client_id=client_id,
                    subject=subject,
                    role=role,
                    fhir_user=fhir_user,
                    scope=scope,
                    context=orjson.dumps(context).decode(),
                    created_at=now,
                    refresh_expires_at=None,
                    revoked_at=None,
                )
            )
            c.execute(
                insert(auth_code).values(
                    code_hash=digest(code),
                    grant_id=grant_id,
                    client_id=client_id,
                    redirect_uri=redirect_uri,
                    scope=scope,
                    code_challenge=code_challenge,
                    nonce=nonce,
                    auth_time=auth_time,
                    expires_at=now + ttl,
                    used_at=None,
                )
            )

        if conn is not None:
            write(conn)
        else:
            with self.db.writer.begin() as c:
                write(c)
        return grant_id

    def find_code(self, code: str, client_id: str) -> AuthorizationCode | None:
        """The code if it was issued to ``client_id`` (used or not, expired or not)."""
        c = auth_code
        stmt = (
            select(
                c.c.code_hash,
                c.c.client_id,
                c.c.redirect_uri,
                c.c.scope,
                c.c.code_challenge,
                c.c.nonce,
                c.c.auth_time,
                c.c.expires_at,
                c.c.used_at,
                *_GRANT_COLUMNS,
            )
            .join(auth_grant, auth_grant.c.grant_id == c.c.grant_id)
            .where(c.c.code_hash == digest(code), c.c.client_id == client_id)
        )
        with self.db.reader.connect() as conn:
            row = conn.execute(stmt).first()
        if row is None:
            return None
        return AuthorizationCode(
            code_hash=row.code_hash,
            grant=_grant_from(row),
            client_id=row.client_id,
            redirect_uri=row.redirect_uri,
            scope=row.scope,
            code_challenge=row.code_challenge,
            nonce=row.nonce,
            auth_time=row.auth_time,
            expires_at=row.expires_at,
            used_at=row.used_at,
        )

    def claim_code(self, code: AuthorizationCode, now: int | None = None) -> bool:
        """Mark the code used; False if it already was (then its grant is revoked)."""
        now = int(time.time()) if now is None else now
        with self.db.writer.begin() as conn:
            result = conn.execute(
                update(auth_code)
                .where(auth_code.c.code_hash == code.code_hash, auth_code.c.used_at.is_(None))
                .values(used_at=now)
            )
            if result.rowcount == 1:
                return True
            _revoke_grant(conn, code.grant.grant_id, now)
        self.forget_claims()
        return False

    # -- tokens ------------------------------------------------------------------------

    def create_grant(
        self,
        *,
        client_id: str,
        scope: str,
        subject: str | None = None,
        role: str | None = None,
        fhir_user: str | None = None,
        context: dict[str, Any] | None = None,
    ) -> str:
        grant_id = new_secret(16)
        with self.db.writer.begin() as conn:
            conn.execute(
                insert(auth_grant).values(
                    grant_id=grant_id,
                    client_id=client_id,
                    subject=subject,
                    role=role,
                    fhir_user=fhir_user,
                    scope=scope,
                    context=orjson.dumps(context or {}).decode(),
                    created_at=int(time.time()),
                    refresh_expires_at=None,
                    revoked_at=None,
                )
            )
        return grant_id

    def save(
        self,
        *,
        grant_id: str,
        client_id: str,
        access_token: str,
        scope: str,
        expires_in: int,
        refresh_token: str | None = None,
        refresh_ttl: int | None = None,
    ) -> None:
        """Store an access token, and a refresh token if one was issued. A grant's refresh
        tokens all end at the deadline set when its first one was issued."""
        now = int(time.time())
        if time.monotonic() - self._purged_at > _PURGE_EVERY:
            self._purged_at = time.monotonic()
            self.purge_expired(now)
        with self.db.writer.begin() as conn:
            conn.execute(
                insert(auth_token).values(
                    token_hash=digest(access_token),
                    kind=ACCESS,
                    grant_id=grant_id,
                    client_id=client_id,
                    scope=scope,
                    issued_at=now,
                    expires_at=now + expires_in,
                    used_at=None,
                    revoked_at=None,
                )
            )
            if refresh_token is None:
                return
            deadline = conn.execute(
                select(auth_grant.c.refresh_expires_at).where(auth_grant.c.grant_id == grant_id)
            ).scalar()
            if deadline is None:
                deadline = now + (refresh_ttl or 0)
                conn.execute(
                    update(auth_grant)
                    .where(auth_grant.c.grant_id == grant_id)
                    .values(refresh_expires_at=deadline)
                )
            conn.execute(
                insert(auth_token).values(
                    token_hash=digest(refresh_token),
                    kind=REFRESH,
                    grant_id=grant_id,
                    client_id=client_id,
                    scope=scope,
                    issued_at=now,
                    expires_at=deadline,
                    used_at=None,
                    revoked_at=None,
                )
            )

    def find(self, token: str, kind: str | None = None) -> Token | None:
        if not token or not isinstance(token, str) or len(token) > 512:
            return None
        t = auth_token
        conditions = [t.c.token_hash == digest(token)]
        if kind is not None:
            conditions.append(t.c.kind == kind)
        stmt = (
            select(
                t.c.token_hash,
                t.c.kind,
                t.c.client_id,
                t.c.scope,
                t.c.issued_at,
                t.c.expires_at,
                t.c.used_at,
                t.c.revoked_at,
                *_GRANT_COLUMNS,
            )
            .join(auth_grant, auth_grant.c.grant_id == t.c.grant_id)
            .where(*conditions)
        )
        with self.db.reader.connect() as conn:
            row = conn.execute(stmt).first()
        if row is None:
            return None
        return Token(
            token_hash=row.token_hash,
            kind=row.kind,
            grant=_grant_from(row),
            client_id=row.client_id,
            scope=row.scope,
            issued_at=row.issued_at,
            expires_at=row.expires_at,
            used_at=row.used_at,
            revoked_at=row.revoked_at,
        )

    def claims(self, access_token: str) -> Claims | None:
        """The claims of an active access token, or None: what the FHIR API checks.

        Answered from a bounded cache for up to CLAIMS_CACHE_SECONDS; expiry is checked on
        every call, revocations in this process clear the cache (forget_claims)."""
        if not access_token or not isinstance(access_token, str) or len(access_token) > 512:
            return None
        key = digest(access_token)
        now = time.monotonic()
        cached = self._claims.get(key)
        if cached is not None and now - cached[1] < CLAIMS_CACHE_SECONDS:
            claims = cached[0]
            return claims if claims.expires_at > time.time() else None
        token = self.find(access_token, ACCESS)
        if token is None or not token.active:
            self._claims.pop(key, None)
            return None
        claims = token.claims()
        if len(self._claims) >= CLAIMS_CACHE_SIZE:
            self._claims = {}  # bounded: start over rather than track ages
        self._claims[key] = (claims, now)
        return claims

    def claim_refresh(self, token: Token, now: int | None = None) -> bool:
        """Rotate: mark the refresh token used. False if it already was, which means it
        was stolen or replayed, so the whole grant is revoked (RFC 9700 4.14.2)."""
        now = int(time.time()) if now is None else now
        with self.db.writer.begin() as conn:
            result = conn.execute(
                update(auth_token)
                .where(auth_token.c.token_hash == token.token_hash, auth_token.c.used_at.is_(None))
                .values(used_at=now)
            )
            if result.rowcount == 1:
                return True
            _revoke_grant(conn, token.grant.grant_id, now)
        self.forget_claims()
        return False

    def revoke_grant(self, grant_id: str, now: int | None = None) -> None:
        with self.db.writer.begin() as conn:
            _revoke_grant(conn, grant_id, int(time.time()) if now is None else now)
        self.forget_claims()

    def revoke_subject(self, subject: str) -> int:
        """End every grant a person holds (account disabled, consent withdrawn)."""
        now = int(time.time())
        with self.db.writer.begin() as conn:
            result = conn.execute(
                update(auth_grant)
                .where(auth_grant.c.subject == subject, auth_grant.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
        self.forget_claims()
        return int(result.rowcount)

    def revoke_consented_access(self, fhir_user: str, patient_id: str) -> int:
        """End the grants through which a practitioner (``fhir_user``) reached a patient
        whose consent they have lost (SEC-02: "Revoking consent revokes tokens"): every
        grant with a ``user/`` scope -- consent decides what those reach, and a grant
        cannot be narrowed to leave one patient out -- and every grant launched for that
        patient. Their other grants (another patient's ``patient/`` launch) stay. Not
        :meth:`revoke_subject`: that ends the account's every grant, and a clinician
        acting for several patients should not lose them all to one withdrawal."""
        now = int(time.time())
        with self.db.writer.begin() as conn:
            rows = conn.execute(
                select(auth_grant.c.grant_id, auth_grant.c.scope, auth_grant.c.context).where(
                    auth_grant.c.fhir_user == fhir_user,
                    auth_grant.c.role == PRACTITIONER,
                    auth_grant.c.revoked_at.is_(None),
                )
            ).all()
            ended = [
                row.grant_id
                for row in rows
                if any(s.context == "user" for s in parse(row.scope).resources)
                or orjson.loads(row.context).get("patient") == patient_id
            ]
            for grant_id in ended:
                _revoke_grant(conn, grant_id, now)
        if ended:
            self.forget_claims()
        return len(ended)

    def purge_expired(self, now: int | None = None) -> None:
        """Forget codes and tokens that can never be used again."""
        now = int(time.time()) if now is None else now
        horizon = now - 24 * 3600  # keep a day, so replays are still recognised
        with self.db.writer.begin() as conn:
            conn.execute(delete(auth_launch).where(auth_launch.c.expires_at < horizon))
            conn.execute(delete(auth_code).where(auth_code.c.expires_at < horizon))
            conn.execute(delete(auth_token).where(auth_token.c.expires_at < horizon))
            live = select(auth_token.c.grant_id)
            conn.execute(
                delete(auth_grant).where(
                    and_(
                        auth_grant.c.created_at < horizon,
                        auth_grant.c.grant_id.not_in(live),
                        auth_grant.c.grant_id.not_in(select(auth_code.c.grant_id)),
                    )
                )
            )


def _revoke_grant(conn: Any, grant_id: str, now: int) -> None:
    conn.execute(
        update(auth_grant)
        .where(auth_grant.c.grant_id == grant_id, auth_grant.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    conn.execute(
        update(auth_token)
        .where(auth_token.c.grant_id == grant_id, auth_token.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
