"""The hourly `webhook-logs-retention` job: finished deliveries (`delivered`, `failed`) older than
`webhooks.log_retention_days` leave `_webhook_logs` in every app served here, in batches; rows
still pending or retrying are never touched."""

from __future__ import annotations

from typing import Final

from rocketd.actors.directory import AppDirectory
from rocketd.actors.scheduler import JobFunction
from rocketd.db.retention import delete_older_than
from rocketd.logging import get_logger

log = get_logger("rocketd.webhooks")

RETENTION_INTERVAL: Final = 3600.0


def expire_logs(directory: AppDirectory, retention_days: float) -> JobFunction:
    async def expire() -> None:
        for actor in list(directory.actors.values()):
            if not actor.running:
                continue
            try:
                async with actor.pool.connection() as conn:
                    deleted = await delete_older_than(
                        conn,
                        "_webhook_logs",
                        "updated_at",
                        retention_days,
                        only="status in ('delivered', 'failed')",
                    )
            except Exception:
                log.exception("webhook log retention failed", app=actor.app_name)
                continue
            if deleted:
                log.info("old webhook logs deleted", app=actor.app_name, count=deleted)

    return expire
