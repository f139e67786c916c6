"""Deterministic identity: the decision key, resource ids and the per-week random seed.

The key is a hash of the canonical snapshot, ``as_of`` and every version that shaped the
decision, so re-running the same input yields byte-identical resources (idempotency key).
"""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from dataclasses import asdict
from datetime import date

from plan_engine.decision import Versions
from plan_engine.snapshot import PatientSnapshot, to_plain

ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "http://selfback.example.org/fhir/plan-engine")


def canonical_snapshot(snapshot: PatientSnapshot) -> str:
    return json.dumps(to_plain(snapshot), sort_keys=True, separators=(",", ":"))


def decision_key(snapshot: PatientSnapshot, as_of: date, versions: Versions) -> str:
    payload = json.dumps(
        {
            "snapshot": to_plain(snapshot),
            "as_of": as_of.isoformat(),
            "versions": asdict(versions),
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return str(uuid.uuid5(ID_NAMESPACE, hashlib.sha256(payload.encode()).hexdigest()))


def resource_id(key: str, kind: str, index: int = 0) -> str:
    return str(uuid.uuid5(ID_NAMESPACE, f"{key}/{kind}/{index}"))


def weekly_rng(patient_id: str, as_of: date) -> random.Random:
    """Seeded from patient id and ISO week: the same choices on every re-run of that week."""
    year, week, _ = as_of.isocalendar()
    digest = hashlib.sha256(f"{patient_id}|{year}-W{week:02d}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))
