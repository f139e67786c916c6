"""The client's IP address, seen through the reverse proxies this installation trusts.

Per-IP sign-in limits and the audit trail's ``network.address`` need the address of the
person's machine. Behind a reverse proxy the socket peer is the proxy, so the proxy's
report is read instead -- but only when the peer *is* a proxy named in
``SELFBACK_TRUSTED_PROXIES``; anyone else could write any header they like.

The proxies append to one header: ``X-Forwarded-For`` (the de-facto standard) or RFC 7239
``Forwarded`` (its ``for=`` parameters), as ``SELFBACK_FORWARDED_HEADER`` says. Only that
one header is read, since a proxy that writes the other passes a client's forgery of it
along untouched. The list is read from the right: each hop was added by the machine that
received the request from it, so an address is believed only while the machine that
reported it is trusted. The first address that is not a trusted proxy is the client
(RFC 7239 section 7.4: the client's own entries on the left may be forged).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

X_FORWARDED_FOR = "x-forwarded-for"
FORWARDED = "forwarded"
FORWARDED_HEADERS = (X_FORWARDED_FOR, FORWARDED)

# RFC 7239 section 4: forwarded-pair = token "=" value, value a token or a quoted-string.
_FORWARDED_FOR = re.compile(r'(?:^|[;,\s])for\s*=\s*("(?:[^"\\]|\\.)*"|[^;,\s]*)', re.IGNORECASE)


def parse_trusted_proxies(text: str) -> tuple[Network, ...]:
    """``"10.0.0.0/8, 192.0.2.7, ::1"`` as networks (a bare address is a /32 or /128).
    Raises ValueError naming the entry that is neither an address nor a network."""
    networks: list[Network] = []
    for entry in text.split(","):
        entry = entry.strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError as exc:
            raise ValueError(
                f"SELFBACK_TRUSTED_PROXIES: {entry!r} is not an IP address or network"
            ) from exc
    return tuple(networks)


def client_address(
    peer: str | None,
    header_values: Sequence[str],
    trusted: Sequence[Network],
    header: str = X_FORWARDED_FOR,
) -> str | None:
    """The client's address: ``peer`` (the socket's), or the right-most hop of the
    forwarding header that is not a trusted proxy, when ``peer`` is one.

    ``header_values`` are every value of ``header`` in the order received (a proxy may add
    a header line instead of extending the last one). A hop that is not an IP address
    (``unknown``, an RFC 7239 obfuscated ``_name``, garbage) ends the walk: the last
    address known is the best there is."""
    current = _address(peer)
    if current is None or not trusted:
        return peer
    hops = list(_hops(header_values, header))
    while hops and _is_trusted(current, trusted):
        reported = _address(hops.pop())
        if reported is None:
            break
        current = reported
    return str(current)


def _hops(values: Iterable[str], header: str) -> Iterable[str]:
    for value in values:
        if header == FORWARDED:
            yield from (m.group(1) for m in _FORWARDED_FOR.finditer(value))
        else:
            yield from (part for part in value.split(","))


def _address(text: str | None) -> Address | None:
    """An IP address from a hop as proxies write it: bare, ``"quoted"``, ``[v6]``, with a
    ``:port`` after an IPv4 address or a bracketed IPv6 one."""
    if not text:
        return None
    value = text.strip().strip('"').strip()
    if value.startswith("["):
        value = value[1 : value.find("]")] if "]" in value else ""
    elif value.count(":") == 1:
        value = value.split(":", 1)[0]  # IPv4 with a port
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # ::ffff:192.0.2.1 is the IPv4 client of a dual stack
    return address


def _is_trusted(address: Address, trusted: Sequence[Network]) -> bool:
    return any(address.version == net.version and address in net for net in trusted)
