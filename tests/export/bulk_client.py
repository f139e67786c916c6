"""A Bulk Data client as Inferno's bulk-data test kit drives one (INF-K3..K7): kick off
with the required headers, poll the status URL honouring Retry-After, download the files
with the same token."""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson

from tests.auth.conftest import SmartEnv
from tests.auth.smart_app import bearer

# name -> scopes each backend client is registered with (conftest.py registers them)
BACKENDS = {
    "setup": "system/*.cruds",  # writes the fixtures
    "bulk": "system/*.read",  # Inferno's bulk client asks in v1 spelling (INF-K11)
    "other": "system/*.rs",  # another client: may not see the first one's jobs
    "narrow": "system/Patient.rs system/Observation.rs",
    "ehr": "system/*.rs __activation-code",  # onboards the patient of the patient-token test
}
KICK_OFF_HEADERS = {"Accept": "application/fhir+json", "Prefer": "respond-async"}
LEVELS = ("$export", "Patient/$export", "Group/{group}/$export")


def token(env: SmartEnv, name: str = "bulk") -> str:
    return env.cached_token(name, BACKENDS[name])


def kick_off(
    env: SmartEnv,
    path: str,
    access_token: str | None,
    params: Any = None,
    headers: dict[str, str | None] | None = None,
    **kwargs: Any,
) -> httpx.Response:
    """``headers`` replace the kick-off's own; a None value leaves that header out."""
    merged: dict[str, str | None] = {**KICK_OFF_HEADERS, **(headers or {})}
    sent = {k: v for k, v in merged.items() if v is not None}
    if access_token:
        sent.update(bearer(access_token))
    return httpx.request(
        kwargs.pop("method", "GET"),
        f"{env.fhir}/{path}",
        params=params,
        headers=sent,
        timeout=60,
        **kwargs,
    )


def started(env: SmartEnv, path: str, access_token: str, params: Any = None, **kw: Any) -> str:
    """Kick off; answers the status URL."""
    response = kick_off(env, path, access_token, params, **kw)
    assert response.status_code == 202, response.text
    return response.headers["content-location"]


def poll(status_url: str, access_token: str, timeout: float = 120) -> httpx.Response:
    """INF-K4: poll until the job is no longer running, waiting as Retry-After says."""
    deadline = time.monotonic() + timeout
    while True:
        response = httpx.get(status_url, headers=bearer(access_token), timeout=60)
        if response.status_code != 202:
            return response
        progress = response.headers.get("x-progress", "")
        assert len(progress) < 100  # BDS-13
        assert time.monotonic() < deadline, f"export still running: {progress}"
        time.sleep(float(response.headers["retry-after"]))


def manifest(env: SmartEnv, path: str, access_token: str, params: Any = None) -> dict[str, Any]:
    response = poll(started(env, path, access_token, params), access_token)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def download(url: str, access_token: str) -> list[dict[str, Any]]:
    response = httpx.get(url, headers=bearer(access_token), timeout=60)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/fhir+ndjson")  # INF-K7
    return [orjson.loads(line) for line in response.content.splitlines() if line.strip()]


def resources(body: dict[str, Any], access_token: str) -> dict[str, list[dict[str, Any]]]:
    """Every exported resource, by the type its output entry declares."""
    out: dict[str, list[dict[str, Any]]] = {}
    for item in body["output"]:
        out.setdefault(item["type"], []).extend(download(item["url"], access_token))
    return out


def ids(found: dict[str, list[dict[str, Any]]], rtype: str) -> set[str]:
    return {r["id"] for r in found.get(rtype, [])}
