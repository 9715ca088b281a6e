"""Where the login throttle keeps its counters, shared by every instance.

`PostgresThrottleStore` keeps them in the management database's `_login_throttle` (one row per
account or client address), for the platform and every app alike: the per-address counter spans
all of them, a deleted app's rows simply expire, and the tenants' databases hold no security
state. One update runs in one transaction that first takes a transaction-scoped advisory lock per
key (in key order, so two updates never wait on each other crosswise); the clock is PostgreSQL's.

`RedisThrottleStore` is used instead when `redis.url` is set: one string key per counter (JSON,
times in microseconds), written with an absolute expiry so Redis drops what means nothing any
more. One update is an optimistic transaction (WATCH the keys, read them and Redis's clock, MULTI,
write, EXEC), retried when another instance changed a key meanwhile; the decisions are the same
pure functions as with PostgreSQL. Redis errors answer 503 (the attempt is neither allowed nor
counted) rather than letting logins through unthrottled.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeVar

from psycopg_pool import AsyncConnectionPool
from redis import asyncio as redis_asyncio
from redis.exceptions import RedisError, WatchError

from rocketd.auth.throttle import Change, Counter
from rocketd.errors import ServiceUnavailable
from rocketd.logging import get_logger

log = get_logger("rocketd.auth.throttle")

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

    async def close(self) -> None:
        """Nothing to release: the pool belongs to the runtime."""


# --- Redis ---------------------------------------------------------------------------------------

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
# Optimistic retries of one update before giving up (only many parallel attempts on one key
# collide; each retry means another attempt was counted meanwhile).
MAX_REDIS_RETRIES: Final = 200
UNAVAILABLE: Final = "Login throttling is unavailable right now; retry shortly"


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _moment(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def encode_counter(counter: Counter) -> str:
    locked = counter.locked_until
    return json.dumps(
        {
            "failures": [_micros(t) for t in counter.failures],
            "level": counter.level,
            "locked_until": None if locked is None else _micros(locked),
        }
    )


def decode_counter(raw: bytes | str | None) -> Counter:
    if raw is None:
        return Counter()
    data = json.loads(raw)
    locked = data.get("locked_until")
    return Counter(
        tuple(_moment(int(t)) for t in data.get("failures", ())),
        int(data.get("level", 0)),
        None if locked is None else _moment(int(locked)),
    )


class RedisThrottleStore:
    def __init__(self, url: str, key_prefix: str) -> None:
        self._client: Any = redis_asyncio.Redis.from_url(url)
        self._prefix = f"{key_prefix}login-throttle:"

    async def ping(self) -> None:
        """Raise `RedisError` unless the server answers (checked at startup)."""
        await self._client.ping()

    async def update(self, keys: Sequence[str], change: Change[T]) -> T:
        ordered = sorted(set(keys))
        names = [self._prefix + key for key in ordered]
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                for _ in range(MAX_REDIS_RETRIES):
                    try:
                        return await self._try_update(pipe, ordered, names, change)
                    except WatchError:
                        continue
        except RedisError as exc:
            log.warning("login throttle store unavailable", error=type(exc).__name__)
            raise ServiceUnavailable(UNAVAILABLE) from exc
        log.warning("login throttle update kept colliding; refusing the attempt")
        raise ServiceUnavailable(UNAVAILABLE)

    async def _try_update(
        self, pipe: Any, keys: list[str], names: list[str], change: Change[T]
    ) -> T:
        await pipe.watch(*names)
        raw = [await pipe.get(name) for name in names]
        seconds, micros = await pipe.time()
        now = _moment(int(seconds) * 1_000_000 + int(micros))
        counters = {key: decode_counter(value) for key, value in zip(keys, raw, strict=True)}
        written, result = change(counters, now)
        pipe.multi()
        for key, stored in written.items():
            name = self._prefix + key
            if stored is None:
                pipe.delete(name)
            else:
                counter, expires = stored
                pipe.set(name, encode_counter(counter), pxat=_micros(expires) // 1000 + 1)
        await pipe.execute()  # raises WatchError when a watched key changed meanwhile
        return result

    async def purge(self) -> int:
        """Redis expires counters by itself."""
        return 0

    async def close(self) -> None:
        await self._client.aclose()
