"""AppActor: one per app. Owns the app's connection pool, its auth service and its Registry
snapshot (the app's metadata, parsed and immutable). Requests read these attributes directly (no
mailbox on the hot path) and keep the snapshot they started with; the mailbox carries `reload`,
which rebuilds the Registry from the database and swaps it in one assignment.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from rocketd.actors.base import Actor
from rocketd.auth.accounts import APP_TABLES, AccountService
from rocketd.config import Settings
from rocketd.db.app_schema import APP_PLAN
from rocketd.db.migrations import apply_plan
from rocketd.engine.apps import AppRow, token_policy
from rocketd.engine.metadata_admin import load_registry
from rocketd.logging import get_logger
from rocketd.metadata.registry import EMPTY_REGISTRY, Registry

log = get_logger("rocketd.actors.app")

RELOAD = "reload"
POOL_OPEN_TIMEOUT = 10.0


class AppActor(Actor):
    def __init__(self, row: AppRow, settings: Settings) -> None:
        super().__init__(f"app:{row.name}")
        self.app_name = row.name
        self.db_name = row.db_name
        self.jwt_secret = row.jwt_secret
        self._settings = settings
        self._pool: AsyncConnectionPool[Any] | None = None
        self._accounts: AccountService | None = None
        self.reloads = 0
        self.registry: Registry = EMPTY_REGISTRY

    @property
    def pool(self) -> AsyncConnectionPool[Any]:
        if self._pool is None:
            raise RuntimeError(f"app {self.app_name} is not started")
        return self._pool

    @property
    def accounts(self) -> AccountService:
        if self._accounts is None:
            raise RuntimeError(f"app {self.app_name} is not started")
        return self._accounts

    async def on_start(self) -> None:
        dsn = self._settings.database.dsn(self.db_name)
        # Upgrade the app's system tables to this release (idempotent, versioned).
        async with await psycopg.AsyncConnection.connect(dsn) as conn:
            await apply_plan(conn, APP_PLAN)
            await conn.commit()
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            dsn,
            min_size=1,
            max_size=self._settings.app_pool_size,
            kwargs={"autocommit": True},
            open=False,
            name=f"app-{self.app_name}",
        )
        await pool.open(wait=True, timeout=POOL_OPEN_TIMEOUT)
        self._pool = pool
        self._accounts = AccountService(
            pool,
            APP_TABLES,
            self.jwt_secret,
            token_policy(self._settings),
            seeded_password=self._settings.auth.app_admin_password,
        )
        await self._reload()
        log.info("app started", app=self.app_name, entities=len(self.registry.entities))

    async def handle(self, message: object) -> Any:
        if message == RELOAD:
            await self._reload()
            return self.registry
        raise ValueError(f"AppActor {self.app_name}: unknown message {message!r}")

    async def _reload(self) -> None:
        async with self.pool.connection() as conn:
            registry = await load_registry(conn)
        for problem in registry.problems:
            log.warning("invalid metadata skipped", app=self.app_name, problem=problem)
        self.registry = registry  # one reference swap: requests in flight keep their snapshot
        self.reloads += 1

    async def reload_now(self) -> Registry:
        """Reload through the mailbox and wait: the caller's next request sees the change."""
        registry: Registry = await self.ask(RELOAD, timeout=30.0)
        return registry

    async def on_stop(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
            self._accounts = None
        log.info("app stopped", app=self.app_name)
