"""AppActor: one per app. Owns the app's connection pool, its auth service, its signal sender
and its snapshot (the app's metadata, parsed and immutable) with the `AppContext` built on it.
Requests read `context` directly (no mailbox on the hot path) and keep the one they started with;
the mailbox carries `reload`, which rebuilds the snapshot from the database (with the installed
capabilities' parts) and swaps the context in one assignment.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from rocketd.actors.base import Actor
from rocketd.auth.accounts import APP_TABLES, AccountService
from rocketd.auth.user_states import UserStates
from rocketd.config import Settings
from rocketd.db import email_index
from rocketd.db.app_schema import APP_PLAN
from rocketd.db.migrations import apply_plan
from rocketd.db.pool import LeasingPool
from rocketd.db.replicas import ReplicaReads
from rocketd.db.traced_cursor import TracedCursor
from rocketd.engine.installation import BARE_KERNEL, Installation
from rocketd.engine.pipeline import AppContext
from rocketd.engine.signals import SignalSender
from rocketd.engine.snapshot import EMPTY_SNAPSHOT, AppSnapshot, load_snapshot
from rocketd.logging import get_logger
from rocketd.metadata.registry import Registry
from rocketd.platform.apps import AppRow, token_policy

log = get_logger("rocketd.actors.app")

RELOAD = "reload"
POOL_OPEN_TIMEOUT = 10.0


class AppActor(Actor):
    def __init__(
        self, row: AppRow, settings: Settings, installation: Installation = BARE_KERNEL
    ) -> None:
        super().__init__(f"app:{row.name}")
        self.app_name = row.name
        self.db_name = row.db_name
        self.jwt_secret = row.jwt_secret
        self._settings = settings
        self._pool: AsyncConnectionPool[Any] | None = None
        self._accounts: AccountService | None = None
        self._users: UserStates | None = None
        self._signals: SignalSender | None = None
        self._context: AppContext | None = None
        self._replicas: ReplicaReads | None = None
        self._installation = installation
        self.reloads = 0
        self.snapshot: AppSnapshot = EMPTY_SNAPSHOT

    @property
    def pool(self) -> AsyncConnectionPool[Any]:
        if self._pool is None:
            raise RuntimeError(f"app {self.app_name} is not started")
        return self._pool

    @property
    def context(self) -> AppContext:
        """The app as of the current snapshot (what a request starting now works with)."""
        if self._context is None:
            raise RuntimeError(f"app {self.app_name} is not started")
        return self._context

    @property
    def signals(self) -> SignalSender:
        if self._signals is None:
            raise RuntimeError(f"app {self.app_name} is not started")
        return self._signals

    @property
    def accounts(self) -> AccountService:
        if self._accounts is None:
            raise RuntimeError(f"app {self.app_name} is not started")
        return self._accounts

    @property
    def users(self) -> UserStates:
        """Whether a token's user still exists and is active (cached briefly, see auth.users)."""
        if self._users is None:
            raise RuntimeError(f"app {self.app_name} is not started")
        return self._users

    def forget_users(self, user_id: str | None = None) -> None:
        """Drop cached user state (one user, or all); nothing to do when not started."""
        if self._users is not None:
            self._users.invalidate(user_id)

    async def on_start(self) -> None:
        dsn = self._settings.database.dsn(self.db_name)
        # Upgrade the app's system tables to this release (idempotent, versioned).
        # One short session (no prepared statements: it may go through a pooler).
        async with await psycopg.AsyncConnection.connect(dsn, prepare_threshold=None) as conn:
            await apply_plan(conn, APP_PLAN)
            for plan in self._installation.schema_plans:
                await apply_plan(conn, plan)
            await conn.commit()
            # Retried every start: made once the users' case-duplicates are resolved.
            duplicates = await email_index.ensure_case_insensitive_index(conn, APP_TABLES.users)
        email_index.report_duplicates(duplicates, f"app {self.app_name}")
        pool = self._new_pool(LeasingPool, dsn, f"app-{self.app_name}")
        await pool.open(wait=True, timeout=POOL_OPEN_TIMEOUT)
        self._pool = pool
        replica_dsns = self._settings.database.replica_dsns(self.db_name)
        if replica_dsns:
            replicas = [
                # Plain pools: ReplicaReads takes their connections with getconn/putconn.
                self._new_pool(AsyncConnectionPool, replica, f"app-{self.app_name}-replica-{n}")
                for n, replica in enumerate(replica_dsns)
            ]
            for replica_pool in replicas:
                await replica_pool.open(wait=False)  # a replica down at start is skipped
            self._replicas = ReplicaReads(pool, replicas, self._settings.database.replica_wait)
        self._signals = SignalSender(pool)
        self._accounts = AccountService(
            pool,
            APP_TABLES,
            self.jwt_secret,
            token_policy(self._settings),
            seeded_password=self._settings.auth.app_admin_password,
        )
        self._users = UserStates(pool, APP_TABLES.users)
        await self._reload()
        log.info("app started", app=self.app_name, entities=len(self.registry.entities))

    def _new_pool(
        self, kind: type[AsyncConnectionPool[Any]], dsn: str, name: str
    ) -> AsyncConnectionPool[Any]:
        idle = self._settings.app_pool_idle_seconds
        return kind(
            dsn,
            # Shrinks to nothing after `idle` s without use, grows again on demand.
            min_size=0 if idle > 0 else 1,
            max_idle=idle if idle > 0 else 600.0,
            max_size=self._settings.app_pool_size,
            kwargs=self._connection_options(),
            open=False,
            name=name,
            timeout=self._settings.app_pool_timeout,
        )

    def _connection_options(self) -> dict[str, Any]:
        options = self._settings.database.connection_kwargs()
        if self._settings.instrumentation.enabled:  # a span per statement (db.traced_cursor)
            options["cursor_factory"] = TracedCursor
        return options

    async def handle(self, message: object) -> Any:
        if message == RELOAD:
            await self._reload()
            return self.snapshot
        raise ValueError(f"AppActor {self.app_name}: unknown message {message!r}")

    async def _reload(self) -> None:
        async with self.pool.connection() as conn:
            snapshot = await load_snapshot(conn, self._installation.parts)
        for problem in snapshot.problems:
            log.warning("invalid metadata skipped", app=self.app_name, problem=problem)
        # one reference swap each: requests in flight keep theirs
        self._context = self._installation.context(
            self.app_name, self.pool, snapshot, self.signals, self._replicas
        )
        self.snapshot = snapshot
        self.reloads += 1

    async def context_in(self, conn: psycopg.AsyncConnection[Any]) -> AppContext:
        """The app as `conn`'s transaction sees it: a snapshot read through `conn` (metadata it
        wrote and has not committed included), with this app's pool, signals and installation.
        Imports write their sample rows with it."""
        snapshot = await load_snapshot(conn, self._installation.parts)
        return self._installation.context(
            self.app_name, self.pool, snapshot, self.signals, self._replicas
        )

    @property
    def registry(self) -> Registry:
        return self.snapshot.registry

    async def reload_now(self) -> AppSnapshot:
        """Reload through the mailbox and wait: the caller's next request sees the change."""
        snapshot: AppSnapshot = await self.ask(RELOAD, timeout=30.0)
        return snapshot

    async def on_stop(self) -> None:
        if self._replicas is not None:
            await self._replicas.close()
            self._replicas = None
        if self._pool is not None:
            if self._signals is not None:
                await self._signals.flush()  # committed writes' wake-ups go out
            await self._pool.close()
            self._pool = None
            self._signals = None
            self._context = None
            self._accounts = None
            self._users = None
        log.info("app stopped", app=self.app_name)
