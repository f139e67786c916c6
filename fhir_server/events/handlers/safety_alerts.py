"""Safety alerts through the outbox (docs/ALERTS.md).

- ``Communication`` (resource-written): the engine's clinician Communication (status
  ``preparation``, about a DetectedIssue) gets its Task on the owner's worklist, the
  safety-alert tag and the facts to act on; a first ``alert-delivery`` event and, for an
  emergency, an ``alert-escalation`` event are queued -- all in one transaction, which the
  engine's own write reached through the resource-written event it committed with it.
- ``alert-delivery`` (version = attempt number): sends on the configured channels outside
  any transaction, then records the attempt on the Communication (``in-progress`` and the
  next attempt queued with capped exponential back-off; ``completed`` with ``sent``; or
  ``stopped`` with the reason once the alert is older than the retry max age).
- ``alert-escalation``: an emergency Task still ``requested`` (its owner has not accepted
  it) becomes an escalation Communication to the organisation, which takes the same path
  (Task owned by the Organization, webhook, SMS).

Every step is keyed so that running it again writes nothing new (events are handled at
least once): the Task id is derived from the Communication's, events are scheduled once per
key, and a Communication no longer in preparation is left alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from fhir_server.alerts.delivery import (
    AlertChannels,
    DeliveryError,
    backoff_seconds,
    sms_text,
    webhook_payload,
)
from fhir_server.alerts.task import (
    ALERT_SYSTEM,
    AlertFacts,
    alert_facts,
    build_task,
    is_engine_alert,
    phone_of,
    references,
    task_id_for,
    with_facts,
    with_safety_tag,
)
from fhir_server.events.outbox import OutboxEvent, schedule
from fhir_server.events.worker import SendingHandler
from fhir_server.interactions.update import update
from fhir_server.storage.repository import Repository, WriteSession

ALERT_DELIVERY = "alert-delivery"
ALERT_ESCALATION = "alert-escalation"
EXT_DELIVERY = "http://selfback.example.org/fhir/StructureDefinition/alert-delivery-attempt"
ESCALATION_SUFFIX = "-escalation"
FINAL = frozenset({"completed", "stopped", "not-done", "entered-in-error"})


@dataclass(frozen=True)
class AlertPolicy:
    channels: AlertChannels
    retry_base_seconds: float
    retry_cap_seconds: float
    retry_max_age_seconds: float
    escalation_seconds: float


def _iso(us: int) -> str:
    return (
        datetime.fromtimestamp(us / 1_000_000, UTC)
        .isoformat(timespec="seconds")
        .replace("+00:00", "Z")
    )


def _us(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1_000_000)


class _Reader:
    """session.read and repo.read answer the same shape; this reads JSON bodies by reference."""

    def __init__(self, source: WriteSession | Repository) -> None:
        self.source = source

    def get(self, reference: str) -> dict[str, Any] | None:
        if "/" not in reference:
            return None
        rtype, rid = reference.split("/", 1)
        if not rid or rid == "None":
            return None
        stored = self.source.read(rtype, rid)
        if stored is None or stored.deleted:
            return None
        return orjson.loads(stored.body)  # type: ignore[no-any-return]


def _owner(reader: _Reader, communication: dict[str, Any], patient: dict[str, Any] | None) -> str:
    """The responsible PractitionerRole the engine addressed, or the Organization when there
    is none (the role's, else the patient's managing organisation)."""
    recipients = references(communication, "recipient")
    for ref in recipients:
        if ref.startswith(("PractitionerRole/", "Organization/")) and reader.get(ref) is not None:
            return ref
    organisation = str(((patient or {}).get("managingOrganization") or {}).get("reference") or "")
    return organisation or (recipients[0] if recipients else "")


def _organisation_of(reader: _Reader, owner_ref: str, patient: dict[str, Any] | None) -> str:
    if owner_ref.startswith("Organization/"):
        return owner_ref
    role = reader.get(owner_ref) or {}
    org = str((role.get("organization") or {}).get("reference") or "")
    return org or str(((patient or {}).get("managingOrganization") or {}).get("reference") or "")


def _owner_phone(reader: _Reader, owner_ref: str) -> str:
    owner = reader.get(owner_ref)
    phone = phone_of(owner)
    if not phone and owner_ref.startswith("PractitionerRole/"):
        phone = phone_of(
            reader.get(str(((owner or {}).get("organization") or {}).get("reference") or ""))
        )
    return phone


def _facts(
    reader: _Reader, communication: dict[str, Any]
) -> tuple[AlertFacts, dict[str, Any] | None]:
    patient = reader.get(str((communication.get("subject") or {}).get("reference") or ""))
    issue_ref = next(
        (r for r in references(communication, "about") if r.startswith("DetectedIssue/")), ""
    )
    return alert_facts(communication, reader.get(issue_ref), patient), patient


def _without_server_meta(resource: dict[str, Any]) -> dict[str, Any]:
    meta = {
        k: v
        for k, v in (resource.get("meta") or {}).items()
        if k not in ("versionId", "lastUpdated")
    }
    return (
        {**resource, "meta": meta} if meta else {k: v for k, v in resource.items() if k != "meta"}
    )


def make_alert_handlers(policy: AlertPolicy) -> tuple[Any, dict[str, Any]]:
    """(the Communication resource-written handler, the topic handlers by topic)."""

    def on_communication(session: WriteSession, event: OutboxEvent, now: int) -> str | None:
        stored = session.current("Communication", event.res_id)
        if stored is None or stored.deleted:
            return None
        communication = orjson.loads(stored.body)
        if communication.get("status") != "preparation" or not is_engine_alert(communication):
            return None
        reader = _Reader(session)
        facts, patient = _facts(reader, communication)
        owner = _owner(reader, communication, patient)
        task_id = task_id_for(communication["id"])
        notes = []
        if session.current("Task", task_id) is None:
            task = build_task(communication, facts, owner, _iso(now))
            update(session, "Task", task_id, task, now=now)
            notes.append(f"Task/{task_id} for {owner}")
        # The engine's Communication carries the tag and the facts (added once).
        changed = with_facts(with_safety_tag(_without_server_meta(communication)), facts)
        if changed != _without_server_meta(communication):
            update(session, "Communication", communication["id"], changed, now=now)
        schedule(
            session.conn,
            topic=ALERT_DELIVERY,
            rtype="Communication",
            res_id=communication["id"],
            version=1,
            at=now,
            now=now,
        )
        escalates = (
            facts.urgency == "emergency"
            and owner.startswith("PractitionerRole/")
            and not communication["id"].endswith(ESCALATION_SUFFIX)
        )
        if escalates:
            schedule(
                session.conn,
                topic=ALERT_ESCALATION,
                rtype="Task",
                res_id=task_id,
                version=1,
                at=now + int(policy.escalation_seconds * 1_000_000),
                now=now,
            )
            notes.append("escalation queued")
        return "; ".join(["delivery queued", *notes])

    return on_communication, {
        ALERT_DELIVERY: AlertDelivery(policy),
        ALERT_ESCALATION: lambda s, e, n: escalate(s, e, n, policy),
    }


@dataclass(frozen=True)
class Attempt:
    channels: tuple[str, ...]  # what this alert is to be delivered on
    outcomes: tuple[tuple[str, bool, str], ...]  # (channel, delivered, detail) this attempt


def _delivered(communication: dict[str, Any]) -> set[str]:
    done = set()
    for ext in communication.get("extension") or []:
        if ext.get("url") != EXT_DELIVERY:
            continue
        parts = {
            p["url"]: next(v for k, v in p.items() if k.startswith("value"))
            for p in ext["extension"]
        }
        if parts.get("outcome") == "delivered":
            done.add(str(parts.get("channel")))
    return done


def _first_attempt_us(communication: dict[str, Any], now: int) -> int:
    for ext in communication.get("extension") or []:
        if ext.get("url") == EXT_DELIVERY:
            for p in ext["extension"]:
                if p["url"] == "at":
                    return _us(p["valueDateTime"])
    return now


class AlertDelivery(SendingHandler):
    def __init__(self, policy: AlertPolicy) -> None:
        self.policy = policy

    def send(self, repo: Repository, event: OutboxEvent, now: int) -> Attempt | None:
        reader = _Reader(repo)
        communication = reader.get(f"Communication/{event.res_id}")
        if communication is None or communication.get("status") in FINAL:
            return None
        facts, _ = _facts(reader, communication)
        task_id = task_id_for(communication["id"])
        task = reader.get(f"Task/{task_id}") or {}
        owner = str((task.get("owner") or {}).get("reference") or "")
        phone = _owner_phone(reader, owner)
        channels = self.policy.channels
        wanted = tuple(channels.names_for(facts.urgency, phone))
        outcomes = []
        for name in wanted:
            if name in _delivered(communication):
                continue
            try:
                if name == "webhook":
                    channels.post_webhook(
                        communication["id"], webhook_payload(communication, facts, task_id)
                    )
                else:
                    channels.send_sms(phone, sms_text(facts, task_id))
                outcomes.append(
                    (name, True, f"delivered to {phone if name == 'sms' else 'webhook'}")
                )
            except DeliveryError as exc:
                outcomes.append((name, False, str(exc)))
        return Attempt(wanted, tuple(outcomes))

    def record(
        self, session: WriteSession, event: OutboxEvent, attempt: Attempt | None, now: int
    ) -> str | None:
        if attempt is None:
            return "nothing to deliver"
        stored = session.current("Communication", event.res_id)
        if stored is None or stored.deleted:
            return "communication gone"
        communication = _without_server_meta(orjson.loads(stored.body))
        if communication.get("status") in FINAL:
            return f"already {communication['status']}"
        extensions = list(communication.get("extension") or [])
        for channel, ok, detail in attempt.outcomes:
            extensions.append(
                {
                    "url": EXT_DELIVERY,
                    "extension": [
                        {"url": "channel", "valueCode": channel},
                        {"url": "outcome", "valueCode": "delivered" if ok else "failed"},
                        {"url": "attempt", "valueInteger": event.version},
                        {"url": "at", "valueDateTime": _iso(now)},
                        {"url": "detail", "valueString": detail[:500]},
                    ],
                }
            )
        changed: dict[str, Any] = {**communication, "extension": extensions}
        if not extensions:
            changed.pop("extension")  # R4 json.html: no empty arrays
        changed.pop("statusReason", None)
        delivered = _delivered(changed)
        failed = [f"{c}: {d}" for c, ok, d in attempt.outcomes if not ok]
        if not attempt.channels:
            changed["status"] = "not-done"
            changed["statusReason"] = {
                "text": "No delivery channel configured for this alert "
                "(SELFBACK_ALERT_WEBHOOK_URL, SELFBACK_ALERT_SMS); it is on the worklist "
                f"as Task/{task_id_for(communication['id'])}"
            }
            note = "no channel"
        elif set(attempt.channels) <= delivered:
            changed["status"] = "completed"
            changed["sent"] = _iso(now)
            note = f"delivered ({', '.join(sorted(delivered))})"
        elif now - _first_attempt_us(changed, now) >= self.policy.retry_max_age_seconds * 1_000_000:
            changed["status"] = "stopped"
            changed["statusReason"] = {
                "text": f"Delivery given up after {event.version} attempts: {'; '.join(failed)}"
            }
            note = "given up"
        else:
            wait = backoff_seconds(
                event.version, self.policy.retry_base_seconds, self.policy.retry_cap_seconds
            )
            at = now + int(wait * 1_000_000)
            changed["status"] = "in-progress"
            changed["statusReason"] = {
                "text": f"Attempt {event.version} failed ({'; '.join(failed)}); "
                f"next attempt at {_iso(at)}"
            }
            schedule(
                session.conn,
                topic=ALERT_DELIVERY,
                rtype="Communication",
                res_id=event.res_id,
                version=event.version + 1,
                at=at,
                now=now,
            )
            note = f"attempt {event.version} failed; retry queued"
        update(session, "Communication", event.res_id, changed, now=now)
        if changed["status"] in FINAL:
            _record_on_task(session, communication["id"], changed, now)
        return note


def _record_on_task(
    session: WriteSession, communication_id: str, communication: dict[str, Any], now: int
) -> None:
    """The delivery outcome, visible on the worklist: a Task.output (added once)."""
    stored = session.current("Task", task_id_for(communication_id))
    if stored is None or stored.deleted:
        return
    task = _without_server_meta(orjson.loads(stored.body))
    text = f"Alert {communication['status']} at {_iso(now)}" + (
        f": {communication['statusReason']['text']}" if "statusReason" in communication else ""
    )
    output = [
        o
        for o in task.get("output") or []
        if o.get("type", {}).get("coding", [{}])[0].get("code") != "delivery"
    ]
    output.append(
        {"type": {"coding": [{"system": ALERT_SYSTEM, "code": "delivery"}]}, "valueString": text}
    )
    update(session, "Task", task["id"], {**task, "output": output}, now=now)


def escalate(
    session: WriteSession, event: OutboxEvent, now: int, policy: AlertPolicy
) -> str | None:
    stored = session.current("Task", event.res_id)
    if stored is None or stored.deleted:
        return "task gone"
    task = orjson.loads(stored.body)
    if task.get("status") != "requested":
        return f"task {task.get('status')}: not escalated"
    reader = _Reader(session)
    source_ref = str((task.get("reasonReference") or {}).get("reference") or "")
    communication = reader.get(source_ref)
    if communication is None:
        return "alert communication gone"
    patient = reader.get(str((task.get("for") or {}).get("reference") or ""))
    owner = str((task.get("owner") or {}).get("reference") or "")
    organisation = _organisation_of(reader, owner, patient)
    if not organisation:
        return "no organisation to escalate to"
    escalation_id = communication["id"] + ESCALATION_SUFFIX
    if session.current("Communication", escalation_id) is not None:
        return "escalated already"
    minutes = round(policy.escalation_seconds / 60, 1)
    body = {
        k: v
        for k, v in _without_server_meta(communication).items()
        if k not in ("extension", "statusReason", "sent")
    }
    body.update(
        id=escalation_id,
        status="preparation",
        recipient=[{"reference": organisation}],
        basedOn=[{"reference": f"Task/{task['id']}"}],
        payload=[
            {
                "contentString": f"ESCALATED: this emergency alert was not accepted by {owner} "
                f"within {minutes} minutes."
            },
            *(communication.get("payload") or []),
        ],
    )
    update(session, "Communication", escalation_id, with_safety_tag(body), now=now)
    return f"escalated to {organisation} as Communication/{escalation_id}"


__all__ = ["ALERT_DELIVERY", "ALERT_ESCALATION", "AlertPolicy", "make_alert_handlers"]
