"""The one outbound policy: tenant-configured hosts reach global addresses only, unless the
operator opened a network; names are vetted on what they resolve to."""

from __future__ import annotations

import pytest

from rocketd.net.outbound import AddressPolicy, RefusedTarget


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "192.168.0.10",
        "169.254.169.254",  # cloud metadata
        "::1",
        "fd00::1",
        "::ffff:127.0.0.1",  # v4-mapped loopback
        "224.0.0.1",
        "0.0.0.0",
    ],
)
def test_non_global_addresses_are_refused_by_default(address: str) -> None:
    with pytest.raises(RefusedTarget, match=r"outbound\.allow_networks"):
        AddressPolicy().check_address(address)


def test_global_addresses_pass() -> None:
    AddressPolicy().check_address("93.184.216.34")
    AddressPolicy().check_address("2606:2800:220:1:248:1893:25c8:1946")


def test_an_opened_network_passes_and_only_it() -> None:
    policy = AddressPolicy(["127.0.0.0/8"])
    policy.check_address("127.0.0.1")
    with pytest.raises(RefusedTarget):
        policy.check_address("10.0.0.1")


def test_a_host_name_is_left_to_the_resolver_a_literal_is_not() -> None:
    AddressPolicy().check_host("example.com")
    with pytest.raises(RefusedTarget):
        AddressPolicy().check_host("[::1]")


async def test_resolving_a_name_vets_every_address() -> None:
    with pytest.raises(RefusedTarget):
        await AddressPolicy().resolve("localhost", 25)
    assert "127.0.0.1" in await AddressPolicy(["127.0.0.0/8", "::1/128"]).resolve("localhost", 25)
