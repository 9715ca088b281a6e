"""The first platform admin is seeded once, however many workers or instances start at once
on an empty management database (a race that once failed a worker's start)."""

from __future__ import annotations

import asyncio

import psycopg

from rocketd.auth.accounts import PLATFORM_TABLES, AccountService
from rocketd.config import Settings
from rocketd.platform import apps
from rocketd.runtime import Runtime, bootstrap_management, ensure_database, open_management_pool


async def test_concurrent_seeds_create_one_admin_and_raise_nothing(settings: Settings) -> None:
    await ensure_database(settings)
    pool = await open_management_pool(settings)
    try:
        await bootstrap_management(settings, pool)
        services = [
            AccountService(pool, PLATFORM_TABLES, "s", apps.token_policy(settings))
            for _ in range(4)
        ]
        # Different spellings of one address meet the unique index on lower(email).
        emails = ["first@localhost", "FIRST@localhost", "first@LOCALHOST", "First@Localhost"]
        seeded = await asyncio.gather(
            *(
                svc.seed_admin(email, "a-long-password", ["platform_admin"])
                for svc, email in zip(services, emails, strict=True)
            )
        )
        assert sorted(seeded) == [False, False, False, True]
        async with pool.connection() as conn:
            cur = await conn.execute("select count(*) from _platform_users")
            assert (await cur.fetchone()) == (1,)
    finally:
        await pool.close()


async def test_two_runtimes_starting_together_on_an_empty_database(settings: Settings) -> None:
    first, second = Runtime(settings), Runtime(settings)
    try:
        await asyncio.gather(first.start(http=False), second.start(http=False))
    finally:
        await asyncio.gather(first.stop(), second.stop(), return_exceptions=True)
    with psycopg.connect(settings.database.dsn()) as conn:
        row = conn.execute("select count(*) from _platform_users").fetchone()
    assert row == (1,)
