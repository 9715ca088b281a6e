"""Where the login throttle keeps its counters, shared by every instance.

`PostgresThrottleStore` keeps them in the management database's `_login_throttle` (one row per
account or client address), for the platform and every app alike: the per-address counter spans
all of them, a deleted app's rows simply expire, and the tenants' databases hold no security
state. One update runs in one transaction that first takes a transaction-scoped advisory lock per
key (in key order, so two updates never wait on each other crosswise); the clock is PostgreSQL's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final, TypeVar

from psycopg_pool import AsyncConnectionPool

from rocketd.auth.throttle import Change, Counter

T = TypeVar("T")

THROTTLE_TABLE: Final = "_login_throttle"
_LOCK_PREFIX: Final = "rocketd:login-throttle:"


class PostgresThrottleStore:
    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool = pool

    async def update(self, keys: Sequence[str], change: Change[T]) -> T:
        ordered = sorted(set(keys))
        async with self._pool.connection() as conn, conn.transaction():
            for key in ordered:
                await conn.execute(
                    "select pg_advisory_xact_lock(hashtextextended(%s, 0))", (_LOCK_PREFIX + key,)
                )
            cur = await conn.execute(
                "select k.key, t.failures, t.level, t.locked_until, clock_timestamp()"
                " from unnest(%s::text[]) as k(key)"
                " left join _login_throttle t on t.key = k.key",
                (ordered,),
            )
            rows = await cur.fetchall()
            now: datetime = rows[0][4]
            counters: Mapping[str, Counter] = {
                key: Counter(tuple(failures or ()), level or 0, locked_until)
                for key, failures, level, locked_until, _ in rows
            }
            written, result = change(counters, now)
            for key, stored in written.items():
                if stored is None:
                    await conn.execute("delete from _login_throttle where key = %s", (key,))
                    continue
                counter, expires = stored
                await conn.execute(
                    "insert into _login_throttle (key, failures, level, locked_until, expires_at)"
                    " values (%s, %s, %s, %s, %s) on conflict (key) do update set"
                    " failures = excluded.failures, level = excluded.level,"
                    " locked_until = excluded.locked_until, expires_at = excluded.expires_at",
                    (key, list(counter.failures), counter.level, counter.locked_until, expires),
                )
        return result

    async def purge(self) -> int:
        async with self._pool.connection() as conn:
            cur = await conn.execute("delete from _login_throttle where expires_at < now()")
            return int(cur.rowcount)
