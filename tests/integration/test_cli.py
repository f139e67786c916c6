"""The `selfback` command: migrate and load print JSON with --json and obey the same rules
as the HTTP API."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.conftest import ROOT, drop_database, fresh_database_url


def selfback(*args: str, database_url: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "fhir_server.cli",
            *args,
            "--json",
            "--database-url",
            database_url,
            "--data-dir",
            str(data_dir),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )


@pytest.fixture
def cli_database(tmp_path: Path) -> object:
    url = fresh_database_url(tmp_path, "cli")
    yield url
    drop_database(url)


def test_migrate_prints_revision(cli_database: str, tmp_path: Path) -> None:
    result = selfback("migrate", database_url=cli_database, data_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    report = orjson.loads(result.stdout)
    assert report["revision"] != "base"
    again = orjson.loads(selfback("migrate", database_url=cli_database, data_dir=tmp_path).stdout)
    assert again["revision"] == report["revision"]


def test_load_bundle_ndjson_and_single_resource(cli_database: str, tmp_path: Path) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:7f3d2a50-0000-4000-8000-000000000001",
                "resource": {"resourceType": "Patient", "gender": "male"},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "steps"},
                    "subject": {"reference": "urn:uuid:7f3d2a50-0000-4000-8000-000000000001"},
                },
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    (tmp_path / "bundle.json").write_bytes(orjson.dumps(bundle))
    lines = [
        orjson.dumps({"resourceType": "Patient", "id": f"nd-{i}", "gender": "female"})
        for i in range(7)
    ]
    (tmp_path / "patients.ndjson").write_bytes(b"\n".join(lines) + b"\n")
    (tmp_path / "one.json").write_bytes(
        orjson.dumps({"resourceType": "Organization", "id": "org-1", "name": "Clinic"})
    )
    files = [str(tmp_path / n) for n in ("bundle.json", "patients.ndjson", "one.json")]
    result = selfback(
        "load", *files, "--batch-size", "3", database_url=cli_database, data_dir=tmp_path
    )
    assert result.returncode == 0, result.stderr
    report = orjson.loads(result.stdout)
    assert report["resources"] == 2 + 7 + 1
    assert report["transactions"] == 1 + 3 + 1  # 7 NDJSON lines in batches of 3
    assert report["errors"] == []


def test_load_reports_a_bad_file_and_keeps_going(cli_database: str, tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_bytes(
        orjson.dumps({"resourceType": "Patient", "birthDate": "sometime"})
    )
    (tmp_path / "good.json").write_bytes(orjson.dumps({"resourceType": "Patient", "id": "good-1"}))
    result = selfback(
        "load",
        str(tmp_path / "bad.json"),
        str(tmp_path / "good.json"),
        database_url=cli_database,
        data_dir=tmp_path,
    )
    assert result.returncode == 1
    report = orjson.loads(result.stdout)
    assert report["resources"] == 1
    assert len(report["errors"]) == 1 and "bad.json" in report["errors"][0]["file"]
