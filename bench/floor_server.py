"""The stack's floor: the data API's get and update by id with nothing of rocketd around them.

Built only from the packages the design card names (aiohttp on uvloop, psycopg with
psycopg_pool, pyjwt), access log off, for the data-api set's seeded `order` entity of the app
`benchdata` (table `orders`, bench/scenarios/data_api.py). Routes:

- `GET /health`: bench/hello_server.py's handler, unchanged;
- `GET /api/benchdata/order/{id}`: the bearer token verified as an HS256 JWT (algorithm pinned,
  `sub`, `iat`, `exp` required, `sub` a string), then one parameterised select by primary key;
  200 `{"data": record}`, 404 when there is no such row;
- `PUT` (what rocketd's contract and wrk/data_api.lua use) and `PATCH` on the same path: the
  token verified, the JSON body parsed (an object whose keys are among `number`, `status`,
  `total`), then in one transaction `SELECT ... FOR UPDATE` of the row and `UPDATE ...
  RETURNING` it; 200 `{"data": record}`.

A record is the row in the contract's value encoding (uuid as text, numeric as its decimal
text, timestamps RFC 3339 in UTC with `Z`), encoded by `web.json_response`. Errors answer the
contract's `{"error": {"code", "message"}}` with 400, 401, 404 or 409.

Two ways to use the packages, chosen with `--mode`:

- `plain` (default): the idiomatic use. The pool is a psycopg_pool `AsyncConnectionPool` with
  the settings of rocketd's app pools (`max_size` 5, `min_size` 0, `max_idle` 300 s, `timeout`
  5 s, connections in autocommit, psycopg's default prepare threshold); each request takes a
  connection with `pool.connection()`, runs `conn.execute(...)` (a new cursor each time), and
  an update wraps its statements in `conn.transaction()`. Every request's token goes through
  `jwt.decode`.
- `lean`: the cheapest use of the same packages that this file knows. The pool's 5
  connections are taken once at start and handed from request to request through an
  `asyncio.Queue` (no per-request pool bookkeeping); each connection keeps one cursor, its
  statements prepared on first use; `BEGIN` / `COMMIT` go as simple queries; a token is
  verified by `jwt.decode` once and then looked up (with its expiry checked) until it expires.

Run it as `python -m bench.floor_server --port N --dsn postgresql://.../rocket_benchdata
[--mode lean]` with the app's JWT secret in `FLOOR_JWT_SECRET`; it exits 0 on SIGTERM or SIGINT.
`python -m bench floor` (bench/floor.py) measures it beside rocketd.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, Protocol

import jwt
import psycopg
import uvloop
from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from bench.hello_server import health, serve

APP = "benchdata"
ENTITY = "order"
COLUMNS = "id, number, status, total, created_at"
SELECT = f"select {COLUMNS} from orders where id = %s"
LOCK = f"{SELECT} for update"
WRITABLE = frozenset({"number", "status", "total"})
ALGORITHMS = ["HS256"]
REQUIRED_CLAIMS = ["sub", "iat", "exp"]
# rocketd's app pool settings (rocketd/actors/app.py `_new_pool`, rocketd/config.py defaults).
POOL_SIZE = 5
POOL_IDLE_S = 300.0
POOL_TIMEOUT_S = 5.0
POOL_OPEN_TIMEOUT_S = 30.0
TOKEN_CACHE_SIZE = 10_000
SECRET_ENV = "FLOOR_JWT_SECRET"
MODES = ("plain", "lean")

Row = tuple[Any, ...]


# --- answers ----------------------------------------------------------------------------------


def record(row: Row) -> dict[str, Any]:
    """An `orders` row in the contract's value encoding."""
    total = row[3]
    created: datetime | None = row[4]
    return {
        "id": str(row[0]),
        "number": row[1],
        "status": row[2],
        "total": None if total is None else str(total),
        "created_at": None
        if created is None
        else created.astimezone(UTC).isoformat().replace("+00:00", "Z"),
    }


def error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def update_statement(keys: tuple[str, ...]) -> str:
    """`update orders set "k1" = %s, ... where id = %s returning ...` for writable keys."""
    assignments = ", ".join(f'"{key}" = %s' for key in keys)
    return f"update orders set {assignments} where id = %s returning {COLUMNS}"


# --- tokens -----------------------------------------------------------------------------------


def decode(secret: str, token: str) -> float | None:
    """The expiry of a valid HS256 token signed with `secret` whose `sub` is a string, else None."""
    try:
        claims = jwt.decode(
            token, secret, algorithms=ALGORITHMS, options={"require": REQUIRED_CLAIMS}
        )
    except jwt.PyJWTError:
        return None
    if not isinstance(claims.get("sub"), str):
        return None
    return float(claims["exp"])


class Tokens(Protocol):
    def valid(self, token: str) -> bool: ...


class EveryTime:
    """`jwt.decode` on every request."""

    def __init__(self, secret: str) -> None:
        self.secret = secret

    def valid(self, token: str) -> bool:
        return decode(self.secret, token) is not None


class Remembered:
    """`jwt.decode` once per token, then its expiry looked up (bounded: the oldest go first)."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.expiry: dict[str, float] = {}

    def valid(self, token: str) -> bool:
        exp = self.expiry.get(token)
        if exp is None:
            exp = decode(self.secret, token)
            if exp is None:
                return False
            if len(self.expiry) >= TOKEN_CACHE_SIZE:
                del self.expiry[next(iter(self.expiry))]
            self.expiry[token] = exp
        return time.time() < exp


# --- the database -----------------------------------------------------------------------------


class Store(Protocol):
    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def get(self, record_id: str) -> Row | None: ...
    async def update(self, record_id: str, fields: dict[str, Any]) -> Row | None: ...


def new_pool(dsn: str) -> AsyncConnectionPool[Any]:
    return AsyncConnectionPool(
        dsn,
        min_size=0,
        max_idle=POOL_IDLE_S,
        max_size=POOL_SIZE,
        kwargs={"autocommit": True},
        open=False,
        name="floor",
        timeout=POOL_TIMEOUT_S,
    )


class PoolStore:
    """`pool.connection()`, `conn.execute`, `conn.transaction()` per request."""

    def __init__(self, dsn: str) -> None:
        self.pool = new_pool(dsn)

    async def open(self) -> None:
        await self.pool.open(wait=True, timeout=POOL_OPEN_TIMEOUT_S)

    async def close(self) -> None:
        await self.pool.close()

    async def get(self, record_id: str) -> Row | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(SELECT, (record_id,))
            row: Row | None = await cur.fetchone()
            return row

    async def update(self, record_id: str, fields: dict[str, Any]) -> Row | None:
        keys = tuple(sorted(fields))
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(LOCK, (record_id,))
            if await cur.fetchone() is None:
                return None
            values = [fields[key] for key in keys]
            cur = await conn.execute(update_statement(keys), [*values, record_id])
            row: Row | None = await cur.fetchone()
            return row


class _Slot:
    __slots__ = ("conn", "cur")

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn
        self.cur = conn.cursor()


class HeldStore:
    """The pool's connections taken once, handed between requests through a queue; one cursor
    per connection, statements prepared on first use, BEGIN / COMMIT as simple queries."""

    def __init__(self, dsn: str) -> None:
        self.pool = new_pool(dsn)
        self.free: asyncio.Queue[_Slot] = asyncio.Queue()
        self.statements: dict[tuple[str, ...], str] = {}

    async def open(self) -> None:
        await self.pool.open(wait=True, timeout=POOL_OPEN_TIMEOUT_S)
        for _ in range(POOL_SIZE):
            self.free.put_nowait(_Slot(await self.pool.getconn()))

    async def close(self) -> None:
        while not self.free.empty():
            await self.pool.putconn(self.free.get_nowait().conn)
        await self.pool.close()

    async def _give_back(self, slot: _Slot) -> None:
        if slot.conn.closed or slot.conn.broken:
            await self.pool.putconn(slot.conn)
            slot = _Slot(await self.pool.getconn())
        self.free.put_nowait(slot)

    async def get(self, record_id: str) -> Row | None:
        slot = await self.free.get()
        try:
            await slot.cur.execute(SELECT, (record_id,), prepare=True)
            return await slot.cur.fetchone()
        finally:
            await self._give_back(slot)

    async def update(self, record_id: str, fields: dict[str, Any]) -> Row | None:
        keys = tuple(sorted(fields))
        statement = self.statements.get(keys)
        if statement is None:
            statement = self.statements[keys] = update_statement(keys)
        slot = await self.free.get()
        cur = slot.cur
        try:
            await cur.execute("begin", prepare=False)
            try:
                await cur.execute(LOCK, (record_id,), prepare=True)
                row = None
                if await cur.fetchone() is not None:
                    values = [fields[key] for key in keys]
                    await cur.execute(statement, [*values, record_id], prepare=True)
                    row = await cur.fetchone()
            except BaseException:
                if not (slot.conn.closed or slot.conn.broken):
                    await cur.execute("rollback", prepare=False)
                raise
            await cur.execute("commit", prepare=False)
            return row
        finally:
            await self._give_back(slot)


# --- the app ----------------------------------------------------------------------------------

STORE = web.AppKey("store", Store)
TOKENS = web.AppKey("tokens", Tokens)


def _refused(request: web.Request) -> web.Response | None:
    """404 for another app or entity, 401 for a missing or invalid token, else None."""
    match = request.match_info
    if match["app"] != APP:
        return error(404, "APP_NOT_FOUND", f"App not found: {match['app']}")
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer ") or not request.app[TOKENS].valid(header[7:]):
        return error(401, "UNAUTHORIZED", "Invalid or expired token")
    if match["entity"] != ENTITY:
        return error(404, "UNKNOWN_ENTITY", f"Unknown entity: {match['entity']}")
    return None


def _missing(record_id: str) -> web.Response:
    return error(404, "NOT_FOUND", f"{ENTITY} with id {record_id} not found")


async def get_record(request: web.Request) -> web.Response:
    refused = _refused(request)
    if refused is not None:
        return refused
    record_id = request.match_info["id"]
    try:
        row = await request.app[STORE].get(record_id)
    except psycopg.errors.InvalidTextRepresentation:
        row = None  # not a uuid
    if row is None:
        return _missing(record_id)
    return web.json_response({"data": record(row)})


async def update_record(request: web.Request) -> web.Response:
    refused = _refused(request)
    if refused is not None:
        return refused
    record_id = request.match_info["id"]
    try:
        fields = await request.json()
    except ValueError:
        return error(400, "INVALID_PAYLOAD", "Body is not JSON")
    if not isinstance(fields, dict) or not fields or not WRITABLE.issuperset(fields):
        return error(
            400, "INVALID_PAYLOAD", f"Expected an object with keys among {sorted(WRITABLE)}"
        )
    try:
        row = await request.app[STORE].update(record_id, fields)
    except psycopg.errors.UniqueViolation:
        return error(409, "CONFLICT", "number is already taken")
    except psycopg.errors.DataError:
        if not is_uuid(record_id):
            return _missing(record_id)
        return error(400, "INVALID_PAYLOAD", "A value does not fit its field")
    if row is None:
        return _missing(record_id)
    return web.json_response({"data": record(row)})


def make_app(dsn: str, secret: str, mode: str = "plain") -> web.Application:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    app = web.Application()
    store: Store = PoolStore(dsn) if mode == "plain" else HeldStore(dsn)
    app[STORE] = store
    app[TOKENS] = EveryTime(secret) if mode == "plain" else Remembered(secret)

    async def database(app: web.Application) -> AsyncIterator[None]:
        await store.open()
        yield
        await store.close()

    app.cleanup_ctx.append(database)
    app.router.add_get("/health", health)
    path = "/api/{app}/{entity}/{id}"
    app.router.add_get(path, get_record)
    app.router.add_put(path, update_record)
    app.router.add_patch(path, update_record)
    return app


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dsn", required=True, help="the app database, e.g. .../rocket_benchdata")
    parser.add_argument("--mode", choices=MODES, default="plain")
    args = parser.parse_args()
    secret = os.environ.get(SECRET_ENV, "")
    if not secret:
        parser.error(f"{SECRET_ENV} must hold the app's JWT secret")
    app = make_app(args.dsn, secret, args.mode)
    return uvloop.run(serve(args.host, args.port, app))


if __name__ == "__main__":
    raise SystemExit(main())
