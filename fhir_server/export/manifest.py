"""The URLs of a job and its completion manifest (export.html#response---complete-status).
Pure code."""

from __future__ import annotations

from typing import Any

from fhir_server.export.jobs import ExportJob
from fhir_server.versioning import instant

STATUS_PATH = "$export-status"  # [base]/$export-status/{job id}
FILE_PATH = "$export-file"  # [base]/$export-file/{job id}/{file name}


def status_url(base_url: str, job_id: str) -> str:
    return f"{base_url.rstrip('/')}/{STATUS_PATH}/{job_id}"


def file_url(base_url: str, job_id: str, name: str) -> str:
    return f"{base_url.rstrip('/')}/{FILE_PATH}/{job_id}/{name}"


def manifest(job: ExportJob, base_url: str) -> dict[str, Any]:
    """The manifest: ``transactionTime``, the kick-off ``request``, ``requiresAccessToken``
    (always: files are served only to the client that asked, with its token), and one
    ``output`` entry per file (one type per file, absolute URL, count) and one ``error``
    entry per OperationOutcome file -- an empty list when nothing went wrong (BDS-14).
    The URLs are under ``base_url``, the server's as the status request reached it."""
    files = job.manifest or {}

    def entries(kind: str) -> list[dict[str, Any]]:
        return [
            {
                "type": f["type"],
                "url": file_url(base_url, job.job_id, f["file"]),
                "count": f["count"],
            }
            for f in files.get(kind) or []
        ]

    return {
        "transactionTime": instant(job.transaction_time),
        "request": job.request,
        "requiresAccessToken": True,
        "output": entries("output"),
        "error": entries("error"),
    }


def file_type(job: ExportJob, name: str) -> str | None:
    """The resource type of the job's file ``name``; None when the job has no such file."""
    files = job.manifest or {}
    for kind in ("output", "error"):
        for f in files.get(kind) or []:
            if f["file"] == name:
                return str(f["type"])
    return None


def file_folder(job: ExportJob) -> str:
    """The folder, inside the job's, of the worker that wrote the files."""
    return str((job.manifest or {}).get("folder", ""))
