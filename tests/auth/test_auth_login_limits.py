"""Brute force is stopped and SMS spend is capped (issue 4 item 5, OWASP API2/API4/API6):
activation codes, SMS codes, passwords, per sign-in, per phone, per user, per IP and for
the whole installation. These run on servers of their own, so lock-outs stay here."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, update

from fhir_server.auth.tables import auth_activation_code
from fhir_server.config import normalise_database_url
from tests.auth.conftest import STANDALONE_SCOPE, SmartEnv
from tests.auth.smart_app import App, Browser, new_phone, outbox_lines, sms_code
from tests.conftest import drop_database, fresh_database_url, start_server, stop_server

pytestmark = pytest.mark.db


def limited_env(tmp_path: Path, **env: str) -> SmartEnv:
    database_url = fresh_database_url(tmp_path, "limits")
    # These servers test the sign-in limits only: their FHIR set-up writes need no token.
    server = start_server(
        database_url, tmp_path, SELFBACK_LOAD_CONTENT="0", SELFBACK_AUTH="none", **env
    )
    smart = SmartEnv(server, database_url, tmp_path)
    registered = smart.cli(
        "client",
        "register",
        "--name",
        "app",
        "--type",
        "public",
        "--redirect-uri",
        "https://app.example/cb",
        "--scope",
        STANDALONE_SCOPE,
    )
    smart.apps["patient"] = App(registered["client_id"], "https://app.example/cb")
    return smart


def close(smart: SmartEnv) -> None:
    stop_server(smart.server)
    drop_database(smart.database_url)


@pytest.fixture(scope="module")
def limits(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmartEnv]:
    smart = limited_env(
        tmp_path_factory.mktemp("limits"),
        SELFBACK_LOGIN_IP_FAILURE_LIMIT="1000",
        SELFBACK_SMS_IP_HOURLY_LIMIT="1000",
    )
    yield smart
    close(smart)


def cli_code(smart: SmartEnv, patient: str) -> str:
    """An activation code straight from the store (the CLI path is tested in test_auth_cli)."""
    from fhir_server.auth.accounts import Accounts
    from fhir_server.storage.database import open_database

    db = open_database(normalise_database_url(smart.database_url))
    try:
        return Accounts(db).create_activation_code(patient, created_by="test", ttl=3600)[0]
    finally:
        db.dispose()


def test_activation_code_guessing_is_stopped_per_signin(limits: SmartEnv) -> None:
    good = cli_code(limits, limits.new_patient())
    browser = Browser()
    limits.start(browser, "patient", STANDALONE_SCOPE)
    for _ in range(5):
        wrong = browser.press("activate", activation_code="AAAA-BBBB-CCCC")
        assert wrong.status_code == 400 and "not valid" in wrong.text
    locked = browser.press("activate", activation_code=good)
    assert locked.status_code == 400 and "Too many wrong activation codes" in locked.text


def test_activation_codes_work_once_and_expire(limits: SmartEnv) -> None:
    patient = limits.new_patient()
    code = cli_code(limits, patient)
    first = Browser()
    limits.start(first, "patient", STANDALONE_SCOPE)
    first.press("activate", activation_code=code)
    phone = new_phone()
    first.press("phone", phone=phone)
    first.press("otp", otp=sms_code(limits.data_dir, phone))
    assert "Allow access?" in first.page.text
    again = Browser()
    limits.start(again, "patient", STANDALONE_SCOPE)
    assert again.press("activate", activation_code=code).status_code == 400
    stale = cli_code(limits, patient)
    engine = create_engine(normalise_database_url(limits.database_url))
    with engine.begin() as conn:
        conn.execute(update(auth_activation_code).values(expires_at=int(time.time()) - 1))
    engine.dispose()
    late = Browser()
    limits.start(late, "patient", STANDALONE_SCOPE)
    assert late.press("activate", activation_code=stale).status_code == 400


def onboard_until_code(smart: SmartEnv, phone: str) -> Browser:
    browser = Browser()
    smart.start(browser, "patient", STANDALONE_SCOPE)
    browser.press("activate", activation_code=cli_code(smart, smart.new_patient()))
    assert browser.press("phone", phone=phone).status_code == 200
    return browser


def test_an_sms_code_dies_after_five_wrong_tries(limits: SmartEnv) -> None:
    phone = new_phone()
    browser = onboard_until_code(limits, phone)
    right = sms_code(limits.data_dir, phone)
    for _ in range(5):
        assert (
            browser.press("otp", otp="000000" if right != "000000" else "111111").status_code == 400
        )
    dead = browser.press("otp", otp=right)
    assert dead.status_code == 400 and "expired or was tried too often" in dead.text


def test_resending_is_throttled_within_a_signin(limits: SmartEnv) -> None:
    phone = new_phone()
    browser = onboard_until_code(limits, phone)
    throttled = browser.press("resend")
    assert throttled.status_code == 429 and "wait" in throttled.text


def test_wrong_sms_codes_lock_the_phone(limits: SmartEnv) -> None:
    phone = new_phone()
    browser = onboard_until_code(limits, phone)
    browser.press("otp", otp=sms_code(limits.data_dir, phone))  # the account exists now
    for _ in range(2):
        returning = Browser()
        limits.start(returning, "patient", STANDALONE_SCOPE)
        returning.press("phone", phone=phone)
        for _ in range(5):
            returning.press("otp", otp="999999")
    locked = Browser()
    limits.start(locked, "patient", STANDALONE_SCOPE)
    before = outbox_lines(limits.data_dir)
    page = locked.press("phone", phone=phone)
    assert page.status_code == 400 and "Too many wrong codes" in page.text
    assert outbox_lines(limits.data_dir) == before  # no SMS spent on a locked phone


def test_sms_per_phone_per_hour_is_capped(limits: SmartEnv) -> None:
    phone = new_phone()  # unknown: counted the same, sent nowhere
    for attempt in range(6):
        browser = Browser()
        limits.start(browser, "patient", STANDALONE_SCOPE)
        page = browser.press("phone", phone=phone)
        assert page.status_code == (200 if attempt < 5 else 429), attempt


def test_password_guessing_locks_the_user_name(limits: SmartEnv) -> None:
    practitioner = limits.create({"resourceType": "Practitioner", "name": [{"family": "Holm"}]})
    limits.cli(
        "account",
        "create",
        "--role",
        "practitioner",
        "--username",
        "dr-holm",
        "--fhir-user",
        f"Practitioner/{practitioner}",
        env={"SELFBACK_NEW_PASSWORD": "a long enough secret"},
    )
    browser = Browser()
    limits.start(browser, "patient", STANDALONE_SCOPE)
    for _ in range(5):
        assert browser.press("password", username="dr-holm", password="guess").status_code == 400
    locked = browser.press("password", username="dr-holm", password="a long enough secret")
    assert locked.status_code == 429 and "Too many failed sign-ins" in locked.text


def test_wrong_codes_from_one_ip_lock_that_ip_out(tmp_path: Path) -> None:
    smart = limited_env(tmp_path, SELFBACK_LOGIN_IP_FAILURE_LIMIT="3")
    try:
        for _ in range(3):  # three sign-ins, one wrong code each: the per-sign-in limit is not hit
            browser = Browser()
            smart.start(browser, "patient", STANDALONE_SCOPE)
            assert browser.press("activate", activation_code="WRONG-CODE-1234").status_code == 400
        browser = Browser()
        smart.start(browser, "patient", STANDALONE_SCOPE)
        locked = browser.press("activate", activation_code=cli_code(smart, smart.new_patient()))
        assert locked.status_code == 400 and "Too many wrong activation codes" in locked.text
        password = browser.press("password", username="anyone", password="anything")
        assert password.status_code == 429  # the same IP counter guards passwords
    finally:
        close(smart)


def test_installation_wide_sms_cap(tmp_path: Path) -> None:
    smart = limited_env(
        tmp_path, SELFBACK_SMS_HOURLY_LIMIT="2", SELFBACK_LOGIN_IP_FAILURE_LIMIT="1000"
    )
    try:
        statuses = []
        for _ in range(3):
            browser = onboard_until_code_status(smart)
            statuses.append(browser)
        assert statuses == [200, 200, 429]
        assert outbox_lines(smart.data_dir) == 2
    finally:
        close(smart)


def onboard_until_code_status(smart: SmartEnv) -> int:
    browser = Browser()
    smart.start(browser, "patient", STANDALONE_SCOPE)
    browser.press("activate", activation_code=cli_code(smart, smart.new_patient()))
    return browser.press("phone", phone=new_phone()).status_code
