"""The audit trail (issue 4, item 8): every access decision, sign-in and token event as
an IHE BALP-style AuditEvent, stored append-only beside the data. See docs/AUTH.md, "Audit".
"""

from fhir_server.audit.balp import ServerIdentity, audit_event
from fhir_server.audit.process import AuditProcess
from fhir_server.audit.records import AccessRecord, AuditSink
from fhir_server.audit.trail import AuditTrail, DisabledAudit, TrailStats

__all__ = [
    "AccessRecord",
    "AuditProcess",
    "AuditSink",
    "AuditTrail",
    "DisabledAudit",
    "ServerIdentity",
    "TrailStats",
    "audit_event",
]
