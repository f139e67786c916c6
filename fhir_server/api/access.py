"""Enforcing the access decision on /fhir: bearer token -> Claims -> decide -> HTTP answer.

Every FHIR route calls :func:`authenticate` first and then asks the :class:`Gate` it gets
about the interaction; the decision itself is the pure ``fhir_server.access.decision.decide``
(ARCHITECTURE.md "Access control"). What the routes get back:

- no token: 401 with ``WWW-Authenticate: Bearer realm="<base>"``; an unknown, expired or
  revoked token: the same with ``error="invalid_token"`` (RFC 6750 section 3, SAL-81);
- no granted scope covers the interaction: 403 with ``error="insufficient_scope"``;
- a resource the token may not see: 404, the same OperationOutcome a missing one gets,
  so nothing leaks about its existence;
- a search: a :class:`~fhir_server.search.restriction.SearchAccess` the search room adds
  to the query's SQL; a history: a per-version admission test;
- writes: a :class:`~fhir_server.interactions.access.InteractionAccess` the rooms consult
  (conditional criteria, the target, the new content).

Every decision -- allowed or refused, 401s included -- is reported to the audit trail as
an :class:`~fhir_server.audit.records.AccessRecord` (``state.audit.record``).

``--auth none`` (Settings.auth = "none"): every request acts as an admin with
``system/*.cruds``; the same decisions run, so behaviour differs only in who is asking.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import orjson
from starlette.requests import Request

from fhir_server.access.claims import ADMIN, PRACTITIONER, Claims
from fhir_server.access.compartment import PATIENT_COMPARTMENT
from fhir_server.access.consent import (
    ConsentGrants,
    withdraws,
)
from fhir_server.access.decision import (
    Allow,
    Decision,
    Deny,
    Filter,
    compartment_patients,
    confined,
    creates_at_chosen_id,
    decide,
    precheck,
)
from fhir_server.access.decision import Consent as ConsentPolicy
from fhir_server.access.lookups import lookup_consents, withdrawn_practitioners
from fhir_server.access.scopes import parse as parse_scopes
from fhir_server.access.write_authority import refusal as write_refusal
from fhir_server.api import refusals
from fhir_server.audit.records import AccessRecord
from fhir_server.client_address import client_address
from fhir_server.definitions import R4_RESOURCE_TYPES
from fhir_server.errors import FhirError, Issue, not_found
from fhir_server.search.query import SearchQuery
from fhir_server.search.registry import Registry
from fhir_server.search.restriction import SearchAccess, TypeConditions, permitted, restrict
from fhir_server.server_state import ServerState
from fhir_server.storage.repository import StoredResource
from fhir_server.versioning import now_us

ALL_TYPES = frozenset(R4_RESOURCE_TYPES)
# --auth none: every request is an admin with every permission (docs/AUTH.md).
NO_AUTH_CLAIMS = Claims(
    client_id="auth-none",
    scopes=parse_scopes("system/*.cruds"),
    subject="auth-none",
    role=ADMIN,
)
LOOPBACK_PEERS = frozenset({"127.0.0.1", "::1", "localhost", "::ffff:127.0.0.1"})


class StoredView(Mapping[str, Any]):
    """A stored resource as the Mapping ``decide`` takes, parsed only when a rule looks
    inside it: a read by id with a system/ scope never parses the body."""

    __slots__ = ("_stored", "_parsed")

    def __init__(self, stored: StoredResource) -> None:
        self._stored = stored
        self._parsed: dict[str, Any] | None = None

    @property
    def parsed(self) -> bool:
        return self._parsed is not None

    def _body(self) -> dict[str, Any]:
        if self._parsed is None:
            self._parsed = orjson.loads(self._stored.body) if self._stored.body else {}
        return self._parsed

    def __getitem__(self, key: str) -> Any:
        if key == "resourceType":
            return self._stored.rtype
        if key == "id":
            return self._stored.id
        return self._body()[key]

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __iter__(self) -> Iterator[str]:
        return iter(self._body())

    def __len__(self) -> int:
        return len(self._body())


def realm(request: Request, state: ServerState) -> str:
    configured = state.settings.base_url
    return configured.rstrip("/") if configured else str(request.base_url).rstrip("/") + "/fhir"


def authenticate(request: Request, action: str, rtype: str | None = None) -> Gate:
    """The request's :class:`Gate`, or a 401 (RFC 6750 section 3): no token, or a token
    that is unknown, expired or revoked. The token's ``aud`` was checked when it was
    issued (grants.py, SAL-12): every token in this server's store is for this server."""
    state: ServerState = request.app.state.fhir
    settings = state.settings
    # The client behind a trusted reverse proxy, else the socket peer (docs/AUTH.md).
    ip = client_address(
        request.client.host if request.client else None,
        request.headers.getlist(settings.forwarded_header),
        settings.trusted_proxies,
        settings.forwarded_header,
    )
    if state.settings.auth == "none":
        # --auth none is for experiments on one's own machine: the CLI binds loopback
        # only, and a request from anywhere else (a proxy, a port mapping) is refused.
        if ip is not None and ip not in LOOPBACK_PEERS:
            reason = "This server runs without authorization and answers loopback only"
            _record(state, action, 403, None, ip, rtype, reason)
            raise FhirError(403, [Issue("forbidden", reason)])
        return Gate(state, NO_AUTH_CLAIMS, ip)
    header = request.headers.get("authorization")
    scheme, _, token = (header or "").partition(" ")
    token = token.strip()
    if not header or scheme.lower() != "bearer" or not token:
        reason = "This request needs an access token (Authorization: Bearer ...)"
        challenge = f'Bearer realm="{realm(request, state)}"'
        if header:
            challenge += ', error="invalid_request"'
        _record(state, action, 401, None, ip, rtype, reason)
        raise FhirError(401, [Issue("login", reason)], {"WWW-Authenticate": challenge})
    claims = request.app.state.auth.claims(token)
    if claims is None:
        reason = "The access token is unknown, expired or revoked"
        _record(state, action, 401, None, ip, rtype, reason)
        raise FhirError(
            401,
            [Issue("login", reason)],
            {
                "WWW-Authenticate": f'Bearer realm="{realm(request, state)}"'
                + f', error="invalid_token", error_description="{reason}"'
            },
        )
    return Gate(state, claims, ip, request=request)


def _record(
    state: ServerState,
    action: str,
    outcome: int,
    claims: Claims | None,
    ip: str | None,
    rtype: str | None = None,
    reason: str = "",
    **fields: Any,
) -> None:
    # -- hardening: a 401/403 past the address's limit is answered 429 instead, and
    # recorded as such (fhir_server/api/refusals.py; the trail coalesces refusals,
    # fhir_server/audit/coalesce.py) --
    throttled = refusals.throttled(state, outcome, ip)
    if throttled is not None:
        _record(state, action, 429, claims, ip, rtype, throttled.issues[0].diagnostics, **fields)
        raise throttled
    # -- end hardening --
    audit = getattr(state, "audit", None)
    if audit is None:
        return  # a ServerState built without a trail (tests of the rooms alone)
    audit.record(
        AccessRecord(
            action=action,
            outcome=outcome,
            at_us=now_us(),
            claims=claims,
            client_id=claims.client_id if claims else None,
            resource_type=rtype,
            client_ip=ip,
            reason=reason,
            **fields,
        )
    )


# Entities per AuditEvent of a batch or transaction; a bigger Bundle gets several events.
ENTITIES_PER_EVENT = 100


class Gate:
    """One request's caller and the decisions made for it."""

    def __init__(
        self,
        state: ServerState,
        claims: Claims,
        client_ip: str | None,
        request: Request | None = None,
    ) -> None:
        self.state = state
        self.claims = claims
        self.client_ip = client_ip
        self._request = request  # for the realm of a 403's challenge, built only then
        self._consent: ConsentPolicy | None = None
        self._readable: dict[str, Decision] = {}
        # Consents written by this request: (patient, id, the version before or None).
        self._consents_written: list[tuple[str, str, Mapping[str, Any] | None]] = []
        # A batch's or transaction's writes, while collected for its one AuditEvent:
        # ((type, id, version, interaction), patients) each; None when not collecting.
        self._writes: list[tuple[tuple[str, str, int, str], tuple[str, ...]]] | None = None

    # -- audit ----------------------------------------------------------------------------

    def record(
        self,
        action: str,
        outcome: int,
        rtype: str | None = None,
        reason: str = "",
        **fields: Any,
    ) -> None:
        if "patient_ids" not in fields and self.claims.patient:
            fields["patient_ids"] = (self.claims.patient,)
        _record(self.state, action, outcome, self.claims, self.client_ip, rtype, reason, **fields)

    def collect_writes(self) -> None:
        """From now on, successful writes are kept for :meth:`record_writes` instead of
        being recorded one by one: a Bundle of 500 writes is one AuditEvent (in chunks
        of :data:`ENTITIES_PER_EVENT` entities), not 500, which is what keeps auditing
        from costing bulk loads more than the writes themselves (docs/AUTH.md, "Audit").
        Refusals are still recorded one by one, as they happen."""
        self._writes = []

    def record_writes(self, action: str, outcome: int, reason: str = "") -> None:
        """The Bundle's record(s): its writes as entities, or none when it failed (a
        failed transaction wrote nothing; a Bundle refused whole wrote nothing either)."""
        writes, self._writes = self._writes or [], None
        if outcome >= 400 or not writes:
            self.record(action, outcome, None, reason)
            return
        for start in range(0, len(writes), ENTITIES_PER_EVENT):
            chunk = writes[start : start + ENTITIES_PER_EVENT]
            patients = dict.fromkeys(p for _, named in chunk for p in named)
            self.record(
                action,
                outcome,
                None,
                reason,
                entities=tuple(entity for entity, _ in chunk),
                patient_ids=tuple(patients),
            )

    # -- errors ------------------------------------------------------------------------------

    def forbidden(self, reason: str) -> FhirError:
        # RFC 6750 section 3.1: insufficient_scope, with the 403 and an OperationOutcome.
        base = realm(self._request, self.state) if self._request is not None else ""
        challenge = f'Bearer realm="{base}", error="insufficient_scope"'
        return FhirError(403, [Issue("forbidden", reason)], {"WWW-Authenticate": challenge})

    def refuse(self, deny: Deny, missing: FhirError) -> FhirError:
        """403 as such; 404 exactly as for a missing resource (``missing``)."""
        return missing if deny.status == 404 else self.forbidden(deny.reason)

    # -- the decision ----------------------------------------------------------------------

    @property
    def consent(self) -> ConsentPolicy:
        """The clinician's Consents, looked up once per request (so a withdrawal counts
        from the next request on). Every practitioner token needs it, whatever the
        context of its scopes: ``user/`` scopes, ``patient/`` scopes after picking a
        patient, or an EHR launch's patient (issue 10 item 2)."""
        if self._consent is None:
            user = self.claims.fhir_user
            self._consent = (
                lookup_consents(self.state.repository, self.state.settings, user)
                if self._needs_consent() and user
                else ConsentGrants("")
            )
        return self._consent

    def decide(
        self,
        interaction: str,
        rtype: str | None,
        resource_or_query: Any = None,
        previous: Mapping[str, Any] | None = None,
    ) -> Decision:
        return decide(
            self.claims,
            interaction,
            rtype,
            resource_or_query,
            previous=previous,
            consent=self.consent if self._needs_consent() else None,
            all_types=ALL_TYPES,
        )

    def _needs_consent(self) -> bool:
        return self.claims.role == PRACTITIONER

    def covers(self, interaction: str, rtype: str) -> bool:
        """Whether some resource of ``rtype`` may get ``interaction`` (no record)."""
        return precheck(self.claims, interaction, rtype) is None

    def precheck(self, interaction: str, rtype: str, *, audit_action: str | None = None) -> None:
        deny = precheck(self.claims, interaction, rtype)
        if deny is not None:
            self.record(audit_action or interaction, 403, rtype, deny.reason)
            raise self.forbidden(deny.reason)

    @property
    def may_explain(self) -> bool:
        """``_explain`` shows SQL and plans: admins and system/ clients that may write."""
        return self.claims.role == ADMIN or any(
            s.context == "system" and s.resource_type == "*" and {"c", "u", "d"} & s.permissions
            for s in self.claims.scopes.resources
        )

    @property
    def may_administer(self) -> bool:
        """$reindex and other system-wide changes: as for ``_explain``."""
        return self.may_explain

    # -- one resource ------------------------------------------------------------------------

    def admit(
        self,
        interaction: str,
        stored: StoredResource,
        missing: FhirError,
        *,
        record: bool = True,
    ) -> None:
        """Raise unless the token may ``interaction`` the stored version ``stored``."""
        view = StoredView(stored)
        decision = self.decide(interaction, stored.rtype, view)
        if isinstance(decision, Deny):
            if record:
                self.record(
                    interaction,
                    decision.status,
                    stored.rtype,
                    decision.reason,
                    resource_id=stored.id,
                )
            raise self.refuse(decision, missing)
        if record:
            self.record(
                interaction,
                200,
                stored.rtype,
                resource_id=stored.id,
                version=stored.version,
                patient_ids=self.patients_of(stored.rtype, stored.id, view),
            )

    def patients_of(self, rtype: str, id: str, view: Mapping[str, Any] | None) -> tuple[str, ...]:
        """The patients a resource concerns, as far as known without extra work: the
        launch patient, the Patient itself, or the compartment when the body was parsed."""
        if self.claims.patient:
            return (self.claims.patient,)
        if rtype == "Patient":
            return (id,)
        if rtype in PATIENT_COMPARTMENT and view is not None:
            if isinstance(view, StoredView) and not view.parsed:
                return ()
            return tuple(sorted(compartment_patients(view)))
        return ()

    def visible_deleted(
        self, stored: StoredResource, before: StoredResource | None, interaction: str = "read"
    ) -> bool:
        """A deleted resource has no body to decide on: decide ``interaction`` on the
        version before the deletion, so a 410 (or a re-creation) is answered only to a
        token that could have seen what was deleted."""
        if before is None or before.deleted:
            return isinstance(self.decide("history-type", stored.rtype), Allow)
        return not isinstance(self.decide(interaction, stored.rtype, StoredView(before)), Deny)

    def precheck_put(self, rtype: str, *, chosen_id: bool) -> None:
        """A PUT updates or, onto nothing, creates: refused up front (403, whatever the
        id) when neither can ever happen. With a client-chosen id (``chosen_id``) the
        create counts only where update-as-create is allowed at all: a token that could
        only create would otherwise get 403 for a hidden resource and 404 for a free id."""
        if self.covers("update", rtype):
            return
        if self.covers("create", rtype) and (
            not chosen_id or creates_at_chosen_id(self.claims, rtype)
        ):
            return
        self.precheck("update", rtype)  # not covered: raises the 403

    # -- searches and histories ---------------------------------------------------------------

    def readable(self, rtype: str | None) -> Decision:
        """What the token may read of ``rtype`` (None: of every type) -- the restriction
        for includes, chains, ``_has`` and conditional criteria (``r``)."""
        key = rtype or "*"
        if key not in self._readable:
            interaction = "history-system" if rtype is None else "history-type"
            self._readable[key] = self.decide(interaction, rtype)
        return self._readable[key]

    def search_access(
        self, interaction: str, rtype: str | None, params: list[tuple[str, str]]
    ) -> SearchAccess | None:
        """The restriction for a search (None: unrestricted), or a 403."""
        decision = self.decide(interaction, rtype, params)
        if isinstance(decision, Deny):
            self.record(interaction, 403, rtype, decision.reason, query=_query_text(params))
            raise self.forbidden(decision.reason)
        matches = _conditions(decision)
        readable: TypeConditions | None = None
        if _reaches_beyond(params):
            readable = _conditions(self.readable(None), empty_when_denied=True)
        if matches is None and readable is None:
            return None
        return SearchAccess(matches=matches, readable=readable)

    def history_admission(self, interaction: str, rtype: str | None) -> Any:
        """None (every version), or a test per version, or a 403."""
        decision = self.decide(interaction, rtype)
        if isinstance(decision, Deny):
            self.record(interaction, 403, rtype, decision.reason)
            raise self.forbidden(decision.reason)
        if isinstance(decision, Allow):
            return None

        repo = self.state.repository

        def admit(stored: StoredResource) -> bool:
            if isinstance(decision, Filter) and not decision.alternatives(stored.rtype):
                return False
            if stored.deleted:
                # No body to decide on: shown to a token that could read the version the
                # deletion ended, as a read of the deletion answers 410 only to it.
                before = repo.vread(stored.rtype, stored.id, stored.version - 1)
                return before is not None and self.visible_deleted(stored, before)
            return not isinstance(self.decide("read", stored.rtype, StoredView(stored)), Deny)

        return admit

    # -- writes (fhir_server.interactions.access) ----------------------------------------------

    def restrict(
        self, rtype: str, query: SearchQuery, *, reg: Registry, now_us: int
    ) -> SearchQuery:
        conditions = _conditions(self.readable(rtype), empty_when_denied=True)
        readable = _conditions(self.readable(None), empty_when_denied=True)
        if conditions is None and readable is None:
            return query

        def node(c: TypeConditions | None) -> Any:
            return None if c is None else permitted(c, reg=reg, now_us=now_us, base_url=None)

        return restrict(query, node(conditions), node(readable))

    def target(self, interaction: str, current: StoredResource) -> bool:
        decision = self.decide(interaction, current.rtype, StoredView(current))
        if isinstance(decision, Deny):
            if decision.status == 404:
                self.record(
                    interaction, 404, current.rtype, decision.reason, resource_id=current.id
                )
                return False
            self.record(interaction, 403, current.rtype, decision.reason, resource_id=current.id)
            raise self.forbidden(decision.reason)
        return True

    def write(
        self,
        interaction: str,
        rtype: str,
        resource: dict[str, Any] | None,
        previous: StoredResource | None,
        id: str,
        version: int,
    ) -> None:
        before = orjson.loads(previous.body) if previous is not None and previous.body else None
        subject = resource if resource is not None else before
        decision = self.decide(interaction, rtype, subject, previous=before)
        if isinstance(decision, Deny):
            # The token sees what it writes (or it would not have got here): a refusal of
            # the new content is a 403, never a 404.
            self.record(interaction, 403, rtype, decision.reason, resource_id=id)
            raise self.forbidden(decision.reason)
        # Who may author what (fhir_server.access.write_authority), once the scopes and
        # the patient's Consent allowed the write.
        refused = write_refusal(
            self.claims,
            interaction,
            rtype,
            {**resource, "id": id} if resource is not None else None,
            before,
        )
        if refused:
            self.record(interaction, 403, rtype, refused, resource_id=id)
            raise self.forbidden(refused)
        patients = compartment_patients({**subject, "id": id}) if subject else frozenset()
        if before is not None:
            patients |= compartment_patients(before)
        if rtype == "Consent" and (
            resource is None or before is not None or withdraws(resource)
        ):
            # A deletion, a change, or a withdrawal from the start: tokens are checked
            # once the write has committed (settle).
            for patient in sorted(patients):
                self._consents_written.append((patient, id, before))
        named = tuple(sorted(patients)) or self.patients_of(rtype, id, None)
        if self._writes is not None:
            self._writes.append(((rtype, id, version, interaction), named))
            return
        self.record(
            interaction,
            201 if interaction == "create" else 200,
            rtype,
            resource_id=id,
            version=version,
            patient_ids=named,
        )

    def settle(self) -> None:
        """After the request's writes committed: revoke the tokens of practitioners whom
        a Consent written now no longer permits anything of its patient (SEC-02)."""
        written, self._consents_written = self._consents_written, []
        tokens = self._tokens()
        if not written or tokens is None:
            return
        by_patient: dict[str, dict[str, Mapping[str, Any] | None]] = {}
        for patient, id, before in written:
            by_patient.setdefault(patient, {}).setdefault(id, before)  # the first "before"
        for patient, changed in sorted(by_patient.items()):
            gone = withdrawn_practitioners(
                self.state.repository, self.state.settings, patient, changed
            )
            for practitioner, reason in gone:
                ended = tokens.revoke_consented_access(practitioner, patient)
                if ended:
                    self.record(
                        "revoke",
                        200,
                        "Consent",
                        f"{ended} grant(s) of {practitioner} ended: {reason}",
                        patient_ids=(patient,),
                    )

    def _tokens(self) -> Any:
        app = self._request.app if self._request is not None else None
        auth = getattr(app.state, "auth", None) if app is not None else None
        return auth.services.tokens if auth is not None else None

    def precheck_entry(self, interaction: str, rtype: str, chosen_id: bool = False) -> None:
        if interaction == "update":
            self.precheck_put(rtype, chosen_id=chosen_id)
        else:
            self.precheck(interaction, rtype)

    def create_at(self, rtype: str, id: str) -> bool:
        if creates_at_chosen_id(self.claims, rtype) or not confined(self.claims, rtype):
            return True  # nothing of the type is hidden from it: write() decides as a create
        reason = "update-as-create under a client-chosen id, refused as for a hidden id"
        self.record("update", 404, rtype, reason, resource_id=id)
        return False

    def read_deleted(
        self, interaction: str, current: StoredResource, before: StoredResource | None
    ) -> bool:
        decided = interaction if interaction in ("update", "patch", "vread") else "read"
        if self.visible_deleted(current, before, decided):
            return True
        self.record(interaction, 404, current.rtype, "deleted, not visible", resource_id=current.id)
        return False

    def read(self, interaction: str, stored: StoredResource) -> bool:
        try:
            self.admit(interaction, stored, not_found(""))
        except FhirError as exc:
            if exc.status == 404:
                return False
            raise
        return True


def _conditions(decision: Decision, *, empty_when_denied: bool = False) -> TypeConditions | None:
    if isinstance(decision, Allow):
        return None
    if isinstance(decision, Filter):
        return decision.by_type
    return {} if empty_when_denied else None


def _reaches_beyond(params: list[tuple[str, str]]) -> bool:
    """Whether a search reads other resources than its matches: chains, _has, includes."""
    for name, _ in params:
        if "." in name or name.startswith(("_has:", "_include", "_revinclude")):
            return True
    return False


def _query_text(params: list[tuple[str, str]]) -> str:
    return "&".join(f"{k}={v}" for k, v in params)[:2000]


def require(condition: bool, gate: Gate, action: str, rtype: str | None, reason: str) -> None:
    """A 403 (and its audit record) unless ``condition``."""
    if not condition:
        gate.record(action, 403, rtype, reason)
        raise gate.forbidden(reason)


__all__ = [
    "Gate",
    "NO_AUTH_CLAIMS",
    "StoredView",
    "authenticate",
    "require",
]
