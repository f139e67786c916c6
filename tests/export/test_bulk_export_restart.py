"""A bulk export job lives in the database, not in the process that accepted it: its
status URL answers after a restart, and a job the stopped process had not finished is
run again from the start (docs/BULK_EXPORT.md, "Jobs")."""

from __future__ import annotations

import pytest

from tests.auth.conftest import GENEROUS, SmartEnv
from tests.conftest import start_server, stop_server
from tests.export.bulk_client import download, poll, started, token

pytestmark = pytest.mark.db


def test_a_job_survives_a_restart_of_the_server(bulk: SmartEnv) -> None:
    patients = [bulk.new_patient(f"Restart{n}") for n in range(3)]
    access_token = token(bulk)
    status_url = started(bulk, "Patient/$export", access_token, {"_type": "Patient"})
    old_base = bulk.fhir
    # SIGTERM right after the kick-off: the job is waiting, running (the stopping
    # process hands it back) or done; whichever, the restarted server answers for it.
    stop_server(bulk.server)
    bulk.server = start_server(bulk.database_url, bulk.data_dir, **GENEROUS)
    status_url = status_url.replace(old_base, bulk.fhir)
    response = poll(status_url, access_token)
    assert response.status_code == 200, response.text
    (output,) = response.json()["output"]
    assert output["url"].startswith(bulk.fhir + "/")
    exported = {r["id"] for r in download(output["url"], access_token)}
    assert set(patients) <= exported
    assert output["count"] == len(exported)
