"""Outbound safety and delivery helpers, against a real receiver on 127.0.0.1."""

from __future__ import annotations

import pytest

from rocketd.capabilities.webhooks.dispatcher import Breakers, retry_delay
from rocketd.capabilities.webhooks.model import parse_webhook
from rocketd.capabilities.webhooks.outbound import DeliveryPolicy, RefusedTarget, Sender
from rocketd.config import WebhookSettings
from tests.support.receiver import Receiver


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "::1",
        "fe80::1",
        "fd00:ec2::254",
        "::ffff:127.0.0.1",
        "224.0.0.1",
    ],
)
def test_non_global_addresses_are_refused_by_default(address: str) -> None:
    with pytest.raises(RefusedTarget):
        DeliveryPolicy(WebhookSettings()).check_address(address)


def test_allow_networks_opens_chosen_ranges_only() -> None:
    policy = DeliveryPolicy(WebhookSettings(allow_networks=("127.0.0.0/8",)))
    policy.check_address("127.0.0.1")
    policy.check_address("8.8.8.8")
    with pytest.raises(RefusedTarget):
        policy.check_address("10.0.0.1")


def test_env_templates_resolve_only_the_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROCKET_WEBHOOK_KEY", "k1")
    monkeypatch.setenv("DATABASE_PASSWORD", "db-secret")
    policy = DeliveryPolicy(WebhookSettings())
    headers = {"A": "Bearer {{env.ROCKET_WEBHOOK_KEY}}!", "B": "{{ env.DATABASE_PASSWORD }}"}
    assert policy.resolve_headers(headers) == {"A": "Bearer k1!", "B": ""}
    assert policy.sign(b"x") is None
    assert (DeliveryPolicy(WebhookSettings(secret="s")).sign(b"x") or "").startswith("sha256=")


async def test_names_resolving_to_refused_addresses_are_not_connected() -> None:
    receiver = await Receiver().start()
    sender = Sender(DeliveryPolicy(WebhookSettings()))
    try:
        for url in (f"http://localhost:{receiver.port}/h", receiver.url):
            outcome = await sender.send("POST", url, {}, b"{}", "wh_1", timeout=2)
            assert outcome.status == 0 and "refused" in outcome.error, outcome
        assert receiver.received == []
    finally:
        await sender.close()
        await receiver.stop()


async def test_response_bodies_are_capped_and_errors_reported() -> None:
    receiver = await Receiver(body="x" * 10_000, status=201).start()
    settings = WebhookSettings(allow_networks=("127.0.0.0/8",), max_response_bytes=100)
    sender = Sender(DeliveryPolicy(settings))
    try:
        outcome = await sender.send("PUT", receiver.url, {"X-A": "1"}, b"{}", "wh_1", timeout=2)
        assert outcome.ok and outcome.status == 201 and outcome.body == "x" * 100
        assert receiver.received[0].method == "PUT"
        assert receiver.received[0].headers["X-A"] == "1"
        receiver.status = 404
        outcome = await sender.send("GET", receiver.url, {}, b"{}", "wh_1", timeout=2)
        assert not outcome.ok and outcome.error == "HTTP 404"
        port = receiver.port
        await receiver.stop()
        url = f"http://127.0.0.1:{port}/gone"
        outcome = await sender.send("POST", url, {}, b"{}", "wh_1", timeout=2)
        assert outcome.status == 0 and outcome.error  # a stale keep-alive or a refused connect
    finally:
        await sender.close()
        await receiver.stop()


def test_retry_delays_follow_the_spec() -> None:
    assert [retry_delay(30, "exponential", a) for a in (1, 2, 3)] == [30, 120, 240]
    assert [retry_delay(30, "linear", a) for a in (1, 2, 3)] == [30, 60, 90]


def test_breaker_opens_after_consecutive_failures_and_probes_once() -> None:
    breakers = Breakers(threshold=2, cooldown=10)
    target = Breakers.target("https://a.example/x")
    assert target == "https://a.example:443"
    assert breakers.allow(target, 0) is None
    breakers.record(target, True, 0)
    breakers.record(target, True, 1)
    assert breakers.allow(target, 2) == pytest.approx(9)
    assert breakers.allow(target, 12) is None  # the probe
    assert breakers.allow(target, 12) is not None  # others wait for it
    breakers.record(target, False, 13)
    assert breakers.allow(target, 13) is None


def test_loaded_rows_parse_without_the_prefix_check() -> None:
    hook = parse_webhook({"entity": "a", "url": "https://x", "headers": {"K": "{{env.X}}"}}, "")
    assert hook.is_async and hook.headers == {"K": "{{env.X}}"}
