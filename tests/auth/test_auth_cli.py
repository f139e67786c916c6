"""The CLI (client registration, signing-key rotation, activation codes, accounts) and the
auth migration, against a real server and database."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import orjson
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from sqlalchemy import create_engine, inspect

from fhir_server.auth.tables import AUTH_TABLES
from fhir_server.config import normalise_database_url
from tests.auth.conftest import SmartEnv
from tests.auth.smart_app import new_phone
from tests.conftest import ROOT, drop_database, fresh_database_url

pytestmark = pytest.mark.db


def run(smart: SmartEnv, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "fhir_server.auth.cli",
            *args,
            "--database-url",
            smart.database_url,
            "--data-dir",
            str(smart.data_dir),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


def test_key_rotation_keeps_old_keys_published_until_their_tokens_expire(smart: SmartEnv) -> None:
    before, _ = smart.patient_tokens()
    old_kid = jwt.decode(
        before["id_token"],
        KeySet.import_key_set(httpx.get(smart.url + "/auth/jwks").json()),
        algorithms=["RS256"],
    ).header["kid"]
    rotated = smart.cli("keys", "rotate")
    assert old_kid in rotated["retired"] and rotated["kid"] != old_kid
    assert {old_kid, rotated["kid"]} <= set(rotated["published"])
    time.sleep(6)  # servers re-read the key table every few seconds
    after, _ = smart.patient_tokens()
    jwks = KeySet.import_key_set(httpx.get(smart.url + "/auth/jwks").json())
    assert jwt.decode(after["id_token"], jwks, algorithms=["RS256"]).header["kid"] == rotated["kid"]
    jwt.decode(before["id_token"], jwks, algorithms=["RS256"])  # the old token still verifies
    listed = smart.cli("keys", "list")["keys"]
    assert [k["kid"] for k in listed if k["signing"]] == [rotated["kid"]]


def test_client_registration_prints_json_and_refuses_nonsense(smart: SmartEnv) -> None:
    registered = smart.cli(
        "client",
        "register",
        "--name",
        "Symmetric",
        "--type",
        "confidential-symmetric",
        "--redirect-uri",
        "https://sym.example/cb",
        "--scope",
        "openid user/*.rs",
    )
    assert (
        registered["client_secret"]
        and registered["token_endpoint_auth_method"] == "client_secret_basic"
    )
    shown = smart.cli("client", "show", registered["client_id"])
    assert "client_secret" not in shown and "secret_hash" not in shown
    assert registered["client_id"] in {
        c["client_id"] for c in smart.cli("client", "list")["clients"]
    }
    for bad in (
        ["--type", "public", "--scope", "openid"],  # authorization code without a redirect URI
        ["--type", "confidential-asymmetric", "--scope", "system/*.rs"],  # no keys
        ["--type", "public", "--redirect-uri", "https://x.example/cb", "--scope", "nonsense"],
        ["--type", "public", "--grant", "client_credentials", "--scope", "system/*.rs"],
    ):
        result = run(smart, "client", "register", "--name", "bad", *bad)
        assert result.returncode == 2, bad
        assert "error" in orjson.loads(result.stdout)


def test_a_disabled_client_gets_no_tokens(smart: SmartEnv) -> None:
    from tests.auth.smart_app import BackendKey, backend_token

    key = BackendKey.es384()
    path = smart.data_dir / "disabled-jwks.json"
    path.write_bytes(orjson.dumps({"keys": [key.public()]}))
    client = smart.cli(
        "client",
        "register",
        "--name",
        "soon disabled",
        "--type",
        "confidential-asymmetric",
        "--jwks-file",
        str(path),
        "--scope",
        "system/*.rs",
    )
    assert (
        backend_token(smart.token_url, client["client_id"], key, "system/*.rs").status_code == 200
    )
    smart.cli("client", "disable", client["client_id"])
    refused = backend_token(smart.token_url, client["client_id"], key, "system/*.rs")
    assert refused.status_code in (400, 401) and refused.json()["error"] == "invalid_client"


def test_activation_code_from_the_cli_onboards_a_patient(smart: SmartEnv) -> None:
    from tests.auth.conftest import STANDALONE_SCOPE
    from tests.auth.smart_app import Browser, sms_code

    patient = smart.new_patient()
    made = smart.cli("activation-code", patient, "--valid-hours", "24")
    assert made["patient"] == f"Patient/{patient}" and len(made["code"]) == 14
    assert run(smart, "activation-code", "no-such-patient").returncode == 2
    browser, phone = Browser(), new_phone()
    smart.start(browser, "patient", STANDALONE_SCOPE)
    browser.press("activate", activation_code=made["code"])
    browser.press("phone", phone=phone)
    browser.press("otp", otp=sms_code(smart.data_dir, phone))
    assert "Allow access?" in browser.page.text
    accounts = smart.cli("account", "list")["accounts"]
    mine = next(a for a in accounts if a["fhir_user"] == f"Patient/{patient}")
    assert (mine["role"], mine["phone"]) == ("patient", phone)


def test_activation_code_operation_needs_the_scope(smart: SmartEnv) -> None:
    patient = smart.new_patient()
    url = f"{smart.fhir}/Patient/{patient}/$activation-code"
    anonymous = httpx.post(url)
    assert anonymous.status_code == 401 and anonymous.json()["resourceType"] == "OperationOutcome"
    assert "Bearer" in anonymous.headers["www-authenticate"]
    without_scope = httpx.post(
        url, headers={"Authorization": "Bearer " + smart.backend_access_token("ehr", "system/*.rs")}
    )
    assert (
        without_scope.status_code == 403
        and without_scope.json()["resourceType"] == "OperationOutcome"
    )
    token = smart.backend_access_token("ehr", "__activation-code")
    missing = httpx.post(
        f"{smart.fhir}/Patient/nobody/$activation-code",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert missing.status_code == 404 and missing.json()["resourceType"] == "OperationOutcome"
    bad = httpx.post(
        url,
        headers={"Authorization": f"Bearer {token}"},
        json={
            "resourceType": "Parameters",
            "parameter": [{"name": "validityHours", "valueInteger": 0}],
        },
    )
    assert bad.status_code == 400 and bad.json()["resourceType"] == "OperationOutcome"
    good = httpx.post(
        url,
        headers={"Authorization": f"Bearer {token}"},
        json={
            "resourceType": "Parameters",
            "parameter": [{"name": "validityHours", "valueInteger": 48}],
        },
    )
    assert good.status_code == 200 and good.headers["cache-control"] == "no-store"
    names = {p["name"] for p in good.json()["parameter"]}
    # reenrol and voided: issue 10 item 5 (tests/auth/test_auth_activation_reuse.py)
    assert names == {"code", "expires", "patient", "reenrol", "voided"}


def test_disabling_an_account_ends_its_tokens(smart: SmartEnv) -> None:
    body, patient = smart.patient_tokens()
    account = next(
        a
        for a in smart.cli("account", "list")["accounts"]
        if a["fhir_user"] == f"Patient/{patient}"
    )
    disabled = smart.cli("account", "disable", account["account_id"])
    assert disabled["grants_revoked"] >= 1
    introspected = httpx.post(
        smart.url + "/auth/introspect",
        data={"token": body["access_token"]},
        headers={"Authorization": "Bearer " + smart.backend_access_token("ehr", "system/*.rs")},
    )
    assert introspected.json() == {"active": False}


def test_migration_creates_exactly_the_auth_tables(tmp_path: pytest.TempPathFactory) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import MetaData

    from fhir_server.storage.database import open_database
    from fhir_server.storage.migrate import upgrade

    url = fresh_database_url(tmp_path, "migration")  # type: ignore[arg-type]
    try:
        db = open_database(normalise_database_url(url))
        upgrade(db)
        engine = create_engine(normalise_database_url(url))
        names = set(inspect(engine).get_table_names())
        assert {t.name for t in AUTH_TABLES} <= names
        ours = MetaData()
        for table in AUTH_TABLES:
            table.to_metadata(ours)
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), ours)
        # The database may hold other rooms' tables; nothing may differ for ours.
        auth_names = {t.name for t in AUTH_TABLES}
        assert [d for d in diff if _table_of(d) in auth_names] == []
        engine.dispose()
        db.dispose()
    finally:
        drop_database(url)


def _table_of(diff: object) -> str | None:
    """The table an Alembic comparison entry is about."""
    entry = diff[0] if isinstance(diff, list) else diff
    assert isinstance(entry, tuple)
    for part in entry[1:]:
        if hasattr(part, "name") and hasattr(part, "columns") and not hasattr(part, "table"):
            return str(part.name)  # a Table
        if hasattr(part, "table") and part.table is not None:
            return str(part.table.name)  # an Index, Constraint or Column
        if isinstance(part, str) and part.startswith("auth_"):
            return part
    return None


def test_migration_0006_adds_and_removes_the_totp_columns(tmp_path: pytest.TempPathFactory) -> None:
    """0006 (TOTP) applies over accounts made at 0005, undoes itself keeping the accounts
    (their enrolments go with the columns), and applies again."""
    from alembic import command
    from sqlalchemy import text

    from fhir_server.auth.accounts import Accounts
    from fhir_server.storage.database import open_database
    from fhir_server.storage.migrate import alembic_config, upgrade

    url = fresh_database_url(tmp_path, "migration6")  # type: ignore[arg-type]
    db = open_database(normalise_database_url(url))

    def columns() -> set[str]:
        with db.reader.connect() as conn:
            return {c["name"] for c in inspect(conn).get_columns("auth_account")}

    try:
        assert upgrade(db, "0005") == "0005"
        with db.writer.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO auth_account (account_id, role, username, password_hash, "
                    "created_at, disabled) VALUES ('a1', 'admin', 'anna', 'x', 1, false)"
                )
            )
        assert "totp_secret" not in columns()
        assert upgrade(db, "0006") == "0006"
        assert {"totp_secret", "totp_last_step"} <= columns()
        accounts = Accounts(db)
        assert accounts.get("a1").totp is False  # type: ignore[union-attr]
        accounts.enrol_totp("a1")
        assert accounts.get("a1").totp is True  # type: ignore[union-attr]
        config = alembic_config(db)
        with db.writer.connect() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0005")
            connection.commit()
        assert not {"totp_secret", "totp_last_step"} & columns()
        with db.reader.connect() as conn:
            assert conn.execute(text("SELECT username FROM auth_account")).scalars().all() == [
                "anna"
            ]
        assert upgrade(db, "0006") == "0006"
        assert Accounts(db).get("a1").totp is False  # type: ignore[union-attr]
    finally:
        db.dispose()
        drop_database(url)


def test_generated_identifiers_never_read_as_command_line_options(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A client id or account id is typed at the CLI (``selfback client disable ID``): one
    starting with ``-`` was read as an option (it happened: ``-9wmNLFWc...``). Values that
    would start with ``-`` or ``_`` are drawn again."""
    from fhir_server.auth import credentials

    drawn = iter(["-starts-with-dash", "_underscore", "fine-value"])
    monkeypatch.setattr(credentials.secrets, "token_urlsafe", lambda n: next(drawn))
    assert credentials.new_identifier(16) == "fine-value"
    monkeypatch.undo()
    assert all(credentials.new_identifier(12)[0] not in "-_" for _ in range(2_000))
