"""A clinician with a TOTP second factor signs in over HTTP: password, then the 6-digit
code from the authenticator app (RFC 6238), computed here from the secret the CLI printed.
Wrong codes are refused and lock the account, a code works once, clinicians without TOTP
see no second page, the page speaks Danish, and the audit trail says how each try ended."""

from __future__ import annotations

import secrets
import time
from typing import Any

import httpx
import pytest

from fhir_server.auth.totp import PERIOD, secret_bytes, time_step, totp
from tests.auth.access_world import care_team, consent
from tests.auth.conftest import CLINICIAN_PASSWORD, SmartEnv
from tests.auth.smart_app import Browser, check_token_response, forms_of

pytestmark = pytest.mark.db

SCOPE = "launch/patient openid fhirUser patient/*.rs user/*.rs"
LOGIN_SUBTYPE = "http://selfback.example.org/fhir/CodeSystem/auth-event|login"


def clinician(smart: SmartEnv, *, enrol: bool = True) -> dict[str, Any]:
    """A Practitioner and their account, made as an installation makes them: the CLI."""
    practitioner = smart.create(
        {"resourceType": "Practitioner", "name": [{"family": "Holm", "given": ["Ida"]}]}
    )
    # Patient a is hers to pick: a Consent and a CareTeam link (issue 10 item 2).
    smart.create(consent(smart.patients["a"], f"Practitioner/{practitioner}"))
    smart.create(care_team(smart.patients["a"], f"Practitioner/{practitioner}"))
    username = f"dr-holm-{secrets.token_hex(4)}"
    account = smart.cli(
        "account",
        "create",
        "--role",
        "practitioner",
        "--username",
        username,
        "--fhir-user",
        f"Practitioner/{practitioner}",
        env={"SELFBACK_NEW_PASSWORD": CLINICIAN_PASSWORD},
    )
    who = {"username": username, "practitioner": practitioner, "account_id": account["account_id"]}
    if enrol:
        enrolled = smart.cli("account", "totp-enrol", username)
        assert enrolled["account_id"] == account["account_id"] and enrolled["totp"] is True
        assert enrolled["otpauth_uri"].startswith(f"otpauth://totp/SelfBack:{username}?secret=")
        who["secret"] = enrolled["secret"]
    return who


def code(secret: str, at: float | None = None) -> str:
    return totp(secret_bytes(secret), time.time() if at is None else at)


def wrong_code(secret: str) -> str:
    now = time.time()
    near = {code(secret, now + d * PERIOD) for d in range(-2, 3)}
    return next(c for c in ("000000", "123456", "999999", "555555") if c not in near)


def to_password_step(
    smart: SmartEnv, who: dict[str, Any], **extra: str
) -> tuple[Browser, str, str]:
    browser = Browser()
    verifier, state = smart.start(browser, "clinician", SCOPE, **extra)
    page = browser.press("password", username=who["username"], password=CLINICIAN_PASSWORD)
    assert page.status_code == 200, browser.errors
    return browser, verifier, state


def on_totp_page(browser: Browser) -> bool:
    assert browser.page is not None
    return 'name="totp"' in browser.page.text and "Patient (id)" not in browser.page.text


def login_events(smart: SmartEnv, practitioner: str, wanted: int) -> list[dict[str, Any]]:
    """The audit trail's sign-in records naming the practitioner (written ~200 ms later)."""
    deadline = time.monotonic() + 15
    entries: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        bundle = httpx.get(
            f"{smart.fhir}/AuditEvent",
            params={"subtype": LOGIN_SUBTYPE, "agent": f"Practitioner/{practitioner}"},
            headers=smart.admin_headers(),
            timeout=30,
        ).json()
        entries = [e["resource"] for e in bundle.get("entry", [])]
        if len(entries) >= wanted:
            return entries
        time.sleep(0.1)
    raise AssertionError(f"{len(entries)} sign-in records for Practitioner/{practitioner}")


def test_password_then_totp_code_then_token(smart: SmartEnv) -> None:
    who = clinician(smart)
    browser, verifier, state = to_password_step(smart, who)
    assert on_totp_page(browser)
    page = browser.page.text  # type: ignore[union-attr]
    assert "Enter the code from your authenticator app" in page
    wrong = browser.press("totp", totp=wrong_code(who["secret"]))
    assert wrong.status_code == 400 and "That code is not right" in browser.errors[0]
    assert on_totp_page(browser)
    assert browser.press("totp", totp=code(who["secret"])).status_code == 200, browser.errors
    assert "Patient (id)" in browser.page.text  # type: ignore[union-attr]
    grant = smart.approve(browser, state, patient=smart.patients["a"])
    body = check_token_response(smart.apps["clinician"].exchange(smart.token_url, grant, verifier))
    assert body["patient"] == smart.patients["a"]
    read = httpx.get(
        f"{smart.fhir}/Practitioner/{who['practitioner']}",
        headers={"Authorization": f"Bearer {body['access_token']}"},
    )
    assert read.status_code == 200
    # The trail: the wrong code and the sign-in, both naming the practitioner.
    events = login_events(smart, who["practitioner"], 2)
    described = {(e["outcome"], e["outcomeDesc"]) for e in events}
    assert ("4", f"HTTP 400: TOTP refused for '{who['username']}' (error_totp_invalid)") in (
        described
    )
    assert ("0", "HTTP 200: signed in (password + TOTP)") in described


def test_a_code_that_signed_in_once_is_refused_the_second_time(smart: SmartEnv) -> None:
    who = clinician(smart)
    at = time.time()
    used = code(who["secret"], at)
    first, _, state = to_password_step(smart, who)
    assert first.press("totp", totp=used).status_code == 200, first.errors
    assert "Patient (id)" in first.page.text  # type: ignore[union-attr]
    second, _, _ = to_password_step(smart, who)
    replayed = second.press("totp", totp=used)
    assert replayed.status_code == 400
    assert "used already" in second.errors[0]
    # The next time step's code is new, and works (within the ±1 step window).
    following = code(who["secret"], (time_step(at) + 1) * PERIOD)
    assert second.press("totp", totp=following).status_code == 200, second.errors
    assert "Patient (id)" in second.page.text  # type: ignore[union-attr]


def test_five_wrong_codes_lock_the_account(smart: SmartEnv) -> None:
    who = clinician(smart)
    browser, _, _ = to_password_step(smart, who)
    wrong = wrong_code(who["secret"])
    for _ in range(5):
        assert browser.press("totp", totp=wrong).status_code == 400
    locked = browser.press("totp", totp=code(who["secret"]))
    assert locked.status_code == 429 and "Too many wrong codes" in browser.errors[0]
    # A new sign-in with the right password and the right code is still locked out.
    again, _, _ = to_password_step(smart, who)
    assert on_totp_page(again)
    assert again.press("totp", totp=code(who["secret"])).status_code == 429
    # Other clinicians are not.
    other = clinician(smart)
    fine, _, _ = to_password_step(smart, other)
    assert fine.press("totp", totp=code(other["secret"])).status_code == 200, fine.errors
    events = login_events(smart, who["practitioner"], 7)
    reasons = [e["outcomeDesc"] for e in events]
    assert reasons.count(f"HTTP 429: TOTP refused for '{who['username']}' (error_totp_locked)") == 2


def test_malformed_codes_are_refused_with_a_page_not_an_error(smart: SmartEnv) -> None:
    who = clinician(smart)
    browser, _, _ = to_password_step(smart, who)
    malformed = ("12345", "1234567", "abcdef", "١٢٣٤٥٦", "1" * 5000, "12345x", "")
    for n, typed in enumerate(malformed):
        refused = browser.press("totp", totp=typed)
        assert on_totp_page(browser)
        if n < 5:  # each counts as a wrong code ...
            assert refused.status_code == 400 and "That code is not right" in browser.errors[0]
        else:  # ... so the sixth finds the account locked
            assert refused.status_code == 429 and "Too many wrong codes" in browser.errors[0]


def test_clinicians_without_totp_go_straight_to_consent(smart: SmartEnv) -> None:
    plain = clinician(smart, enrol=False)
    browser, _, _ = to_password_step(smart, plain)
    assert not on_totp_page(browser)
    assert "Patient (id)" in browser.page.text  # type: ignore[union-attr]
    # Enrolled, then removed: back to the password alone.
    removable = clinician(smart)
    removed = smart.cli("account", "totp-remove", removable["username"])
    assert removed == {
        "account_id": removable["account_id"],
        "username": removable["username"],
        "totp": False,
    }
    browser, _, _ = to_password_step(smart, removable)
    assert "Patient (id)" in browser.page.text  # type: ignore[union-attr]
    listed = {a["username"]: a["totp"] for a in smart.cli("account", "list")["accounts"]}
    assert listed[plain["username"]] is False and listed[removable["username"]] is False


def test_the_totp_step_cannot_be_skipped(smart: SmartEnv) -> None:
    who = clinician(smart)
    browser, _, _ = to_password_step(smart, who)
    flow = dict(forms_of(browser.page.text).forms[-1].fields)["flow"]  # type: ignore[union-attr]
    # Straight to "Allow" from the TOTP page, as a forged form post would go.
    skipped = browser.post(
        smart.authorize_url,
        [("flow", flow), ("action", "approve"), ("scope", "user/*.rs"), ("patient", "x")],
    )
    assert skipped.status_code == 400 and on_totp_page(browser)
    assert "Something went wrong" in browser.errors[0]
    restarted = browser.press("restart")
    assert restarted.status_code == 200 and 'name="username"' in restarted.text


def test_the_totp_page_speaks_danish(smart: SmartEnv) -> None:
    who = clinician(smart)
    browser, _, _ = to_password_step(smart, who, ui_locales="da")
    page = browser.page.text  # type: ignore[union-attr]
    assert '<html lang="da">' in page
    assert "Indtast koden fra din godkendelsesapp" in page and "6-cifret kode" in page
    assert browser.press("totp", totp=wrong_code(who["secret"])).status_code == 400
    assert browser.errors == ["Koden er forkert. Tjek uret på din telefon, og prøv igen."]
    english = browser.press("locale", locale="en")
    assert "Enter the code from your authenticator app" in english.text
