"""The files' background work: the periodic orphan sweep of every app served here.

Stored bytes without a `_files` row (an upload cut short, a crash between writing the bytes and
the row) are removed once they are older than the grace period; `POST /_admin/files/sweep` runs
the same sweep on demand. The job is a scheduler job, so one instance at a time runs it.
"""

from __future__ import annotations

from typing import Final

from rocketd.actors.app import AppActor
from rocketd.actors.directory import AppDirectory
from rocketd.actors.scheduler import JobFunction
from rocketd.capabilities.files import files
from rocketd.logging import get_logger
from rocketd.storage import StorageDriver

log = get_logger("rocketd.capabilities.files")

SWEEP_INTERVAL: Final = 3600.0


def sweep_every_app(directory: AppDirectory, storage: StorageDriver) -> JobFunction:
    async def sweep_one(actor: AppActor) -> None:
        report = await files.sweep_orphans(actor.pool, storage.for_app(actor.app_name, actor.pool))
        if report["removed"]:
            log.info("orphan files removed", app=actor.app_name, count=len(report["removed"]))

    async def sweep() -> None:
        await directory.each_running_app(sweep_one, what="orphan sweep")

    return sweep
