"""MetadataListener and Scheduler against a real PostgreSQL: NOTIFY delivery, reconnection after
the backend is killed, and advisory locks keeping a job to one instance at a time."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from structlog.testing import capture_logs

from rocketd.actors.listener import MetadataListener
from rocketd.actors.scheduler import Scheduler, job_lock_key
from rocketd.actors.supervisor import Supervisor
from rocketd.db.notify import MetadataChanged, send
from tests.support.helpers import wait_until

# Set by the autouse fixture below from the harness's server (env, local, or embedded).
SERVER_DSN = ""


@pytest.fixture(autouse=True)
def _server_dsn(pg_dsn: str) -> None:
    global SERVER_DSN
    SERVER_DSN = pg_dsn


def scratch_database_name() -> str:
    return f"rocket_test_actors_{secrets.token_hex(6)}"


async def create_database(name: str) -> str:
    async with await psycopg.AsyncConnection.connect(SERVER_DSN, autocommit=True) as admin:
        await admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return make_conninfo(SERVER_DSN, dbname=name)


async def drop_database(name: str) -> None:
    async with await psycopg.AsyncConnection.connect(SERVER_DSN, autocommit=True) as admin:
        await admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
async def database_dsn() -> AsyncIterator[str]:
    name = scratch_database_name()
    dsn = await create_database(name)
    try:
        yield dsn
    finally:
        await drop_database(name)


@pytest.fixture
async def supervisor() -> AsyncIterator[Supervisor]:
    supervisor = Supervisor(backoff_base=0.01, backoff_cap=0.05)
    try:
        yield supervisor
    finally:
        await supervisor.stop_all(timeout=5.0)


class Recorder:
    """The listener's callbacks, recording what they were given."""

    def __init__(self, failing_payload: str | None = None) -> None:
        self.payloads: list[str] = []
        self.reconnects = 0
        self.failing_payload = failing_payload

    async def on_notify(self, payload: str) -> None:
        if payload == self.failing_payload:
            raise RuntimeError(f"cannot reload {payload}")
        self.payloads.append(payload)

    async def on_reconnect(self) -> None:
        self.reconnects += 1


def make_listener(dsn: str, recorder: Recorder) -> MetadataListener:
    return MetadataListener(
        dsn,
        on_notify=recorder.on_notify,
        on_reconnect=recorder.on_reconnect,
        backoff_base=0.01,
        backoff_cap=0.05,
    )


async def start_listener(dsn: str, supervisor: Supervisor, recorder: Recorder) -> MetadataListener:
    listener = make_listener(dsn, recorder)
    await supervisor.add(listener)
    await listener.wait_listening(timeout=10.0)
    return listener


async def try_lock_elsewhere(dsn: str, job_name: str) -> bool:
    """Whether another session can take the job's advisory lock now (released again at once)."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cursor = await conn.execute("SELECT pg_try_advisory_lock(%s)", (job_lock_key(job_name),))
        row = await cursor.fetchone()
        return bool(row and row[0])


async def test_listener_receives_notify_and_recovers_after_its_backend_is_terminated(
    database_dsn: str, supervisor: Supervisor
) -> None:
    recorder = Recorder()
    listener = await start_listener(database_dsn, supervisor, recorder)
    assert listener.connected

    async with await psycopg.AsyncConnection.connect(database_dsn, autocommit=True) as other:
        await send(other, MetadataChanged("shop"))
        await wait_until(lambda: recorder.payloads == ["shop"], "the first notification")
        assert recorder.reconnects == 0

        killed_pid = listener.backend_pid
        assert killed_pid is not None
        await other.execute("SELECT pg_terminate_backend(%s)", (killed_pid,))
        await wait_until(lambda: recorder.reconnects == 1, "on_reconnect after the kill")

        assert listener.connected
        assert listener.backend_pid not in (None, killed_pid)
        await send(other, MetadataChanged("crm"))
        await wait_until(lambda: recorder.payloads == ["shop", "crm"], "the later notification")

    # The listener recovered inside its own run: no crash, no restart.
    assert supervisor.restarts(listener.name) == 0
    await supervisor.remove(listener)
    assert not listener.connected


async def test_a_notice_is_delivered_only_when_its_transaction_commits(
    database_dsn: str, supervisor: Supervisor
) -> None:
    recorder = Recorder()
    await start_listener(database_dsn, supervisor, recorder)

    async with await psycopg.AsyncConnection.connect(database_dsn) as writer:
        await send(writer, MetadataChanged("rolled-back"))
        await writer.rollback()
        await send(writer, MetadataChanged("committed"))
        await writer.commit()

    await wait_until(lambda: "committed" in recorder.payloads, "the committed notification")
    assert recorder.payloads == ["committed"]


async def test_listener_survives_a_failing_callback(
    database_dsn: str, supervisor: Supervisor
) -> None:
    recorder = Recorder(failing_payload="broken-app")
    listener = await start_listener(database_dsn, supervisor, recorder)

    with capture_logs() as logs:
        async with await psycopg.AsyncConnection.connect(database_dsn, autocommit=True) as other:
            await send(other, MetadataChanged("broken-app"))
            await send(other, MetadataChanged("good-app"))
            await wait_until(lambda: recorder.payloads == ["good-app"], "the next notification")

    failed = [e for e in logs if e["event"] == "metadata notification handler failed"]
    assert [e["app"] for e in failed] == ["broken-app"]
    assert listener.running
    assert supervisor.restarts(listener.name) == 0


async def test_listener_keeps_retrying_until_the_database_exists(supervisor: Supervisor) -> None:
    name = scratch_database_name()
    recorder = Recorder()
    listener = make_listener(make_conninfo(SERVER_DSN, dbname=name), recorder)
    try:
        with capture_logs() as logs:
            await supervisor.add(listener)
            await wait_until(
                lambda: sum(e["event"] == "metadata listener disconnected" for e in logs) >= 2,
                "two failed connection attempts",
            )
        assert not listener.connected
        await create_database(name)
        await listener.wait_listening(timeout=10.0)
        assert recorder.reconnects == 0  # it never listened before, so nothing was missed
    finally:
        await supervisor.remove(listener)
        await drop_database(name)


async def test_job_holds_its_advisory_lock_only_while_it_runs(
    database_dsn: str, supervisor: Supervisor
) -> None:
    release = asyncio.Event()

    async def blocking_job() -> None:
        await release.wait()

    scheduler = Scheduler(database_dsn, tick_seconds=0.01)
    scheduler.add_job("report", 3600.0, blocking_job)
    await supervisor.add(scheduler)

    await wait_until(lambda: scheduler.job_stats("report").runs == 1, "the first run")
    assert not await try_lock_elsewhere(database_dsn, "report")
    release.set()
    await wait_until(lambda: not scheduler.job_running("report"), "the run to finish")
    assert await try_lock_elsewhere(database_dsn, "report")
    assert scheduler.job_stats("report").runs == 1  # not due again for an hour


async def test_two_schedulers_never_run_the_same_job_at_once(
    database_dsn: str, supervisor: Supervisor
) -> None:
    release = asyncio.Event()
    active = 0
    max_active = 0

    async def job() -> None:
        nonlocal active, max_active
        active += 1
        max_active = max(max_active, active)
        try:
            await release.wait()
            # The job's "work": gives the other instance's tick a chance to interleave.
            await asyncio.sleep(0.002)
        finally:
            active -= 1

    first = Scheduler(database_dsn, name="scheduler-a", tick_seconds=0.01)
    second = Scheduler(database_dsn, name="scheduler-b", tick_seconds=0.01)
    for scheduler in (first, second):
        scheduler.add_job("retention", 0.01, job)

    def runs(scheduler: Scheduler) -> int:
        return scheduler.job_stats("retention").runs

    await supervisor.add(first)
    await wait_until(lambda: runs(first) == 1, "the first instance to hold the job")
    await supervisor.add(second)
    await wait_until(
        lambda: second.job_stats("retention").skips >= 3, "the second instance to skip the job"
    )
    assert runs(second) == 0
    assert max_active == 1

    release.set()
    await wait_until(lambda: runs(first) + runs(second) >= 20, "twenty runs in all")
    assert max_active == 1

    # Stopping the first instance closes its lock connection: the second one takes over.
    await supervisor.remove(first)
    second_runs = runs(second)
    await wait_until(lambda: runs(second) >= second_runs + 3, "the second instance to run it")
    assert max_active == 1
    assert second.job_stats("retention").failures == 0


async def test_failing_job_is_logged_and_does_not_stop_the_scheduler(
    database_dsn: str, supervisor: Supervisor
) -> None:
    healthy_runs = 0

    async def broken_job() -> None:
        raise RuntimeError("disk full")

    async def healthy_job() -> None:
        nonlocal healthy_runs
        healthy_runs += 1

    scheduler = Scheduler(database_dsn, tick_seconds=0.01)
    scheduler.add_job("broken", 0.01, broken_job)
    scheduler.add_job("healthy", 0.01, healthy_job)
    with capture_logs() as logs:
        await supervisor.add(scheduler)
        await wait_until(
            lambda: scheduler.job_stats("broken").failures >= 3 and healthy_runs >= 3,
            "repeated failures alongside healthy runs",
        )

    assert scheduler.running
    assert supervisor.restarts(scheduler.name) == 0
    failed = [e for e in logs if e["event"] == "scheduled job failed"]
    assert failed and all(e["job"] == "broken" for e in failed)
    assert failed[0]["exc_info"] is True  # logged with its traceback
