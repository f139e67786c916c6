"""The client's IP behind reverse proxies (fhir_server.client_address): forwarding headers
count only when the socket peer is a trusted proxy, and the list is read from the right,
believing each hop only while the machine that reported it is trusted."""

from __future__ import annotations

from pathlib import Path

import pytest

from fhir_server.client_address import FORWARDED, Network, client_address, parse_trusted_proxies
from fhir_server.config import Settings

PROXIES = parse_trusted_proxies("10.0.0.0/8, 192.0.2.10, 2001:db8::/32")


@pytest.mark.parametrize(
    ("peer", "xff", "trusted", "expected"),
    [
        # No proxy trusted (the default): the headers are ignored, whatever they say.
        ("203.0.113.7", ["1.2.3.4"], (), "203.0.113.7"),
        ("10.0.0.5", ["1.2.3.4"], (), "10.0.0.5"),
        # A peer that is not a trusted proxy cannot choose its address.
        ("203.0.113.7", ["1.2.3.4"], PROXIES, "203.0.113.7"),
        ("203.0.113.7", ["10.0.0.1"], PROXIES, "203.0.113.7"),
        # One trusted proxy: the address it appended.
        ("10.0.0.5", ["198.51.100.9"], PROXIES, "198.51.100.9"),
        # A client's own X-Forwarded-For is kept by the proxy on the left: never believed.
        ("10.0.0.5", ["6.6.6.6, 198.51.100.9"], PROXIES, "198.51.100.9"),
        ("10.0.0.5", ["6.6.6.6", "198.51.100.9"], PROXIES, "198.51.100.9"),  # two lines
        # A chain of trusted proxies is walked through to the first untrusted hop.
        ("10.0.0.5", ["6.6.6.6, 198.51.100.9, 192.0.2.10, 10.1.2.3"], PROXIES, "198.51.100.9"),
        # ... but a forged "trusted" hop behind an untrusted one is not: the walk stops
        # at the first address whose report we cannot trust.
        ("10.0.0.5", ["10.9.9.9, 198.51.100.9"], PROXIES, "198.51.100.9"),
        # Every hop trusted: the left-most is the best there is.
        ("10.0.0.5", ["10.0.0.9, 192.0.2.10"], PROXIES, "10.0.0.9"),
        # A trusted proxy with no header: the proxy itself.
        ("10.0.0.5", [], PROXIES, "10.0.0.5"),
        # Garbage or "unknown" ends the walk at the last real address.
        ("10.0.0.5", ["unknown"], PROXIES, "10.0.0.5"),
        ("10.0.0.5", ["198.51.100.9, <script>"], PROXIES, "10.0.0.5"),
        ("10.0.0.5", ["nonsense, 10.0.0.7"], PROXIES, "10.0.0.7"),
        # Ports, brackets and IPv6.
        ("10.0.0.5", ["198.51.100.9:54321"], PROXIES, "198.51.100.9"),
        ("10.0.0.5", ["[2001:db9::1]:443"], PROXIES, "2001:db9::1"),
        ("2001:db8::5", ["2001:db9::1"], PROXIES, "2001:db9::1"),
        ("10.0.0.5", ["::ffff:198.51.100.9"], PROXIES, "198.51.100.9"),
        ("::ffff:10.0.0.5", ["198.51.100.9"], PROXIES, "198.51.100.9"),
        # Not an IP peer at all (a test client): passed through untouched.
        ("testclient", ["198.51.100.9"], PROXIES, "testclient"),
        (None, ["198.51.100.9"], PROXIES, None),
    ],
)
def test_x_forwarded_for(
    peer: str | None, xff: list[str], trusted: tuple[Network, ...], expected: str | None
) -> None:
    assert client_address(peer, xff, trusted) == expected


@pytest.mark.parametrize(
    ("forwarded", "expected"),
    [
        # RFC 7239 section 4 examples.
        (['for="_gazonk"'], "10.0.0.5"),  # obfuscated: nothing better than the proxy
        (['For="[2001:db8:cafe::17]:4711"'], "2001:db8:cafe::17"),
        (["for=192.0.2.60;proto=http;by=203.0.113.43"], "192.0.2.60"),
        (["for=192.0.2.43, for=198.51.100.17"], "198.51.100.17"),
        (["for=192.0.2.43", "for=198.51.100.17;by=10.0.0.5"], "198.51.100.17"),
        (["for=198.51.100.17, for=10.0.0.9"], "198.51.100.17"),
        (["proto=https"], "10.0.0.5"),
    ],
)
def test_rfc7239_forwarded(forwarded: list[str], expected: str) -> None:
    assert client_address("10.0.0.5", forwarded, PROXIES, FORWARDED) == expected
    # Not trusted: the header means nothing.
    assert client_address("203.0.113.1", forwarded, PROXIES, FORWARDED) == "203.0.113.1"


def test_settings_read_the_trusted_proxies(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SELFBACK_TRUSTED_PROXIES", " 10.0.0.0/8 ,192.0.2.10,, ::1 ")
    monkeypatch.setenv("SELFBACK_FORWARDED_HEADER", "Forwarded")
    settings = Settings.from_env(data_dir=tmp_path)
    assert [str(n) for n in settings.trusted_proxies] == ["10.0.0.0/8", "192.0.2.10/32", "::1/128"]
    assert settings.forwarded_header == FORWARDED
    monkeypatch.delenv("SELFBACK_TRUSTED_PROXIES")
    monkeypatch.delenv("SELFBACK_FORWARDED_HEADER")
    default = Settings.from_env(data_dir=tmp_path)
    assert default.trusted_proxies == () and default.forwarded_header == "x-forwarded-for"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SELFBACK_TRUSTED_PROXIES", "10.0.0.0/8, proxy.example"),
        ("SELFBACK_TRUSTED_PROXIES", "10.0.0.300"),
        ("SELFBACK_FORWARDED_HEADER", "x-real-ip"),
    ],
)
def test_settings_refuse_what_they_cannot_use(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=name):
        Settings.from_env(data_dir=tmp_path)
