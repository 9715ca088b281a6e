"""Files: uploads streamed to storage, downloads with Range and ETag, `file` fields, the orphan
sweep.

Public API for other capabilities: `STORAGE` (the storage backend service).
"""

from __future__ import annotations

from rocketd.capabilities.files import routes
from rocketd.capabilities.files.jobs import SWEEP_INTERVAL, sweep_every_app
from rocketd.capabilities.files.service import STORAGE
from rocketd.capabilities.files.stages import STAGES
from rocketd.extensions import Capability, StartContext
from rocketd.storage import open_storage


async def start(ctx: StartContext) -> None:
    """Every instance serves files (the storage service); background instances sweep orphans."""
    settings = ctx.settings.storage
    storage = open_storage(settings.driver, settings.local_path, settings.chunk_size)
    ctx.provide(STORAGE, storage)
    if ctx.scheduler is not None:
        ctx.scheduler.add_job(
            "files-orphan-sweep", SWEEP_INTERVAL, sweep_every_app(ctx.directory, storage)
        )


CAPABILITY = Capability(name="files", stages=STAGES, add_routes=routes.add_routes, start=start)

__all__ = ["CAPABILITY", "STORAGE"]
