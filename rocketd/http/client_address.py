"""Who is on the other end: the client address of a request, for throttling, audit and rate limits.

The address is the TCP peer's, unless the peer is one of `server.trusted_proxies`: then the
`X-Forwarded-For` list is walked from the right (the hop the nearest proxy added) past every hop
that is itself a trusted proxy, and the first other hop is the client. Hops to the left of it were
written by the client or by proxies we do not know, so they are never believed. A hop that is not
an IP address stops the walk at the last trusted proxy (a proxy that writes garbage is no witness).

Addresses come out normalised: no port, no brackets, IPv4-mapped IPv6 as plain IPv4. Nothing here
blocks or logs; callers decide what the address means to them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from functools import lru_cache

from aiohttp import web

from rocketd.http.keys import SERVICES

FORWARDED_FOR = "X-Forwarded-For"
# What a request without a TCP peer (a Unix socket, a test transport) is counted as.
UNKNOWN_PEER = "unknown"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@lru_cache(maxsize=8)
def trusted_networks(cidrs: tuple[str, ...]) -> tuple[Network, ...]:
    """The parsed `server.trusted_proxies` (checked by the config loader already)."""
    return tuple(ipaddress.ip_network(c.strip(), strict=False) for c in cidrs)


def parse_address(text: str) -> Address | None:
    """An IP address from a peer or a forwarded hop (`1.2.3.4`, `1.2.3.4:80`, `[::1]:80`, `::1`),
    or None when it is none of those."""
    text = text.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:  # IPv4 with a port; a bare IPv6 address has several colons
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _is_trusted(address: Address, networks: Sequence[Network]) -> bool:
    return any(address.version == net.version and address in net for net in networks)


def resolve_client_address(
    peer: str | None, forwarded_for: Sequence[str], networks: Sequence[Network]
) -> str:
    """The client address given the TCP peer, the `X-Forwarded-For` header values in the order
    they arrived, and the trusted proxy networks."""
    nearest = parse_address(peer or "")
    if nearest is None:
        return peer or UNKNOWN_PEER
    if not networks or not _is_trusted(nearest, networks):
        return str(nearest)
    hops = [hop for value in forwarded_for for hop in value.split(",") if hop.strip()]
    for hop in reversed(hops):
        address = parse_address(hop)
        if address is None:
            break
        nearest = address
        if not _is_trusted(address, networks):
            break
    return str(nearest)


def client_address(request: web.Request) -> str:
    """The client address of `request` under the instance's `server.trusted_proxies`."""
    networks = trusted_networks(request.app[SERVICES].settings.server.trusted_proxies)
    return resolve_client_address(
        request.remote, request.headers.getall(FORWARDED_FOR, []), networks
    )
