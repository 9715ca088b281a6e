"""The IndexBuilder: builds and drops the indexes entities declare, outside any admin transaction.

It is told an app name when an admin change signals `indexes` (on any instance), and by the
`index-builds` scheduler job for every app served here (what a lost signal or a crashed build left
behind). For each app it opens an autocommit connection of its own, reconciles
(`db.declared_indexes.reconcile`: advisory lock per index, `CREATE INDEX CONCURRENTLY`, invalid
leftovers dropped) and, when an index became ready or went away, announces `MetadataChanged` so
every instance reloads its snapshot and list pages pick their SQL by the new index.
"""

from __future__ import annotations

from typing import Final

import psycopg

from rocketd.actors.base import Actor, ActorError
from rocketd.actors.directory import AppDirectory
from rocketd.actors.scheduler import JobFunction
from rocketd.config import Settings
from rocketd.db.declared_indexes import SIGNAL, has_work, reconcile
from rocketd.db.notify import MetadataChanged, send
from rocketd.engine.admin import load_registry
from rocketd.logging import get_logger

log = get_logger("rocketd.capabilities.indexes")

SWEEP_INTERVAL: Final = 30.0


class IndexBuilder(Actor):
    """One per background instance; one app at a time (builds are rare and long)."""

    crash_on_error = False

    def __init__(self, settings: Settings, directory: AppDirectory) -> None:
        super().__init__("index-builder")
        self._settings = settings
        self._directory = directory
        self._queued: set[str] = set()

    def wake(self, app_name: str) -> None:
        """Queue a reconcile of `app_name` unless one is queued already."""
        if app_name in self._queued:
            return
        try:
            self.tell(app_name)
        except ActorError:
            return  # stopping: the next sweep finds the work
        self._queued.add(app_name)

    async def handle(self, message: object) -> None:
        app_name = str(message)
        self._queued.discard(app_name)
        actor = self._directory.actors.get(app_name)
        if actor is None or not actor.running:
            return
        dsn = self._settings.database.dsn(actor.db_name)
        try:
            async with actor.pool.connection() as pooled:
                if not await has_work(pooled):
                    return
            async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
                registry = await load_registry(conn)
                if await reconcile(conn, registry.entities.values()):
                    await send(conn, MetadataChanged(app_name))
        except psycopg.Error:
            log.exception("declared index reconcile failed", app=app_name)


def sweep_indexes(directory: AppDirectory, builder: IndexBuilder) -> JobFunction:
    """The scheduler job: every app served here gets a reconcile (crashed builds, lost signals)."""

    async def sweep() -> None:
        for app_name in list(directory.actors):
            builder.wake(app_name)

    return sweep


__all__ = ["SIGNAL", "SWEEP_INTERVAL", "IndexBuilder", "sweep_indexes"]
