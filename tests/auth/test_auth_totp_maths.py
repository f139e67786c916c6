"""TOTP (RFC 6238 over RFC 4226 HOTP): the published test vectors, the ±1 step drift
window, malformed codes, the otpauth:// URI, and -- against a real store -- that a code
is accepted once (RFC 6238 section 5.2) and that wrong codes lock the account."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from fhir_server.auth.totp import (
    DIGITS,
    PERIOD,
    hotp,
    matching_step,
    new_secret,
    provisioning_uri,
    secret_bytes,
    time_step,
    totp,
)

# RFC 6238 Appendix B uses the 20-byte ASCII key "12345678901234567890" for its SHA1 rows.
RFC_KEY = b"12345678901234567890"
RFC_SECRET = base64.b32encode(RFC_KEY).decode()

# RFC 6238 Appendix B, SHA1 rows: (Unix time, 8-digit TOTP).
RFC6238_SHA1 = [
    (59, "94287082"),
    (1111111109, "07081804"),
    (1111111111, "14050471"),
    (1234567890, "89005924"),
    (2000000000, "69279037"),
    (20000000000, "65353130"),
]

# RFC 4226 Appendix D: HOTP values for counters 0..9 with the same key, 6 digits.
RFC4226 = ["755224", "287082", "359152", "969429", "338314",
           "254676", "287922", "162583", "399871", "520489"]  # fmt: skip


@pytest.mark.parametrize(("at", "expected"), RFC6238_SHA1)
def test_rfc6238_appendix_b_sha1_vectors(at: int, expected: str) -> None:
    assert totp(RFC_KEY, at, digits=8) == expected
    assert matching_step(RFC_SECRET, expected, at, digits=8) == at // 30


@pytest.mark.parametrize(("counter", "expected"), list(enumerate(RFC4226)))
def test_rfc4226_appendix_d_hotp_vectors(counter: int, expected: str) -> None:
    assert hotp(RFC_KEY, counter) == expected


def test_the_time_step_is_thirty_seconds_from_the_epoch() -> None:
    assert PERIOD == 30 and DIGITS == 6
    assert [time_step(t) for t in (0, 29.999, 30, 59, 60)] == [0, 0, 1, 1, 2]


NOW = 1_800_000_015.0  # the middle of a step


def code_at(step_offset: int) -> str:
    return totp(RFC_KEY, NOW + step_offset * PERIOD)


@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_one_step_of_clock_drift_either_way_is_accepted(offset: int) -> None:
    assert matching_step(RFC_SECRET, code_at(offset), NOW) == time_step(NOW) + offset


@pytest.mark.parametrize("offset", [-3, -2, 2, 3])
def test_codes_further_off_are_refused(offset: int) -> None:
    code = code_at(offset)
    assert code not in {code_at(-1), code_at(0), code_at(1)}  # no chance collision here
    assert matching_step(RFC_SECRET, code, NOW) is None


def test_drift_can_be_turned_off() -> None:
    assert matching_step(RFC_SECRET, code_at(1), NOW, drift=0) is None
    assert matching_step(RFC_SECRET, code_at(0), NOW, drift=0) == time_step(NOW)


@pytest.mark.parametrize(
    "typed",
    [
        "",
        "12345",  # too short
        "1234567",  # too long
        "12345a",  # not a digit
        "١٢٣٤٥٦",  # Arabic-Indic digits: str.isdigit() says yes, the code says no
        "+12345",
        "-12345",
        "12 34 5",
    ],
)
def test_malformed_codes_are_refused(typed: str) -> None:
    assert matching_step(RFC_SECRET, typed, NOW) is None


def test_spaces_around_and_inside_a_code_are_forgiven() -> None:
    code = code_at(0)
    assert matching_step(RFC_SECRET, f" {code[:3]} {code[3:]} ", NOW) == time_step(NOW)


def test_the_wrong_secret_does_not_match() -> None:
    other = base64.b32encode(b"abcdefghijklmnopqrst").decode()
    assert totp(secret_bytes(other), NOW) != code_at(0)
    assert matching_step(other, code_at(0), NOW) is None


def test_new_secrets_are_160_bit_base32() -> None:
    secrets = {new_secret() for _ in range(50)}
    assert len(secrets) == 50
    for secret in secrets:
        assert len(secret) == 32 and set(secret) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
        assert len(secret_bytes(secret)) == 20
    assert secret_bytes(RFC_SECRET.lower().rstrip("=")) == RFC_KEY  # case and padding forgiven


def test_provisioning_uri_follows_the_key_uri_format() -> None:
    secret = new_secret()
    uri = provisioning_uri(secret, "dr jensen")
    parts = urlsplit(uri)
    assert parts.scheme == "otpauth" and parts.netloc == "totp"
    assert unquote(parts.path) == "/SelfBack:dr jensen"
    assert " " not in uri
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert query == {
        "secret": secret,
        "issuer": "SelfBack",
        "algorithm": "SHA1",
        "digits": "6",
        "period": "30",
    }


# -- replay and lock-out, through the sign-in checks and a real account store ----------------


Login3 = tuple[Any, str, str]  # (fhir_server.auth.login.Login, account_id, TOTP secret)


@pytest.fixture
def login(tmp_path: Path) -> Iterator[Login3]:
    from fhir_server.auth.login import Login
    from fhir_server.auth.server import AuthServices
    from fhir_server.config import Settings, normalise_database_url
    from fhir_server.storage.database import open_database
    from fhir_server.storage.migrate import upgrade
    from fhir_server.storage.repository import Repository
    from tests.conftest import drop_database, fresh_database_url

    url = fresh_database_url(tmp_path, "totp")
    settings = Settings(database_url=url, data_dir=tmp_path, secret_key=b"k" * 32).resolved()
    db = open_database(normalise_database_url(url))
    try:
        upgrade(db)
        services = AuthServices.build(settings, Repository(db))
        account = services.accounts.create_staff(
            role="admin", username="anna", password="correct horse battery", fhir_user=None
        )
        secret = services.accounts.enrol_totp(account.account_id)
        yield Login(services), account.account_id, secret
    finally:
        db.dispose()
        drop_database(url)


@pytest.mark.db
def test_a_code_is_accepted_once_then_refused_as_replayed(login: Login3) -> None:
    checks, account_id, secret = login
    key = secret_bytes(secret)
    now = 1_900_000_015.0
    code = totp(key, now)
    assert checks.check_totp(account_id, code, "192.0.2.1", now) is None
    # RFC 6238 5.2: the same code again, within its own 30 s or a step later, is refused.
    assert checks.check_totp(account_id, code, "192.0.2.1", now) == "error_totp_used"
    assert checks.check_totp(account_id, code, "192.0.2.1", now + PERIOD) == "error_totp_used"
    # An older code, still inside the drift window, was overtaken by the accepted one.
    older = totp(key, now - PERIOD)
    assert checks.check_totp(account_id, older, "192.0.2.1", now + 1) == "error_totp_used"
    # The next step's code works.
    assert checks.check_totp(account_id, totp(key, now + PERIOD), "192.0.2.1", now + 1) is None


@pytest.mark.db
def test_five_wrong_codes_lock_the_account(login: Login3) -> None:
    import time

    checks, account_id, secret = login
    key, now = secret_bytes(secret), time.time()
    good = totp(key, now)
    near = {totp(key, now + d * PERIOD) for d in (-2, -1, 0, 1, 2)}
    wrong = next(c for c in ("000000", "111111", "222222") if c not in near)
    for _ in range(5):
        assert checks.check_totp(account_id, wrong, "192.0.2.1", now) == "error_totp_invalid"
    assert checks.check_totp(account_id, good, "192.0.2.1", now) == "error_totp_locked"


@pytest.mark.db
def test_malformed_input_counts_as_a_wrong_code(login: Login3) -> None:
    checks, account_id, _ = login
    assert checks.check_totp(account_id, "abc", "192.0.2.1") == "error_totp_invalid"
    assert checks.check_totp(account_id, "", "192.0.2.1") == "error_totp_invalid"


@pytest.mark.db
def test_no_code_passes_once_totp_is_removed_or_the_account_disabled(login: Login3) -> None:
    checks, account_id, secret = login
    accounts = checks.services.accounts
    accounts.set_disabled(account_id, True)
    assert checks.check_totp(account_id, code_now(secret), "192.0.2.1") == "error_totp_invalid"
    accounts.set_disabled(account_id, False)
    assert accounts.remove_totp(account_id) is True
    assert accounts.remove_totp(account_id) is False  # nothing left to remove
    assert checks.check_totp(account_id, code_now(secret), "192.0.2.1") == "error_totp_invalid"
    assert accounts.get(account_id).totp is False


def code_now(secret: str) -> str:
    import time

    return totp(secret_bytes(secret), time.time())
