"""What the audit trail is told: one record per access decision, sign-in or token event.

This is the interface between the places that decide (the FHIR routes, the authorization
server) and the trail that turns records into AuditEvent resources (IHE BALP style,
``fhir_server.audit``). Pure data; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from fhir_server.access.claims import Claims


@dataclass(frozen=True, slots=True)
class AccessRecord:
    """One thing that happened, as the decision point saw it.

    ``action``: the FHIR interaction (``read``, ``vread``, ``search-type``,
    ``search-system``, ``history-instance``, ``history-type``, ``history-system``,
    ``create``, ``update``, ``patch``, ``delete``, ``batch``, ``transaction``,
    ``operation``, ``capabilities``) or an authorization-server event (``login``,
    ``token``, ``introspect``, ``revoke``, ``launch``, ``activation-code``).
    ``outcome``: the HTTP status answered (2xx success, 4xx refusal).
    ``claims``: the token's facts; None when there was no valid token.
    ``patient_ids``: the patients whose data was touched or asked for, when known.
    ``operation``: the operation name without ``$`` when ``action == "operation"``.
    ``entities``: for ``batch`` and ``transaction``, what the Bundle wrote.
    """

    action: str
    outcome: int
    at_us: int
    claims: Claims | None = None
    client_id: str | None = None
    resource_type: str | None = None
    resource_id: str | None = None
    version: int | None = None
    patient_ids: tuple[str, ...] = ()
    query: str | None = None
    operation: str | None = None
    client_ip: str | None = None
    reason: str = ""
    # The resources a batch or transaction wrote: (type, id, version, interaction), one
    # entity each in the Bundle's one AuditEvent (see Gate.collect_writes).
    entities: tuple[tuple[str, str, int, str], ...] = ()
    # A summary of refusals coalesced in a window (fhir_server.audit.coalesce): how many
    # requests it stands for and the window, (start, end) in microseconds; 1 and None
    # for a record of one request.
    count: int = 1
    period_us: tuple[int, int] | None = None


class AuditSink(Protocol):
    """Where records go. ``record`` must be cheap and never raise into the request: the
    trail buffers and writes AuditEvents off the request path."""

    def record(self, record: AccessRecord) -> None: ...
