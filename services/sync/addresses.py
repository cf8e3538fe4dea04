"""Which network addresses a destination may point at (server-side request forgery).

A destination's URL is written by an operator, but sync POSTs personal data to it from inside
the cluster: a URL that reaches the cloud's metadata service (169.254.169.254 and the rest of
the link-local ranges, where instance credentials live) or an unspecified address (0.0.0.0, ::,
which reaches the host itself) is refused. Loopback stays allowed: the local stack and the tests
run their destinations there.

Checked twice: when the destinations file is loaded (a literal address, and what a host name
resolves to then: `refusal`), and at every new connection (`http_client.GuardedBackend`
resolves the host itself, refuses if any address is refused and connects to the address it
checked), so a name that resolves to a public address at load and to the metadata service
later (DNS rebinding) is still refused. Redirects are never followed (a 3xx is a failed
attempt), so a destination cannot bounce a request elsewhere either.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Metadata services outside the link-local ranges: AWS's IPv6 one (a unique local address) and
# Alibaba Cloud's (a carrier-grade NAT address). Their neighbours are private addresses a
# destination inside the network may legitimately have.
METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address("fd00:ec2::254"), ipaddress.ip_address("100.100.100.200")}
)


NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052's well-known prefix


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries to where it goes: mapped (::ffff:a.b.c.d),
    NAT64 (64:ff9b::a.b.c.d), 6to4 (2002:aabb:ccdd::), Teredo (its server's client address) or
    the deprecated compatible form (::a.b.c.d); None for a plain IPv6 address."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    packed = int(address)
    if 1 < packed <= 0xFFFFFFFF:  # ::a.b.c.d (not :: or ::1)
        return ipaddress.IPv4Address(packed)
    return None


def refusal(address: IpAddress) -> str | None:
    """Why a destination may not be reached at `address`, or None when it may. An IPv6 address
    that carries an IPv4 one (`embedded_ipv4`) is judged by where it goes:
    ::ffff:169.254.169.254 and 64:ff9b::a9fe:a9fe are 169.254.169.254."""
    inner = embedded_ipv4(address) if isinstance(address, ipaddress.IPv6Address) else None
    if inner is not None and (reason := refusal(inner)) is not None:
        return f"{address} carries {reason}"
    if address.is_unspecified:
        return f"{address} is the unspecified address (it reaches this host)"
    if address.is_link_local:
        return f"{address} is link-local (where the cloud's metadata service answers)"
    if address in METADATA_ADDRESSES:
        return f"{address} is a cloud metadata service"
    if address.is_multicast:
        return f"{address} is a multicast address"
    return None


def literal_address(host: str) -> IpAddress | None:
    """The address `host` is written as (`[::1]` too), or None for a host name."""
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def first_refusal(addresses: Iterable[str]) -> str | None:
    """The reason to refuse the first refused one of `addresses` (as getaddrinfo gives them)."""
    for text in addresses:
        address = literal_address(text)
        if address is not None and (reason := refusal(address)) is not None:
            return reason
    return None
