"""What one running server holds: settings, the repository, cached documents."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from fhir_server.audit import AuditProcess, AuditTrail, DisabledAudit
from fhir_server.audit.coalesce import CoalescingAudit
from fhir_server.config import Settings
from fhir_server.interactions.capabilities import capability_statement
from fhir_server.storage.repository import Repository

if TYPE_CHECKING:
    from fhir_server.api.refusals import RefusalLimiter
    from fhir_server.export.runner import ExportRunner


@dataclass
class ServerState:
    settings: Settings
    repository: Repository
    started: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    _capabilities: dict[str, bytes] = field(default_factory=dict)
    # Where access decisions, sign-ins and token events are recorded (fhir_server.audit);
    # ``record`` is cheap and never raises.
    audit: AuditTrail | AuditProcess | DisabledAudit | CoalescingAudit = field(
        default_factory=DisabledAudit
    )
    # Refusals limited per client address (fhir_server.api.refusals); None: unlimited.
    refusals: RefusalLimiter | None = None
    # The bulk export worker (fhir_server.export.runner), woken by a kick-off.
    exports: ExportRunner | None = None

    def capability_statement(self, base_url: str) -> bytes:
        if base_url not in self._capabilities:
            self._capabilities[base_url] = capability_statement(
                base_url, software_date=self.started
            )
        return self._capabilities[base_url]
