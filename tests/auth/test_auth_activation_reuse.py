"""Activation codes and phones, over HTTP against the real server (issue 10 item 5).

A code is single use: a second use -- with a new phone or the same one, one after the
other or racing -- is answered exactly as an unknown code and counts toward the lock-out.
A new code voids the patient's unused ones. A code alone never moves an existing account
to a new phone: only a clinician's (or the EHR's) re-enrolment does, and then the old
phone's access and refresh tokens stop working. Each step is in the audit trail, without
codes or phone numbers.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.auth.access_world import care_team, consent
from tests.auth.conftest import CLINICIAN_PASSWORD, STANDALONE_SCOPE, SmartEnv
from tests.auth.smart_app import Browser, bearer, outbox_lines, sms_code
from tests.conftest import ROOT

pytestmark = pytest.mark.db

UNKNOWN_CODE = "That activation code is not valid"
LOCKED = "Too many wrong activation codes"


# -- helpers ----------------------------------------------------------------------------------


def issue(
    smart: SmartEnv, patient: str, *, reenrol: bool | None = None, token: str | None = None
) -> httpx.Response:
    token = token or smart.cached_token("ehr", "__activation-code")
    body = None
    if reenrol is not None:
        body = {
            "resourceType": "Parameters",
            "parameter": [{"name": "reenrol", "valueBoolean": reenrol}],
        }
    return httpx.post(
        f"{smart.fhir}/Patient/{patient}/$activation-code",
        json=body,
        headers=bearer(token),
        timeout=60,
    )


def code_of(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return str(params(response)["code"]["valueString"])


def params(response: httpx.Response) -> dict[str, Any]:
    return {p["name"]: p for p in response.json()["parameter"]}


def unique_phone() -> str:
    # Not tests.auth.smart_app.new_phone: its 8 random digits could repeat; these cannot
    # within a run, and the SMS outbox is searched by number.
    unique_phone.n += 1  # type: ignore[attr-defined]
    return f"+4530{int(time.time()) % 100000:05d}{unique_phone.n:03d}"  # type: ignore[attr-defined]


unique_phone.n = 0  # type: ignore[attr-defined]


def activate(smart: SmartEnv, code: str) -> tuple[Browser, str, str, httpx.Response]:
    """A new sign-in, the code typed: (browser, verifier, state, answer)."""
    browser = Browser()
    verifier, state = smart.start(browser, "patient", STANDALONE_SCOPE)
    return browser, verifier, state, browser.press("activate", activation_code=code)


def finish(smart: SmartEnv, browser: Browser, phone: str) -> httpx.Response:
    """Phone, then the SMS code; the answer to the SMS code."""
    assert browser.press("phone", phone=phone).status_code == 200, browser.errors
    return browser.press("otp", otp=sms_code(smart.data_dir, phone))


def redeem(smart: SmartEnv, code: str, phone: str) -> dict[str, Any]:
    """Onboard with ``code`` and ``phone`` through to the tokens."""
    browser, verifier, state, answer = activate(smart, code)
    try:
        assert answer.status_code == 200, browser.errors
        assert finish(smart, browser, phone).status_code == 200, browser.errors
        grant = smart.approve(browser, state)
    finally:
        browser.close()
    response = smart.apps["patient"].exchange(smart.token_url, grant, verifier)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body.get("refresh_token")
    return body


def account_of(smart: SmartEnv, patient: str) -> dict[str, Any]:
    (account,) = [
        a
        for a in smart.cli("account", "list")["accounts"]
        if a["fhir_user"] == f"Patient/{patient}"
    ]
    return dict(account)


def reads_own_record(smart: SmartEnv, token: str, patient: str) -> int:
    return httpx.get(
        f"{smart.fhir}/Patient/{patient}", headers=bearer(token), timeout=60
    ).status_code


def introspect(smart: SmartEnv, token: str, caller: str) -> dict[str, Any]:
    """RFC 7662 as the patient app itself: ``caller`` is a valid access token of that app
    (a client may introspect the tokens issued to it, fhir_server/auth/introspection.py)."""
    response = httpx.post(
        smart.url + "/auth/introspect",
        data={"token": token},
        headers=bearer(caller),
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def onboarded(smart: SmartEnv) -> tuple[str, str, str, dict[str, Any]]:
    """A new patient onboarded: (patient id, code used, phone, token response)."""
    patient = smart.new_patient("Reuse")
    code = code_of(issue(smart, patient))
    phone = unique_phone()
    return patient, code, phone, redeem(smart, code, phone)


def events(
    smart: SmartEnv, patient: str, until: Callable[[list[str]], bool], timeout: float = 15
) -> list[dict[str, Any]]:
    """The activation-code AuditEvents naming the patient, once ``until`` holds of their
    outcome texts (the trail writes off the request path)."""
    deadline = time.monotonic() + timeout
    while True:
        response = httpx.get(
            f"{smart.fhir}/AuditEvent",
            params={
                "patient": f"Patient/{patient}",
                "subtype": "http://selfback.example.org/fhir/CodeSystem/auth-event|activation-code",
                "_count": "200",
            },
            headers=bearer(smart.cached_token("ehr", "system/*.rs")),
            timeout=60,
        )
        assert response.status_code == 200, response.text
        found = [e["resource"] for e in response.json().get("entry", [])]
        texts = [e.get("outcomeDesc", "") for e in found]
        if until(texts) or time.monotonic() > deadline:
            assert until(texts), texts
            return found


def has(*fragments: str) -> Callable[[list[str]], bool]:
    return lambda texts: all(any(f in t for t in texts) for f in fragments)


# -- single use -------------------------------------------------------------------------------


def test_a_used_code_with_a_new_phone_is_refused_like_an_unknown_code(smart: SmartEnv) -> None:
    patient, code, phone, tokens = onboarded(smart)
    unknown_browser, _, _, unknown = activate(smart, "ZZZZ-ZZZZ-ZZZZ")
    again_browser, _, _, again = activate(smart, code)
    try:
        assert again.status_code == unknown.status_code == 400
        assert again_browser.errors == unknown_browser.errors
        assert any(UNKNOWN_CODE in e for e in again_browser.errors)
        # The sign-in is back at its start: a phone typed now is a returning sign-in,
        # and a phone with no account gets no SMS -- the code gave it nothing.
        other = unique_phone()
        before = outbox_lines(smart.data_dir)
        again_browser.press("phone", phone=other)
        outbox = (smart.data_dir / "sms-outbox.jsonl").read_text().splitlines()[before:]
        assert not any(other in line for line in outbox)
    finally:
        unknown_browser.close()
        again_browser.close()
    assert account_of(smart, patient)["phone"] == phone  # not moved
    assert reads_own_record(smart, tokens["access_token"], patient) == 200
    assert introspect(smart, tokens["access_token"], tokens["access_token"])["active"] is True


def test_a_used_code_with_the_same_phone_is_refused_too(smart: SmartEnv) -> None:
    patient, code, phone, tokens = onboarded(smart)
    browser, _, _, again = activate(smart, code)
    try:
        assert again.status_code == 400 and any(UNKNOWN_CODE in e for e in browser.errors)
    finally:
        browser.close()
    assert account_of(smart, patient)["phone"] == phone
    assert reads_own_record(smart, tokens["access_token"], patient) == 200


def test_two_sign_ins_racing_with_one_code_make_one_account(smart: SmartEnv) -> None:
    """Both pass the first step before either finishes; the second to finish is refused
    at the SMS step as an unknown code, and the account stays with the first phone."""
    patient = smart.new_patient("Race")
    code = code_of(issue(smart, patient))
    first, verifier, state, one = activate(smart, code)
    second, _, _, two = activate(smart, code)
    try:
        assert one.status_code == two.status_code == 200
        phone, other = unique_phone(), unique_phone()
        assert finish(smart, first, phone).status_code == 200, first.errors
        late = finish(smart, second, other)
        assert late.status_code == 400
        assert any(UNKNOWN_CODE in e for e in second.errors)
    finally:
        first.close()
        second.close()
    assert account_of(smart, patient)["phone"] == phone
    events(smart, patient, has("activation code refused at redemption"))


def test_reusing_a_code_counts_toward_the_lock_out(smart: SmartEnv) -> None:
    _, used, _, _ = onboarded(smart)
    fresh = code_of(issue(smart, smart.new_patient("Lock")))
    browser = Browser()
    try:
        smart.start(browser, "patient", STANDALONE_SCOPE)
        for _ in range(5):  # policy.Limits.activation_attempts_per_flow
            assert browser.press("activate", activation_code=used).status_code == 400
        locked = browser.press("activate", activation_code=fresh)
        assert locked.status_code == 400 and any(LOCKED in e for e in browser.errors)
    finally:
        browser.close()


# -- a new code voids the old ---------------------------------------------------------------------


def test_a_new_code_voids_the_unused_ones(smart: SmartEnv) -> None:
    patient = smart.new_patient("Void")
    first = issue(smart, patient)
    assert params(first)["voided"]["valueInteger"] == 0
    second = issue(smart, patient)
    assert params(second)["voided"]["valueInteger"] == 1
    browser, _, _, old = activate(smart, code_of(first))
    try:
        assert old.status_code == 400 and any(UNKNOWN_CODE in e for e in browser.errors)
    finally:
        browser.close()
    phone = unique_phone()
    tokens = redeem(smart, code_of(second), phone)
    assert account_of(smart, patient)["phone"] == phone
    assert reads_own_record(smart, tokens["access_token"], patient) == 200
    found = events(smart, patient, has("activation code issued", "voided", "activation code used"))
    for event in found:  # never a code or a phone number in the trail
        text = str(event)
        assert code_of(first) not in text and code_of(second) not in text
        assert phone not in text and phone[1:] not in text


# -- an existing account and re-enrolment -----------------------------------------------------


def test_a_plain_code_is_not_issued_for_a_patient_with_an_account(smart: SmartEnv) -> None:
    patient, _, phone, tokens = onboarded(smart)
    refused = issue(smart, patient)
    assert refused.status_code == 409, refused.text
    assert refused.json()["resourceType"] == "OperationOutcome"
    assert "reenrol" in refused.json()["issue"][0]["diagnostics"]
    # The CLI refuses too, and says how to re-enrol.
    answer = subprocess.run(
        [
            sys.executable,
            "-m",
            "fhir_server.auth.cli",
            "activation-code",
            patient,
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
    assert answer.returncode != 0 and "--reenrol" in answer.stderr + answer.stdout
    assert smart.cli("activation-code", patient, "--reenrol")["reenrol"] is True
    assert account_of(smart, patient)["phone"] == phone
    assert reads_own_record(smart, tokens["access_token"], patient) == 200
    events(smart, patient, has("activation code refused: the patient has an account"))


def test_reenrolment_moves_the_phone_and_revokes_the_old_tokens(smart: SmartEnv) -> None:
    patient, _, old_phone, old = onboarded(smart)
    issued = issue(smart, patient, reenrol=True)
    assert params(issued)["reenrol"]["valueBoolean"] is True
    new_phone = unique_phone()
    new = redeem(smart, code_of(issued), new_phone)
    account = account_of(smart, patient)
    assert account["phone"] == new_phone
    # The old phone's tokens: access inactive and refused, refresh refused.
    assert introspect(smart, new["access_token"], new["access_token"])["active"] is True
    assert introspect(smart, old["access_token"], new["access_token"]) == {"active": False}
    assert introspect(smart, old["refresh_token"], new["access_token"]) == {"active": False}
    assert reads_own_record(smart, old["access_token"], patient) == 401
    refreshed = smart.apps["patient"].refresh(smart.token_url, old["refresh_token"])
    assert refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant"
    # The new phone's tokens work, and refresh.
    assert reads_own_record(smart, new["access_token"], patient) == 200
    assert smart.apps["patient"].refresh(smart.token_url, new["refresh_token"]).status_code == 200
    # The re-enrolment code was single use as well.
    browser, _, _, again = activate(smart, code_of(issued))
    try:
        assert again.status_code == 400 and any(UNKNOWN_CODE in e for e in browser.errors)
    finally:
        browser.close()
    found = events(
        smart,
        patient,
        has(
            "re-enrolment code issued",
            "re-enrolment code used",
            "moved to a new phone",
            "tokens of the old phone revoked",
        ),
    )
    for event in found:
        text = str(event)
        assert old_phone[1:] not in text and new_phone[1:] not in text
        assert code_of(issued) not in text


def test_reenrolment_with_the_same_phone_keeps_the_tokens(smart: SmartEnv) -> None:
    patient, _, phone, old = onboarded(smart)
    redeem(smart, code_of(issue(smart, patient, reenrol=True)), phone)
    assert account_of(smart, patient)["phone"] == phone
    assert reads_own_record(smart, old["access_token"], patient) == 200
    events(smart, patient, has("kept on the same phone"))


def clinician_token(smart: SmartEnv) -> str:
    scope = "openid fhirUser user/*.rs __activation-code"
    browser = Browser()
    try:
        verifier, state = smart.start(browser, "clinician", scope)
        browser.press("password", username="dr-jensen", password=CLINICIAN_PASSWORD)
        grant = smart.approve(browser, state)
    finally:
        browser.close()
    response = smart.apps["clinician"].exchange(smart.token_url, grant, verifier)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def test_a_clinician_reenrols_only_a_patient_they_may_reach(smart: SmartEnv) -> None:
    token = clinician_token(smart)
    stranger, _, phone, tokens = onboarded(smart)
    refused = issue(smart, stranger, reenrol=True, token=token)
    unknown = issue(smart, "no-such-patient", reenrol=True, token=token)
    assert refused.status_code == unknown.status_code == 404
    assert refused.json()["issue"][0]["code"] == unknown.json()["issue"][0]["code"]
    assert account_of(smart, stranger)["phone"] == phone
    assert reads_own_record(smart, tokens["access_token"], stranger) == 200
    events(smart, stranger, has("re-enrolment refused: the requester may not reach"))

    mine, _, _, old = onboarded(smart)
    me = f"Practitioner/{smart.practitioner}"
    smart.create(consent(mine, me))
    smart.create(care_team(mine, me))
    issued = issue(smart, mine, reenrol=True, token=token)
    assert params(issued)["reenrol"]["valueBoolean"] is True
    moved_to = unique_phone()
    redeem(smart, code_of(issued), moved_to)
    assert account_of(smart, mine)["phone"] == moved_to
    assert reads_own_record(smart, old["access_token"], mine) == 401


def test_reenrol_must_be_a_boolean(smart: SmartEnv) -> None:
    patient = smart.new_patient("Bad")
    response = httpx.post(
        f"{smart.fhir}/Patient/{patient}/$activation-code",
        json={"resourceType": "Parameters", "parameter": [{"name": "reenrol", "valueString": "y"}]},
        headers=bearer(smart.cached_token("ehr", "__activation-code")),
        timeout=60,
    )
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"


# -- the migration ------------------------------------------------------------------------------


def test_migration_0008_adds_and_removes_reenrol_and_voided_at(tmp_path: Any) -> None:
    """0008 applies over codes made at 0007 (they read as plain, unvoided codes), undoes
    itself keeping the codes, and applies again."""
    from alembic import command
    from sqlalchemy import inspect, text

    from fhir_server.config import normalise_database_url
    from fhir_server.storage.database import open_database
    from fhir_server.storage.migrate import alembic_config, upgrade
    from tests.conftest import drop_database, fresh_database_url

    url = fresh_database_url(tmp_path, "migration8")
    db = open_database(normalise_database_url(url))

    def columns() -> set[str]:
        with db.reader.connect() as conn:
            return {c["name"] for c in inspect(conn).get_columns("auth_activation_code")}

    try:
        assert upgrade(db, "0007") == "0007"
        with db.writer.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO auth_activation_code (code_hash, patient_id, created_by, "
                    "created_at, expires_at) VALUES ('h1', 'p1', 'cli', 1, 99999999999)"
                )
            )
        assert not {"reenrol", "voided_at"} & columns()
        assert upgrade(db, "0008") == "0008"
        assert {"reenrol", "voided_at"} <= columns()
        with db.reader.connect() as conn:
            row = conn.execute(text("SELECT reenrol, voided_at FROM auth_activation_code")).one()
        assert (bool(row.reenrol), row.voided_at) == (False, None)
        config = alembic_config(db)
        with db.writer.connect() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0007")
            connection.commit()
        assert not {"reenrol", "voided_at"} & columns()
        with db.reader.connect() as conn:
            codes = conn.execute(text("SELECT code_hash FROM auth_activation_code")).scalars()
            assert codes.all() == ["h1"]
        assert upgrade(db, "0008") == "0008"
    finally:
        db.dispose()
        drop_database(url)
