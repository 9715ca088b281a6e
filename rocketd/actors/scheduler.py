"""The scheduler: periodic jobs, each run by at most one rocketd instance at a time.

It owns the job table, the tasks of jobs running on this instance, and one autocommit connection
that holds the jobs' advisory locks. Before each run a job must win
`pg_try_advisory_lock(job_lock_key(name))`; an instance that loses skips that run. It must not do
any job's work itself, and must not assume a job runs once per interval across the cluster: the
lock prevents overlap, not repetition, so jobs are written to drain whatever is due (and be
harmless when nothing is).

Why session locks on a dedicated connection, rather than `pg_try_advisory_xact_lock` inside a
transaction: the xact form would keep a transaction open for the whole job, which shows up as
"idle in transaction", is killed by `idle_in_transaction_session_timeout`, and keeps a pooled
connection busy. A session lock holds nothing but the lock; it is released explicitly with
`pg_advisory_unlock` on the same connection after the job, and implicitly by PostgreSQL if this
process or its connection dies, so a crashed instance never blocks the others. The lock
connection is used only for lock calls, never handed to jobs or returned to a pool, so a lock can
not leak into someone else's session.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, LiteralString

import psycopg

from rocketd.actors.base import Actor, ConnectionSource, open_autocommit_connection
from rocketd.logging import get_logger

log = get_logger("rocketd.actors.scheduler")

JobFunction = Callable[[], Awaitable[None]]


def job_lock_key(job_name: str) -> int:
    """The advisory-lock key of a job: stable across processes, versions and machines.

    A keyed blake2b digest (not `hash()`, which is salted per process) read as a signed 64-bit
    integer, the type `pg_try_advisory_lock(bigint)` takes. The personalisation keeps these keys
    apart from advisory locks other code may derive from the same names.
    """
    digest = hashlib.blake2b(job_name.encode(), digest_size=8, person=b"rocketd.job").digest()
    return int.from_bytes(digest, "big", signed=True)


@dataclass(frozen=True)
class JobStats:
    """What happened to one job on this instance."""

    runs: int
    """Times this instance won the lock and ran the job (failed runs included)."""
    skips: int
    """Times the job was due but not run: another instance held its lock, or the lock failed."""
    failures: int
    """Runs that raised."""


@dataclass
class _Job:
    name: str
    interval: float
    function: JobFunction
    lock_key: int
    next_due: float = 0.0  # due at the first tick
    runs: int = 0
    skips: int = 0
    failures: int = 0
    task: asyncio.Task[None] | None = None


class Scheduler(Actor):
    """Runs registered jobs every `interval_seconds`, guarded by PostgreSQL advisory locks.

    The scheduler wakes at least every `tick_seconds` and whenever a job falls due. Each due job
    runs in its own task, so a slow job delays nobody else; a job is never started again on this
    instance while its previous run is still going.
    """

    def __init__(
        self,
        connect: ConnectionSource,
        *,
        name: str = "scheduler",
        tick_seconds: float = 1.0,
    ) -> None:
        if tick_seconds <= 0:
            raise ValueError(f"tick_seconds must be positive, got {tick_seconds}")
        super().__init__(name)
        self._connect = connect
        self._tick_seconds = tick_seconds
        self._jobs: dict[str, _Job] = {}
        self._lock_connection: psycopg.AsyncConnection[Any] | None = None
        self._connecting = asyncio.Lock()

    def add_job(self, name: str, interval_seconds: float, function: JobFunction) -> None:
        """Register a job; it first falls due at the next tick, then every `interval_seconds`.

        Every instance must register the job under the same name: the name is the lock.
        """
        if name in self._jobs:
            raise ValueError(f"a job named {name!r} is already scheduled; job names must be unique")
        if interval_seconds <= 0:
            raise ValueError(f"job {name!r}: interval_seconds must be positive")
        self._jobs[name] = _Job(name, interval_seconds, function, job_lock_key(name))

    def job_stats(self, name: str) -> JobStats:
        job = self._job(name)
        return JobStats(runs=job.runs, skips=job.skips, failures=job.failures)

    def job_running(self, name: str) -> bool:
        """Whether a run of the job (or its lock attempt) is in progress on this instance."""
        return self._job(name).task is not None

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            for job in self._jobs.values():
                if job.task is None and now >= job.next_due:
                    job.next_due = now + job.interval
                    job.task = asyncio.create_task(self._attempt(job), name=f"job:{job.name}")
            next_due = min((job.next_due for job in self._jobs.values()), default=now)
            await asyncio.sleep(min(self._tick_seconds, max(0.0, next_due - now)))

    async def on_stop(self) -> None:
        # Jobs are cancelled, not awaited to completion: they must tolerate it (they only drain
        # what is due), and a shutdown must not wait for a long report to finish.
        tasks = [job.task for job in self._jobs.values() if job.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        connection, self._lock_connection = self._lock_connection, None
        if connection is not None:
            await connection.close()  # releases any lock still held

    def _job(self, name: str) -> _Job:
        try:
            return self._jobs[name]
        except KeyError:
            raise KeyError(f"no job named {name!r} is scheduled on {self.name!r}") from None

    async def _attempt(self, job: _Job) -> None:
        try:
            try:
                connection = await self._get_lock_connection()
                won = await self._query_bool(
                    connection, "SELECT pg_try_advisory_lock(%s)", job.lock_key
                )
            except psycopg.Error as exc:
                job.skips += 1
                log.warning(
                    "scheduler could not take a job lock", job=job.name, error=str(exc).strip()
                )
                return
            if not won:
                job.skips += 1
                log.debug("scheduled job skipped: another instance holds it", job=job.name)
                return
            try:
                job.runs += 1
                await job.function()
            except Exception:
                job.failures += 1
                log.exception("scheduled job failed", job=job.name)
            finally:
                await self._release(connection, job)
        finally:
            job.task = None

    async def _get_lock_connection(self) -> psycopg.AsyncConnection[Any]:
        async with self._connecting:  # two jobs due together must not open two connections
            connection = self._lock_connection
            if connection is None or connection.broken or connection.closed:
                if connection is not None:
                    await connection.close()
                connection = await open_autocommit_connection(self._connect)
                self._lock_connection = connection
            return connection

    async def _release(self, connection: psycopg.AsyncConnection[Any], job: _Job) -> None:
        if connection.broken or connection.closed:
            return  # the session that held the lock is gone, and the lock went with it
        try:
            released = await self._query_bool(
                connection, "SELECT pg_advisory_unlock(%s)", job.lock_key
            )
        except psycopg.Error as exc:
            log.warning(
                "scheduler could not release a job lock", job=job.name, error=str(exc).strip()
            )
            return
        if not released:
            log.warning("scheduled job lock was not held at release", job=job.name)

    @staticmethod
    async def _query_bool(
        connection: psycopg.AsyncConnection[Any], query: LiteralString, lock_key: int
    ) -> bool:
        cursor = await connection.execute(query, (lock_key,))
        row = await cursor.fetchone()
        return bool(row is not None and row[0])
