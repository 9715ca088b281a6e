"""The hourly `webhook-logs-retention` job: finished deliveries (`delivered`, `failed`) older than
`webhooks.log_retention_days` leave `_webhook_logs` in every app served here, in batches; rows
still pending or retrying are never touched."""

from __future__ import annotations

from typing import Final

from rocketd.actors.directory import AppDirectory
from rocketd.actors.retention import retention_job
from rocketd.actors.scheduler import JobFunction
from rocketd.logging import get_logger

log = get_logger("rocketd.webhooks")

RETENTION_INTERVAL: Final = 3600.0


def expire_logs(directory: AppDirectory, retention_days: float) -> JobFunction:
    return retention_job(
        directory,
        table="_webhook_logs",
        column="updated_at",
        days=retention_days,
        what="webhook logs",
        log=log,
        only="status in ('delivered', 'failed')",
    )
