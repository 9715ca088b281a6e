"""The connection budget: how many PostgreSQL connections this deployment may open, against
what the server allows.

Per worker process: the management pool (`database.pool_size`), its metadata listener, the
scheduler's connection (with `background_work`), and per app its pool (`app_pool_size`), the
event flusher's connection (with instrumentation on) and its listener. Listeners and the scheduler always go straight to PostgreSQL (`database.listen_url`);
with a pooler in front (`listen_url` set) the pools' connections are the pooler's to multiplex,
so only the direct ones are counted against the server.

The count is the worst case: idle app pools close their connections after
`app_pool_idle_seconds`, so many quiet apps cost only their listeners. It is checked at start and
after an app is created; going over is a warning naming the numbers, not a refusal (the worst case
rarely happens, and refusing to start would take every app down).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from rocketd.config import Settings
from rocketd.logging import get_logger

__all__ = ["ConnectionBudget", "check_connection_budget"]

log = get_logger("rocketd.platform.capacity")


@dataclass(frozen=True)
class ConnectionBudget:
    workers: int
    apps: int
    management_pool: int
    app_pool: int
    event_writer: bool  # the event flusher's own connection per app
    scheduler: bool
    through_pooler: bool
    max_connections: int
    reserved: int

    @property
    def direct_per_worker(self) -> int:
        """Sessions of their own: the management listener, the scheduler, one listener per app."""
        return 1 + int(self.scheduler) + self.apps

    @property
    def pooled_per_worker(self) -> int:
        return self.management_pool + self.apps * (self.app_pool + int(self.event_writer))

    @property
    def needed(self) -> int:
        pooled = 0 if self.through_pooler else self.pooled_per_worker
        return self.workers * (self.direct_per_worker + pooled)

    @property
    def available(self) -> int:
        return self.max_connections - self.reserved

    @property
    def exceeded(self) -> bool:
        return self.needed > self.available

    def describe(self) -> str:
        pools = (
            "pools through the pooler, not counted"
            if self.through_pooler
            else f"management pool {self.management_pool} + {self.apps} apps x (app pool"
            f" {self.app_pool}{' + 1 event writer' if self.event_writer else ''})"
        )
        return (
            f"{self.needed} connections at most = {self.workers} workers x ({pools}; "
            f"{self.direct_per_worker} listener/scheduler sessions), for"
            f" {self.available} available (max_connections {self.max_connections} -"
            f" {self.reserved} reserved)"
        )


def budget_for(
    settings: Settings, apps: int, max_connections: int, reserved: int
) -> ConnectionBudget:
    return ConnectionBudget(
        workers=max(1, settings.server.workers),
        apps=apps,
        management_pool=max(2, settings.database.pool_size),
        app_pool=settings.app_pool_size,
        event_writer=settings.instrumentation.enabled,
        scheduler=settings.background_work,
        through_pooler=bool(settings.database.listen_url),
        max_connections=max_connections,
        reserved=reserved,
    )


async def check_connection_budget(settings: Settings, apps: int) -> ConnectionBudget | None:
    """Compare the worst case with the server's limit; log it (a warning when over). None when
    the server cannot be asked (the caller goes on: this is advice, not a gate)."""
    try:
        async with await psycopg.AsyncConnection.connect(
            settings.database.direct_dsn(), autocommit=True, connect_timeout=5
        ) as conn:
            cur = await conn.execute(
                "select current_setting('max_connections')::int,"
                " current_setting('superuser_reserved_connections')::int"
                " + coalesce(current_setting('reserved_connections', true)::int, 0)"
            )
            row: Any = await cur.fetchone()
    except psycopg.Error as exc:
        log.warning("connection budget not checked", problem=type(exc).__name__)
        return None
    budget = budget_for(settings, apps, int(row[0]), int(row[1]))
    if budget.exceeded:
        log.warning(
            "connection budget exceeded: lower app_pool_size, database.pool_size or"
            " server.workers, raise max_connections, or put PgBouncer in front"
            " (docs/deploy.md#connection-budget)",
            budget=budget.describe(),
            needed=budget.needed,
            available=budget.available,
        )
    else:
        log.info("connection budget", budget=budget.describe())
    return budget
