"""Retention as a scheduler job: one table's old rows leave every app served here, in batches
(`db.retention.delete_older_than`). An app whose database fails is logged and skipped; the others
go on. The events and webhooks capabilities each schedule one such job."""

from __future__ import annotations

from typing import Any, LiteralString

from rocketd.actors.app import AppActor
from rocketd.actors.directory import AppDirectory
from rocketd.actors.scheduler import JobFunction
from rocketd.db.retention import delete_older_than


def retention_job(
    directory: AppDirectory,
    *,
    table: str,
    column: str,
    days: float,
    what: str,
    log: Any,
    only: LiteralString = "true",
) -> JobFunction:
    """A job deleting rows of `table` whose `column` is older than `days` (and that match the
    fixed condition `only`) in every running app; `what` names them in the log."""

    async def expire_one(actor: AppActor) -> None:
        async with actor.pool.connection() as conn:
            deleted = await delete_older_than(conn, table, column, days, only=only)
        if deleted:
            log.info(f"old {what} deleted", app=actor.app_name, count=deleted)

    async def expire() -> None:
        await directory.each_running_app(expire_one, what=f"{what} retention")

    return expire
