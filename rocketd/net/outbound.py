"""The one outbound-connection policy: what a tenant-configured host may resolve to.

Every capability that connects somewhere an app admin chose (webhook targets today; SMTP servers,
identity providers and connectors next) goes through this module, so the SSRF rules are written
once (upstream-gaps S16):

* the target is vetted on the address actually connected to: host names are resolved by
  `VettingResolver` (an aiohttp resolver), every resolved address must be global or inside the
  allowed networks, and the connection goes to the vetted address (TLS still checks the name);
* a literal IP host is vetted before the request (`check_host`);
* one refused address refuses the whole name: a name pointing at both is an attack, not a
  fallback.

The allowed networks are `outbound.allow_networks` plus, for webhooks, the older
`webhooks.allow_networks` (both apply to webhook targets).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from typing import Final

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

SETTING_HINT: Final = "outbound.allow_networks"


class RefusedTarget(OSError):
    """The target resolves to an address tenant-configured connections may not reach."""


class AddressPolicy:
    """Which addresses outbound connections may reach: global unicast ones, plus the networks
    the operator opened (a private relay, a test receiver on loopback)."""

    def __init__(self, allow_networks: Iterable[str] = (), hint: str = SETTING_HINT) -> None:
        self.allowed: tuple[IpNetwork, ...] = tuple(
            ipaddress.ip_network(text, strict=False) for text in allow_networks
        )
        self.hint = hint

    def check_address(self, text: str) -> None:
        """Raise `RefusedTarget` for an address that is not allowed; `ValueError` when `text` is
        not an IP address at all (a host name: the resolver vets it)."""
        address: IpAddress = ipaddress.ip_address(text.split("%", 1)[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in network for network in self.allowed):
            return
        if not address.is_global or address.is_multicast:
            raise RefusedTarget(
                f"refused: {text} is a loopback, private, link-local, metadata or reserved "
                f"address (allow it with {self.hint})"
            )

    def check_host(self, host: str) -> None:
        """Vet a literal IP host now; a name is left to the resolver, at connect time."""
        try:
            self.check_address(host.strip("[]"))
        except ValueError:
            return

    def connector(self, *, limit: int = 100, ttl_dns_cache: int = 10) -> aiohttp.TCPConnector:
        """An aiohttp connector whose every resolution goes through this policy."""
        return aiohttp.TCPConnector(
            resolver=VettingResolver(self), limit=limit, ttl_dns_cache=ttl_dns_cache
        )

    async def resolve(self, host: str, port: int) -> list[str]:
        """The vetted addresses of `host` (for clients that are not aiohttp, e.g. SMTP)."""
        resolver = VettingResolver(self)
        try:
            return [r["host"] for r in await resolver.resolve(host, port, socket.AF_UNSPEC)]
        finally:
            await resolver.close()


class VettingResolver(AbstractResolver):
    """Resolves like aiohttp's default resolver, then vets every address it found."""

    def __init__(self, policy: AddressPolicy) -> None:
        self._policy = policy
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            self._policy.check_address(result["host"])
        return results

    async def close(self) -> None:
        await self._inner.close()
