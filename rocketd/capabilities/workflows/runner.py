"""WorkflowRunner: advances workflow instances after their trigger commits, on every instance.

Woken by the `workflows` signal (a NOTIFY sent by the write that created instances, delivered
only on commit, to every rocketd instance): it drains the app's runnable instances. Every step
claims its instance row with `FOR UPDATE SKIP LOCKED`, so instances woken together share the work
and never run a step twice (engine.workflows). Two scheduler jobs cover what a signal cannot:
`workflow-resume` picks up instances left behind by a crash or a lost notification, and
`workflow-timeouts` fires due approval timeouts. With `workflow_retention_days` set, the hourly
`workflow-retention` job deletes finished instances older than that.
"""

from __future__ import annotations

import asyncio
from typing import Any

from rocketd.actors.app import AppActor
from rocketd.actors.base import Actor
from rocketd.actors.directory import AppDirectory
from rocketd.actors.scheduler import Scheduler
from rocketd.actors.supervisor import Supervisor
from rocketd.capabilities.workflows import instances as workflows
from rocketd.logging import get_logger

log = get_logger("rocketd.capabilities.workflows.runner")

CONCURRENCY = 4  # instances advanced at once per app (each holds one pool connection)
RETENTION_INTERVAL = 3600.0  # seconds between retention sweeps


class WorkflowRunner(Actor):
    crash_on_error = False

    def __init__(self, directory: AppDirectory, retention_days: float = 0.0) -> None:
        super().__init__("workflow-runner")
        self._directory = directory
        self._retention_days = retention_days
        self._queued: set[str] = set()

    def wake(self, app_name: str) -> None:
        """Signal handler (must not block): drain `app_name` soon; repeated wakes coalesce."""
        if app_name in self._queued or not self.running:
            return
        self._queued.add(app_name)
        self.tell(app_name)

    async def handle(self, message: object) -> Any:
        if not isinstance(message, str):
            return None
        self._queued.discard(message)
        actor = self._directory.actors.get(message)
        if actor is not None and actor.running:
            await drain(actor)
        return None

    async def resume_all(self) -> None:
        """Scheduler job: run every app's runnable instances (after a crash or lost signal)."""
        await self._directory.each_running_app(drain, what="workflow resume")

    async def timeouts(self) -> None:
        """Scheduler job: fire due approval timeouts in every app, then run what they resumed."""
        await self._directory.each_running_app(_fire_timeouts, what="workflow timeouts")

    async def purge(self) -> None:
        """Scheduler job: delete finished instances past the retention period in every app."""

        async def purge_one(actor: AppActor) -> None:
            async with actor.pool.connection() as conn:
                deleted = await workflows.purge_finished(conn, self._retention_days)
            if deleted:
                log.info("finished workflow instances deleted", app=actor.app_name, count=deleted)

        await self._directory.each_running_app(purge_one, what="workflow retention")


async def _fire_timeouts(actor: AppActor) -> None:
    async with actor.pool.connection() as conn:
        resumed = await workflows.fire_timeouts(conn, actor.snapshot, actor.context)
    if resumed:
        await drain(actor)


async def drain(actor: AppActor) -> None:
    """Advance runnable instances of one app until none is left unclaimed."""
    limit = asyncio.Semaphore(CONCURRENCY)

    async def one(instance_id: Any) -> None:
        async with limit:
            try:
                async with actor.pool.connection() as conn:
                    await workflows.advance(conn, actor.context, instance_id)
            except Exception:
                log.exception("workflow advance failed", app=actor.app_name)

    seen: set[Any] = set()
    while True:
        async with actor.pool.connection() as conn:
            ids = [i for i in await workflows.runnable(conn) if i not in seen]
        if not ids:
            return
        seen.update(ids)  # one attempt per drain: a failing instance waits for the next sweep
        await asyncio.gather(*(one(i) for i in ids))
        if len(ids) < workflows.CLAIM_BATCH:
            return


async def install(
    supervisor: Supervisor,
    directory: AppDirectory,
    scheduler: Scheduler,
    tick_seconds: float,
    retention_days: float = 0.0,
) -> WorkflowRunner:
    runner = WorkflowRunner(directory, retention_days)
    await supervisor.add(runner)
    directory.add_signal_handler(workflows.SIGNAL, runner.wake)
    scheduler.add_job("workflow-timeouts", tick_seconds, runner.timeouts)
    scheduler.add_job("workflow-resume", tick_seconds, runner.resume_all)
    if retention_days > 0:
        scheduler.add_job("workflow-retention", RETENTION_INTERVAL, runner.purge)
    return runner
