"""The hourly `events-retention` job: every app served here loses its `_events` rows older than
`instrumentation.retention_days`, in batches. A scheduler job (one instance at a time); an app
whose database fails is logged and skipped, the others go on."""

from __future__ import annotations

from typing import Final

from rocketd.actors.directory import AppDirectory
from rocketd.actors.scheduler import JobFunction
from rocketd.db.retention import delete_older_than
from rocketd.logging import get_logger

log = get_logger("rocketd.events")

RETENTION_INTERVAL: Final = 3600.0


def expire_events(directory: AppDirectory, retention_days: float) -> JobFunction:
    async def expire() -> None:
        for actor in list(directory.actors.values()):
            if not actor.running:
                continue
            try:
                async with actor.pool.connection() as conn:
                    deleted = await delete_older_than(conn, "_events", "created_at", retention_days)
            except Exception:
                log.exception("events retention failed", app=actor.app_name)
                continue
            if deleted:
                log.info("old events deleted", app=actor.app_name, count=deleted)

    return expire
