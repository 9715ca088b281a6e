"""The hourly `events-retention` job: every app served here loses its `_events` rows older than
`instrumentation.retention_days`, in batches. A scheduler job (one instance at a time); an app
whose database fails is logged and skipped, the others go on."""

from __future__ import annotations

from typing import Final

from rocketd.actors.directory import AppDirectory
from rocketd.actors.retention import retention_job
from rocketd.actors.scheduler import JobFunction
from rocketd.logging import get_logger

log = get_logger("rocketd.events")

RETENTION_INTERVAL: Final = 3600.0


def expire_events(directory: AppDirectory, retention_days: float) -> JobFunction:
    return retention_job(
        directory, table="_events", column="created_at", days=retention_days, what="events", log=log
    )
