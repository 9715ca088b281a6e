"""The login throttle's decisions (pure: counter, limit, now) and the client address rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rocketd.auth.throttle import (
    EMPTY,
    Counter,
    Limit,
    LoginThrottle,
    account_key,
    address_key,
    blocked_until,
    expires_at,
    forget_failure,
    record_failure,
    remaining,
    resets_at,
)
from rocketd.config import LoginThrottleSettings
from rocketd.http.client_address import parse_address, resolve_client_address, trusted_networks

T0 = datetime(2026, 1, 1, tzinfo=UTC)
S = timedelta(seconds=1)
MINUTES_15 = timedelta(minutes=15)


class NoStore:
    async def update(self, keys: object, change: object) -> object:
        raise AssertionError("not used")

    async def purge(self) -> int:
        return 0


def default_limits() -> tuple[Limit, Limit]:
    throttle = LoginThrottle(NoStore(), LoginThrottleSettings())
    return throttle.account_limit, throttle.address_limit


ACCOUNT, ADDRESS = default_limits()


def fail(counter: Counter, limit: Limit, at: datetime, times: int = 1) -> Counter:
    for _ in range(times):
        assert blocked_until(counter, limit, at) is None
        counter = record_failure(counter, limit, at)
    return counter


def test_defaults_are_ten_per_fifteen_minutes_then_30_s_doubling_to_15_min() -> None:
    assert ACCOUNT == Limit(10, MINUTES_15, 30 * S, 900 * S)
    assert ADDRESS == Limit(100, MINUTES_15)
    assert [ACCOUNT.backoff(level) for level in range(7)] == [
        30 * S,
        60 * S,
        120 * S,
        240 * S,
        480 * S,
        900 * S,
        900 * S,
    ]
    assert ACCOUNT.backoff(10_000) == 900 * S  # no overflow however long the streak


def test_account_locks_at_the_tenth_failure_for_30_seconds() -> None:
    counter = fail(EMPTY, ACCOUNT, T0, 9)
    assert blocked_until(counter, ACCOUNT, T0) is None
    assert remaining(counter, ACCOUNT, T0) == 1
    counter = record_failure(counter, ACCOUNT, T0 + S)
    assert blocked_until(counter, ACCOUNT, T0 + S) == T0 + 31 * S
    assert remaining(counter, ACCOUNT, T0 + S) == 0
    assert resets_at(counter, ACCOUNT, T0 + S) == T0 + 31 * S
    assert blocked_until(counter, ACCOUNT, T0 + 31 * S) is None


def test_failures_older_than_the_window_do_not_count() -> None:
    counter = fail(EMPTY, ACCOUNT, T0, 9)
    later = T0 + MINUTES_15 + S
    counter = fail(counter, ACCOUNT, later)
    assert blocked_until(counter, ACCOUNT, later) is None
    assert remaining(counter, ACCOUNT, later) == 9


def test_each_failure_after_a_backoff_doubles_it_up_to_the_cap() -> None:
    counter = fail(EMPTY, ACCOUNT, T0, 10)
    waits = []
    now = T0
    for _ in range(8):
        until = blocked_until(counter, ACCOUNT, now)
        assert until is not None
        waits.append(until - now)
        now = until  # the first moment the account answers again
        assert remaining(counter, ACCOUNT, now) == 1  # in a streak: one try, then locked again
        counter = record_failure(counter, ACCOUNT, now)
    assert waits == [30 * S, 60 * S, 120 * S, 240 * S, 480 * S, 900 * S, 900 * S, 900 * S]


def test_a_quiet_window_after_the_backoff_ends_the_streak() -> None:
    counter = fail(EMPTY, ACCOUNT, T0, 10)
    assert counter.locked_until == T0 + 30 * S
    quiet = T0 + 30 * S + MINUTES_15
    counter = record_failure(counter, ACCOUNT, quiet)
    assert blocked_until(counter, ACCOUNT, quiet) is None
    assert counter.level == 0
    assert remaining(counter, ACCOUNT, quiet) == 9


def test_the_address_blocks_until_its_oldest_counted_failure_leaves_the_window() -> None:
    counter = EMPTY
    for i in range(100):
        counter = fail(counter, ADDRESS, T0 + i * S)
    now = T0 + 100 * S
    assert blocked_until(counter, ADDRESS, now) == T0 + MINUTES_15
    assert remaining(counter, ADDRESS, now) == 0
    # It opens when the first failure is 15 minutes old: one more, then blocked again.
    opened = T0 + MINUTES_15
    assert blocked_until(counter, ADDRESS, opened) is None
    counter = record_failure(counter, ADDRESS, opened)
    assert blocked_until(counter, ADDRESS, opened) == T0 + S + MINUTES_15
    assert len(counter.failures) == 100  # never more than the limit kept


def test_a_success_forgets_its_reserved_failure_only() -> None:
    counter = fail(EMPTY, ADDRESS, T0, 1)
    counter = fail(counter, ADDRESS, T0 + S)
    assert forget_failure(counter, T0 + S).failures == (T0,)
    assert forget_failure(counter, T0 + 5 * S) == counter


def test_counters_expire_when_they_mean_nothing_any_more() -> None:
    assert expires_at(EMPTY, ACCOUNT) is None
    counter = fail(EMPTY, ADDRESS, T0)
    assert expires_at(counter, ADDRESS) == T0 + MINUTES_15
    locked = fail(EMPTY, ACCOUNT, T0, 10)
    # The streak is remembered for a window after the backoff ends.
    assert expires_at(locked, ACCOUNT) == T0 + 30 * S + MINUTES_15


def test_account_keys_ignore_case_and_have_a_fixed_size() -> None:
    assert account_key("platform", "U1@X.io") == account_key("platform", "u1@x.io")
    assert account_key("app:a", "u1@x.io") != account_key("app:b", "u1@x.io")
    assert len(account_key("platform", "x" * 100_000)) == len(account_key("platform", "a"))
    assert "u1@x.io" not in account_key("platform", "u1@x.io")


def test_ipv6_addresses_count_per_64_network() -> None:
    assert address_key("2001:db8:1:2::1") == address_key("2001:db8:1:2:ffff::9")
    assert address_key("2001:db8:1:2::1") != address_key("2001:db8:1:3::1")
    assert address_key("203.0.113.5") == "address:203.0.113.5"


# --- client address ------------------------------------------------------------------------------

PROXIES = trusted_networks(("10.0.0.0/8", "2001:db8::/32"))


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        # No trusted proxy in the way: the peer, whatever the header says.
        ("203.0.113.5", ["198.51.100.1"], "203.0.113.5"),
        # Through a trusted proxy: the hop it added.
        ("10.0.0.2", ["198.51.100.1"], "198.51.100.1"),
        # A client-made prefix is ignored: walk from the right past trusted proxies only.
        ("10.0.0.2", ["1.1.1.1, 198.51.100.1, 10.0.0.9"], "198.51.100.1"),
        ("10.0.0.2", ["1.1.1.1", "198.51.100.1, 10.0.0.9"], "198.51.100.1"),
        # Through a trusted proxy that sent no header: the proxy itself.
        ("10.0.0.2", [], "10.0.0.2"),
        # Every hop trusted: the leftmost.
        ("10.0.0.2", ["10.1.1.1, 10.0.0.9"], "10.1.1.1"),
        # Garbage where an address belongs: the last trusted hop before it.
        ("10.0.0.2", ["198.51.100.1, not-an-ip"], "10.0.0.2"),
        # Ports, brackets, IPv4-mapped IPv6.
        ("10.0.0.2", ["198.51.100.1:4711"], "198.51.100.1"),
        ("10.0.0.2", ["[2001:db9::1]:443"], "2001:db9::1"),
        ("::ffff:10.0.0.2", ["198.51.100.1"], "198.51.100.1"),
        ("2001:db8::5", ["2001:db9::1"], "2001:db9::1"),
        # No TCP peer at all.
        (None, ["198.51.100.1"], "unknown"),
    ],
)
def test_client_address_walks_forwarded_for_from_the_right(
    peer: str | None, forwarded: list[str], expected: str
) -> None:
    assert resolve_client_address(peer, forwarded, PROXIES) == expected


def test_without_trusted_proxies_the_header_is_never_believed() -> None:
    assert resolve_client_address("10.0.0.2", ["198.51.100.1"], ()) == "10.0.0.2"


def test_parse_address_refuses_what_is_not_an_address() -> None:
    assert parse_address("example.com") is None
    assert parse_address("[::1") is None
    assert str(parse_address(" 127.0.0.1 ")) == "127.0.0.1"
