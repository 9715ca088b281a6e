"""Login throttling over real HTTP: platform login, app login and invite acceptance, per account
and per client address, with the state in the management database shared by two instances."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import psycopg
import pytest

from rocketd.config import LoginThrottleSettings, RedisSettings, Settings
from rocketd.http.app import create_app
from rocketd.runtime import Runtime
from tests.support.apps import AppClient, new_app
from tests.support.databases import dsn_for, unique_name
from tests.support.helpers import error_of

PLATFORM_LOGIN = "/api/_platform/auth/login"
PLATFORM_EMAIL = "platform@localhost"
RIGHT = "changeme"
WRONG = "wrong-password"
RATE_HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")

MakeClient = Callable[..., Awaitable[Any]]


def with_throttle(
    settings: Settings,
    proxies: tuple[str, ...] = (),
    redis_url: str = "",
    redis_prefix: str = "rocketd:",
    **throttle: Any,
) -> Settings:
    return dataclasses.replace(
        settings,
        server=dataclasses.replace(settings.server, trusted_proxies=proxies),
        redis=RedisSettings(url=redis_url, key_prefix=redis_prefix),
        auth=dataclasses.replace(settings.auth, login_throttle=LoginThrottleSettings(**throttle)),
    )


@pytest.fixture
async def make_client(settings: Settings, aiohttp_client: Any) -> AsyncIterator[MakeClient]:
    """Start a Runtime on the test's management database with these throttle settings and
    return an HTTP client for it; several calls make several instances on one database."""
    runtimes: list[Runtime] = []

    async def make(**options: Any) -> Any:
        runtime = Runtime(with_throttle(settings, **options))
        runtimes.append(runtime)
        await runtime.start(http=False)
        assert runtime.services is not None
        return await aiohttp_client(create_app(runtime.services))

    yield make
    for runtime in runtimes:
        await runtime.stop()


def management(pg_dsn: str, management_db: str) -> psycopg.Connection[Any]:
    return psycopg.connect(dsn_for(pg_dsn, management_db), autocommit=True)


def counters(pg_dsn: str, management_db: str, kind: str) -> list[tuple[Any, ...]]:
    with management(pg_dsn, management_db) as conn:
        return conn.execute(
            "select key, failures, level, locked_until from _login_throttle"
            " where key like %s order by key",
            (f"{kind}%",),
        ).fetchall()


def end_backoffs(pg_dsn: str, management_db: str) -> None:
    """What waiting out the current backoffs does, without the wait."""
    with management(pg_dsn, management_db) as conn:
        conn.execute(
            "update _login_throttle set locked_until = clock_timestamp() - interval '1 ms'"
            " where locked_until is not null"
        )


async def platform_login(
    client: Any, email: str = PLATFORM_EMAIL, password: str = RIGHT, via: str | None = None
) -> Any:
    headers = {"X-Forwarded-For": via} if via else None
    return await client.post(
        PLATFORM_LOGIN, json={"email": email, "password": password}, headers=headers
    )


async def assert_rate_limited(resp: Any, limit: int) -> int:
    """The 429 shape; returns Retry-After."""
    assert resp.status == 429, await resp.text()
    err = await error_of(resp)
    assert err["code"] == "RATE_LIMITED"
    assert err["message"].startswith("Too many failed attempts; try again in ")
    retry_after = int(resp.headers["Retry-After"])
    assert retry_after >= 1
    assert resp.headers["RateLimit-Limit"] == str(limit)
    assert resp.headers["RateLimit-Remaining"] == "0"
    assert resp.headers["RateLimit-Reset"] == str(retry_after)
    return retry_after


# --- the defaults --------------------------------------------------------------------------------


async def test_defaults_lock_an_account_after_ten_failures_then_double_the_backoff(
    client: Any, pg_dsn: str, management_db: str
) -> None:
    for attempt in range(10):
        resp = await platform_login(client, password=WRONG)
        assert resp.status == 401
        assert resp.headers["RateLimit-Limit"] == "10"
        assert resp.headers["RateLimit-Remaining"] == str(9 - attempt)
    # Locked: the right password gets the same answer as a wrong one.
    retry_after = await assert_rate_limited(await platform_login(client), 10)
    assert 1 <= retry_after <= 30
    assert await assert_rate_limited(await platform_login(client, password=WRONG), 10) <= 30
    # The backoff over, one more failure locks again for twice as long.
    end_backoffs(pg_dsn, management_db)
    assert (await platform_login(client, password=WRONG)).status == 401
    assert 30 < await assert_rate_limited(await platform_login(client), 10) <= 60
    end_backoffs(pg_dsn, management_db)
    assert (await platform_login(client, password=WRONG)).status == 401
    assert 60 < await assert_rate_limited(await platform_login(client), 10) <= 120
    # A success ends the streak and clears the account's counter.
    end_backoffs(pg_dsn, management_db)
    assert (await platform_login(client)).status == 200
    assert counters(pg_dsn, management_db, "account") == []
    resp = await platform_login(client, password=WRONG)
    assert resp.status == 401 and resp.headers["RateLimit-Remaining"] == "9"


# --- accounts ------------------------------------------------------------------------------------


async def test_throttled_attempts_change_nothing_and_reveal_nothing(
    make_client: MakeClient, pg_dsn: str, management_db: str
) -> None:
    client = await make_client(account_max_failures=3, backoff_initial=600)
    for _ in range(3):
        assert (await platform_login(client, password=WRONG)).status == 401
    before = counters(pg_dsn, management_db, "")
    assert [(len(failures), level) for _, failures, level, _ in before] == [(3, 1), (3, 0)]
    refused = [await platform_login(client, password=RIGHT if i % 2 else WRONG) for i in range(20)]
    bodies = set()
    for resp in refused:
        await assert_rate_limited(resp, 3)
        bodies.add((await error_of(resp))["code"])
    assert bodies == {"RATE_LIMITED"}
    # Hammering a locked account neither lengthens its lock nor counts against the address.
    assert counters(pg_dsn, management_db, "") == before


async def test_parallel_guesses_cannot_slip_past_the_limit(make_client: MakeClient) -> None:
    client = await make_client(account_max_failures=3, backoff_initial=600)
    answers = await asyncio.gather(
        *(platform_login(client, password=f"{WRONG}-{i}") for i in range(15))
    )
    statuses = sorted(resp.status for resp in answers)
    assert statuses == [401] * 3 + [429] * 12


async def test_a_success_resets_the_account_and_is_not_counted_for_the_address(
    make_client: MakeClient,
) -> None:
    client = await make_client(account_max_failures=3, address_max_failures=5)
    for _ in range(2):
        assert (await platform_login(client, password=WRONG)).status == 401
    for _ in range(6):
        assert (await platform_login(client)).status == 200
    for _ in range(2):
        assert (await platform_login(client, password=WRONG)).status == 401
    # 4 failures so far from this address (the 6 successes took their reservations back).
    resp = await platform_login(client, email="nobody@x.io", password=WRONG)
    assert resp.status == 401 and resp.headers["RateLimit-Remaining"] == "0"
    await assert_rate_limited(await platform_login(client), 5)


async def test_emails_in_any_case_share_one_account(make_client: MakeClient) -> None:
    client = await make_client(account_max_failures=3, backoff_initial=600)
    for email in ("PLATFORM@localhost", "Platform@Localhost", "platform@LOCALHOST"):
        assert (await platform_login(client, email=email, password=WRONG)).status == 401
    await assert_rate_limited(await platform_login(client), 3)


async def test_unknown_accounts_are_throttled_like_real_ones(make_client: MakeClient) -> None:
    client = await make_client(account_max_failures=2, backoff_initial=600)
    for email in (PLATFORM_EMAIL, "ghost@x.io"):
        for _ in range(2):
            assert (await platform_login(client, email=email, password=WRONG)).status == 401
        await assert_rate_limited(await platform_login(client, email=email, password=WRONG), 2)


async def test_app_accounts_are_counted_per_app(make_client: MakeClient) -> None:
    client = await make_client(account_max_failures=2, backoff_initial=600)
    first, second = await new_app(client), await new_app(client)

    async def app_login(app: AppClient, password: str) -> Any:
        return await client.post(
            app.url("auth/login"), json={"email": "admin@localhost", "password": password}
        )

    for _ in range(2):
        assert (await app_login(first, WRONG)).status == 401
    await assert_rate_limited(await app_login(first, RIGHT), 2)
    # The same email elsewhere is another account.
    assert (await app_login(second, RIGHT)).status == 200
    assert (await platform_login(client)).status == 200


# --- client addresses ----------------------------------------------------------------------------


async def test_an_address_is_refused_after_its_failures_until_the_window_passes(
    make_client: MakeClient, pg_dsn: str, management_db: str
) -> None:
    client = await make_client(proxies=("127.0.0.0/8",), address_max_failures=3)
    attacker, neighbour = "203.0.113.7", "203.0.113.8"
    for i in range(3):
        resp = await platform_login(client, email=f"u{i}@x.io", password=WRONG, via=attacker)
        assert resp.status == 401
    retry_after = await assert_rate_limited(await platform_login(client, via=attacker), 3)
    assert 890 <= retry_after <= 900
    # Another client behind the same trusted proxy, and the proxy's own address, are not.
    assert (await platform_login(client, via=neighbour)).status == 200
    assert (await platform_login(client)).status == 200
    # A hop prepended by the attacker is not believed: the proxy's hop counts.
    resp = await platform_login(client, via=f"{neighbour}, {attacker}")
    await assert_rate_limited(resp, 3)
    # When the oldest failure leaves the window the address may try again.
    with management(pg_dsn, management_db) as conn:
        conn.execute(
            "update _login_throttle set failures = array["
            "clock_timestamp() - interval '16 minutes', failures[2], failures[3]]"
            " where key = %s",
            (f"address:{attacker}",),
        )
    assert (await platform_login(client, via=attacker)).status == 200


async def test_forwarded_for_is_ignored_without_trusted_proxies(make_client: MakeClient) -> None:
    client = await make_client(address_max_failures=3)
    for i in range(3):
        resp = await platform_login(
            client, email=f"u{i}@x.io", password=WRONG, via=f"198.51.100.{i}"
        )
        assert resp.status == 401
    await assert_rate_limited(await platform_login(client, via="198.51.100.99"), 3)


async def test_invite_acceptance_is_throttled_per_address(make_client: MakeClient) -> None:
    client = await make_client(proxies=("127.0.0.0/8",), address_max_failures=3)
    app = await new_app(client)
    made = (await app.ok("POST", "_admin/invites", {"email": "new@x.io"}, 201))["data"]
    good = {"token": made["token"], "password": "a-long-and-unusual-phrase"}

    async def accept(body: dict[str, str], via: str) -> Any:
        return await client.post(
            app.url("auth/accept-invite"), json=body, headers={"X-Forwarded-For": via}
        )

    scanner = "203.0.113.66"
    for i in range(3):
        body = {"token": f"00000000-0000-4000-8000-00000000000{i}", "password": good["password"]}
        assert (await accept(body, scanner)).status == 404
    await assert_rate_limited(await accept(good, scanner), 3)
    resp = await accept(good, "203.0.113.67")
    assert resp.status == 201, await resp.text()
    # Failed logins and failed acceptances share the address's count.
    for _ in range(2):
        assert (await platform_login(client, password=WRONG, via="203.0.113.68")).status == 401
    bad = {"token": "00000000-0000-4000-8000-000000000009", "password": good["password"]}
    assert (await accept(bad, "203.0.113.68")).status == 404
    await assert_rate_limited(await platform_login(client, via="203.0.113.68"), 3)


# --- instances and switches ----------------------------------------------------------------------


async def test_two_instances_share_the_counters(
    make_client: MakeClient, pg_dsn: str, management_db: str
) -> None:
    one = await make_client(account_max_failures=3, backoff_initial=600)
    two = await make_client(account_max_failures=3, backoff_initial=600)
    for client in (one, two, one):
        assert (await platform_login(client, password=WRONG)).status == 401
    await assert_rate_limited(await platform_login(two), 3)
    await assert_rate_limited(await platform_login(one), 3)
    end_backoffs(pg_dsn, management_db)
    assert (await platform_login(two)).status == 200
    resp = await platform_login(one, password=WRONG)
    assert resp.status == 401 and resp.headers["RateLimit-Remaining"] == "2"


async def test_disabled_throttle_counts_nothing(
    make_client: MakeClient, pg_dsn: str, management_db: str
) -> None:
    client = await make_client(enabled=False, account_max_failures=1)
    for _ in range(5):
        resp = await platform_login(client, password=WRONG)
        assert resp.status == 401 and "RateLimit-Limit" not in resp.headers
    assert (await platform_login(client)).status == 200
    assert counters(pg_dsn, management_db, "") == []


async def test_expired_counters_are_purged(
    make_client: MakeClient, pg_dsn: str, management_db: str, runtime: Any
) -> None:
    client = await make_client()
    assert (await platform_login(client, password=WRONG)).status == 401
    assert len(counters(pg_dsn, management_db, "")) == 2  # the account and the address
    with management(pg_dsn, management_db) as conn:
        conn.execute("update _login_throttle set expires_at = now() - interval '1 second'")
    assert await runtime.services.login_throttle.store.purge() == 2
    assert counters(pg_dsn, management_db, "") == []


# --- counters in Redis ---------------------------------------------------------------------------

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A key prefix of this test's own on the local Redis; its keys are deleted afterwards."""
    from redis import asyncio as redis_asyncio
    from redis.exceptions import RedisError

    client = redis_asyncio.Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except RedisError:
        await client.aclose()
        pytest.skip(f"no Redis answers at {REDIS_URL}")
    prefix = f"{unique_name('rkt_test_')}:"
    try:
        yield prefix
    finally:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def redis_counters(prefix: str) -> dict[str, Any]:
    from redis import asyncio as redis_asyncio

    from rocketd.auth.throttle_stores import decode_counter

    client = redis_asyncio.Redis.from_url(REDIS_URL)
    try:
        out = {}
        async for name in client.scan_iter(match=f"{prefix}*"):
            ttl = await client.pttl(name)
            assert ttl > 0, name  # every counter expires by itself
            out[name.decode()] = decode_counter(await client.get(name))
        return out
    finally:
        await client.aclose()


async def end_redis_backoffs(prefix: str) -> None:
    from redis import asyncio as redis_asyncio

    client = redis_asyncio.Redis.from_url(REDIS_URL)
    try:
        async for name in client.scan_iter(match=f"{prefix}*"):
            data = json.loads(await client.get(name))
            if data["locked_until"] is not None:
                seconds, micros = await client.time()
                data["locked_until"] = seconds * 1_000_000 + micros - 1000  # just ended
                await client.set(name, json.dumps(data), keepttl=True)
    finally:
        await client.aclose()


async def test_redis_keeps_the_counters_for_every_instance(
    make_client: MakeClient, redis_prefix: str, pg_dsn: str, management_db: str
) -> None:
    redis = {"redis_url": REDIS_URL, "redis_prefix": redis_prefix}
    one = await make_client(account_max_failures=3, backoff_initial=600, **redis)
    two = await make_client(account_max_failures=3, backoff_initial=600, **redis)
    # Parallel guesses on two instances: exactly the limit gets through.
    answers = await asyncio.gather(
        *(platform_login((one, two)[i % 2], password=f"{WRONG}-{i}") for i in range(12))
    )
    assert sorted(resp.status for resp in answers) == [401] * 3 + [429] * 9
    await assert_rate_limited(await platform_login(one), 3)
    await assert_rate_limited(await platform_login(two), 3)
    stored = await redis_counters(redis_prefix)
    account = next(c for name, c in stored.items() if ":account:platform:" in name)
    address = next(c for name, c in stored.items() if ":address:127.0.0.1" in name)
    assert (len(account.failures), account.level) == (3, 1)
    assert len(address.failures) == 3  # refused attempts were not counted
    assert counters(pg_dsn, management_db, "") == []  # nothing in PostgreSQL
    # The backoff over, a success on either instance resets the account for both.
    await end_redis_backoffs(redis_prefix)
    assert (await platform_login(two)).status == 200
    resp = await platform_login(one, password=WRONG)
    assert resp.status == 401 and resp.headers["RateLimit-Remaining"] == "2"


async def test_redis_backoff_doubles_and_invites_are_throttled(
    make_client: MakeClient, redis_prefix: str
) -> None:
    options: dict[str, Any] = {
        "proxies": ("127.0.0.0/8",),
        "address_max_failures": 3,
        "redis_url": REDIS_URL,
        "redis_prefix": redis_prefix,
    }
    client = await make_client(account_max_failures=2, **options)
    other = await make_client(**options)  # a second instance on the same Redis
    app = await new_app(other)
    for _ in range(2):
        assert (await platform_login(client, password=WRONG)).status == 401
    assert 1 <= await assert_rate_limited(await platform_login(client), 2) <= 30
    await end_redis_backoffs(redis_prefix)
    assert (await platform_login(client, password=WRONG, via="203.0.113.1")).status == 401
    assert 30 < await assert_rate_limited(await platform_login(client), 2) <= 60
    # Invite acceptance on one instance and login on the other share the address's count.
    bad = {"token": "00000000-0000-4000-8000-000000000001", "password": "a-long-phrase-here"}
    for _ in range(3):
        resp = await app.client.post(
            app.url("auth/accept-invite"), json=bad, headers={"X-Forwarded-For": "203.0.113.9"}
        )
        assert resp.status == 404
    resp = await client.post(
        PLATFORM_LOGIN,
        json={"email": "someone@x.io", "password": RIGHT},
        headers={"X-Forwarded-For": "203.0.113.9"},
    )
    await assert_rate_limited(resp, 3)


async def test_an_unreachable_redis_stops_the_start(settings: Settings) -> None:
    broken = dataclasses.replace(
        settings, redis=dataclasses.replace(settings.redis, url="redis://127.0.0.1:1/0")
    )
    runtime = Runtime(broken)
    try:
        with pytest.raises(ConnectionError, match=r"redis\.url does not answer"):
            await runtime.start(http=False)
    finally:
        await runtime.stop()


def test_redis_counters_round_trip_to_the_microsecond() -> None:
    from datetime import UTC, datetime

    from rocketd.auth.throttle import Counter
    from rocketd.auth.throttle_stores import decode_counter, encode_counter

    moment = datetime(2026, 5, 17, 8, 30, 1, 123457, tzinfo=UTC)
    counter = Counter((moment, moment.replace(microsecond=999999)), 3, moment)
    assert decode_counter(encode_counter(counter)) == counter
    assert decode_counter(None) == Counter()


async def test_a_redis_that_stops_answering_refuses_attempts_with_503() -> None:
    from rocketd.auth.throttle_stores import RedisThrottleStore
    from rocketd.errors import ServiceUnavailable

    store = RedisThrottleStore("redis://127.0.0.1:1/0", "rocketd:")
    try:
        with pytest.raises(ServiceUnavailable):
            await store.update(["address:203.0.113.1"], lambda counters, now: ({}, None))
    finally:
        await store.close()
