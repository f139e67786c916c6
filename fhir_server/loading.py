"""Bulk loading for ``selfback load``: Bundles, NDJSON and single resources.

Everything goes through the same transaction room as the HTTP API, so a loaded file
obeys the same rules (validation, references, one transaction per Bundle or batch).
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from fhir_server.config import Settings
from fhir_server.errors import FhirError
from fhir_server.formats.fhir_json import parse_fhir_json
from fhir_server.interactions.transaction import BundleOptions, process_bundle
from fhir_server.storage.database import open_database, wal_checkpointer
from fhir_server.storage.migrate import upgrade
from fhir_server.storage.repository import Repository
from fhir_server.versioning import now_us


def load_files(
    settings: Settings, files: list[Path], *, batch_size: int, progress: bool
) -> dict[str, Any]:
    db = open_database(settings.database_url)
    upgrade(db)
    repo = Repository(db)
    base = settings.base_url or "http://localhost/fhir"
    report: dict[str, Any] = {"files": len(files), "resources": 0, "transactions": 0, "errors": []}
    bar = _progress_bar(progress)
    checkpointer = wal_checkpointer(db)
    if checkpointer is not None:
        checkpointer.start()
    try:
        for path in files:
            try:
                bundles = list(transactions_in(path, batch_size))
            except (OSError, ValueError) as exc:
                report["errors"].append({"file": str(path), "error": f"unreadable: {exc}"})
                continue
            for bundle in bundles:
                try:
                    options = BundleOptions(base_url=base, now=now_us(), return_minimal=True)
                    response = process_bundle(repo, bundle, options)
                    done = len(orjson.loads(response).get("entry", []))
                    report["resources"] += done
                    report["transactions"] += 1
                    if bar is not None:
                        bar.update(done)
                except FhirError as exc:
                    report["errors"].append({"file": str(path), "error": str(exc)})
    finally:
        if bar is not None:
            bar.close()
        if checkpointer is not None:
            checkpointer.stop()
        db.dispose()
    return report


def transactions_in(path: Path, batch_size: int) -> Iterator[dict[str, Any]]:
    """One transaction or batch Bundle for each unit of work in a file."""
    raw = _read(path)
    if path.name.endswith((".ndjson", ".ndjson.gz")):
        lines = [line for line in raw.splitlines() if line.strip()]
        for start in range(0, len(lines), batch_size):
            chunk = lines[start : start + batch_size]
            yield as_transaction([_resource(parse_fhir_json(line)) for line in chunk])
        return
    document = parse_fhir_json(raw)
    if not isinstance(document, dict):
        raise ValueError("not a FHIR resource (a JSON object with resourceType)")
    if document.get("resourceType") == "Bundle" and document.get("type") in (
        "transaction",
        "batch",
    ):
        yield document
    elif document.get("resourceType") == "Bundle":
        resources = [e["resource"] for e in document.get("entry", []) if "resource" in e]
        yield as_transaction(resources)
    else:
        yield as_transaction([document])


def as_transaction(resources: list[dict[str, Any]]) -> dict[str, Any]:
    """Resources with an id are PUT under it (loading is repeatable); others are POSTed."""
    entries = []
    for resource in resources:
        rtype = resource.get("resourceType", "")
        if resource.get("id"):
            request = {"method": "PUT", "url": f"{rtype}/{resource['id']}"}
        else:
            request = {"method": "POST", "url": rtype}
        entries.append({"resource": resource, "request": request})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _resource(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError("an NDJSON line is not a FHIR resource")
    return value


def _read(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else data


def _progress_bar(enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(unit="res", desc="loading")
