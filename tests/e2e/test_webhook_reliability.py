"""Webhook reliability with real rocketd processes and a real receiver on 127.0.0.1.

* 1,000 writes (300 by default; 1,000 under the `full` marker, tests/support/sizes.py) while
  the receiver fails 30 % of requests and the only rocketd process is killed (-9) and replaced
  in the middle: every committed write is delivered at least once, and each
  idempotency key only ever carries one event (duplicates are retries of the same event). Each
  attempt is recorded as it completes, so until the kill the receiver is never more than
  `webhooks.concurrency` requests ahead of the recorded attempts, and the kill makes the receiver
  accept at most that many events a second time.
* Three instances on one database: every event is delivered exactly once (no instance sends a
  row another one has claimed); 120 events by default, 300 under `full`.

The slow sync receiver (rolls the write back, leaves no outbox row) is in
tests/integration/capabilities/webhooks/test_webhooks_api.py::test_sync_hooks_gate_the_write.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest

from tests.support.databases import dsn_for
from tests.support.helpers import wait_until
from tests.support.processes import Instance, call, free_port, new_app_admin, ready
from tests.support.receiver import Receiver
from tests.support.sizes import sizes

pytestmark = pytest.mark.e2e

WEBHOOK_ENV = {
    "ROCKET_WEBHOOKS_ALLOW_NETWORKS": "127.0.0.0/8",
    "ROCKET_WEBHOOKS_RETRY_BASE_SECONDS": "0.2",
    "ROCKET_WEBHOOKS_SWEEP_INTERVAL": "0.5",
    "ROCKET_WEBHOOKS_TIMEOUT": "2",
    "ROCKET_WEBHOOKS_BREAKER_COOLDOWN": "0.3",
}
NOTE = {
    "name": "note",
    "table": "notes",
    "primary_key": {"field": "id", "type": "uuid", "generated": True},
    "fields": [{"name": "id", "type": "uuid"}, {"name": "n", "type": "integer"}],
}


class Cluster:
    def __init__(self, dsn: str, tmp_path: Path) -> None:
        self.dsn = dsn
        self.tmp_path = tmp_path
        self.instances: list[Instance] = []

    def start(self, **env: str) -> Instance:
        n = len(self.instances)
        log_path = self.tmp_path / f"rocketd-{n}.log"
        inst = Instance(self.dsn, free_port(), log_path, {**WEBHOOK_ENV, **env})
        self.instances.append(inst)
        return inst

    def logs(self) -> list[str]:
        return [p.read_text()[-3000:] for p in self.tmp_path.glob("*.log")]


@pytest.fixture
def cluster(pg_dsn: str, management_db: str, tmp_path: Path) -> Any:
    c = Cluster(dsn_for(pg_dsn, management_db), tmp_path)
    yield c
    for inst in c.instances:
        inst.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def setup_app(http: aiohttp.ClientSession, base: str, receiver: Receiver) -> tuple[str, str]:
    app, token = await new_app_admin(http, base, "hooks")
    status, body = await call(http, "POST", base + f"/api/{app}/_admin/entities", token, NOTE)
    assert status == 201, body
    hook = {"entity": "note", "url": receiver.url, "retry": {"max_attempts": 20}}
    status, body = await call(http, "POST", base + f"/api/{app}/_admin/webhooks", token, hook)
    assert status == 201, body
    return app, token


def stored_ids(dsn: str, app: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        return {str(r[0]) for r in conn.execute("select id from notes").fetchall()}


def app_dsn(cluster: Cluster, app: str) -> str:
    base, _, _ = cluster.dsn.rpartition("/")
    return f"{base}/rocket_{app}"


def recorded_attempts(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("select coalesce(sum(attempt), 0) from _webhook_logs").fetchone()
    assert row is not None
    return int(row[0])


def repeated_successes(receiver: Receiver) -> int:
    """Requests answered 2xx for an idempotency key that had already been answered 2xx."""
    successes: dict[str, int] = defaultdict(int)
    for got, status in zip(receiver.received, receiver.statuses, strict=True):
        if 200 <= status < 300:
            successes[got.json["idempotency_key"]] += 1
    return sum(count - 1 for count in successes.values())


@pytest.mark.parametrize("total", sizes(300, 1000))
async def test_nothing_lost_with_failures_and_a_kill(
    cluster: Cluster, http: aiohttp.ClientSession, total: int
) -> None:
    receiver = await Receiver(fail_ratio=0.3, delay=0.005).start()
    concurrency = 4  # small, so that a batch claimed at once is much larger than what is in flight
    try:
        first = cluster.start(ROCKET_WEBHOOKS_CONCURRENCY=str(concurrency))
        await wait_until(lambda: ready(http, first), "instance ready", timeout=60)
        app, token = await setup_app(http, first.base, receiver)
        hooks_dsn = app_dsn(cluster, app)
        current = [first]
        # Requests the receiver has seen minus attempts recorded in `_webhook_logs`, sampled in
        # that order (so never overestimated) while the first instance runs.
        unrecorded: list[int] = []
        first_alive = True

        async def watch_unrecorded() -> None:
            # One connection for all samples: a connection per sample took so long on a loaded
            # machine that the first instance's half ran out before ten samples were taken.
            async with await psycopg.AsyncConnection.connect(hooks_dsn, autocommit=True) as conn:
                while first_alive:
                    seen = len(receiver.received)
                    cur = await conn.execute("select coalesce(sum(attempt), 0) from _webhook_logs")
                    row = await cur.fetchone()
                    assert row is not None
                    unrecorded.append(seen - int(row[0]))
                    await asyncio.sleep(0.01)  # a sampling period, not a wait for a condition

        acknowledged: set[str] = set()
        failed_writes = 0
        workers = 16
        counter = iter(range(total))

        up = asyncio.Event()
        up.set()

        async def writer() -> None:
            nonlocal failed_writes, first_alive
            for n in counter:
                if n == total // 2:
                    # Enough samples of the first instance's deliveries for the bound below to
                    # mean something, however fast the first half of the writes went.
                    await wait_until(lambda: len(unrecorded) > 10, "samples", timeout=60)
                    up.clear()
                    first_alive = False
                    first.proc.kill()  # -9, in the middle of writes and deliveries
                    await asyncio.to_thread(first.proc.wait, 10)
                    second = cluster.start(ROCKET_WEBHOOKS_CONCURRENCY=str(concurrency))
                    await wait_until(lambda s=second: ready(http, s), "restart", timeout=60)
                    current[0] = second
                    up.set()
                await up.wait()
                base = current[0].base
                try:
                    status, body = await call(
                        http, "POST", base + f"/api/{app}/note", token, {"n": n}
                    )
                except (aiohttp.ClientError, OSError):
                    failed_writes += 1
                    continue
                if status == 201:
                    acknowledged.add(body["data"]["id"])
                else:
                    failed_writes += 1

        watcher = asyncio.create_task(watch_unrecorded())
        await asyncio.gather(*(writer() for _ in range(workers)))
        await watcher
        assert len(acknowledged) >= total - workers * 2, failed_writes
        # Each attempt is recorded as it completes: never more unrecorded than in flight.
        assert len(unrecorded) > 10 and max(unrecorded) <= concurrency, max(unrecorded)

        def delivered_ids() -> dict[str, set[str]]:
            by_key: dict[str, set[str]] = defaultdict(set)
            for got in receiver.received:
                payload = got.json
                by_key[payload["idempotency_key"]].add(payload["record"]["id"])
            return by_key

        committed = stored_ids(app_dsn(cluster, app), app)
        assert acknowledged <= committed

        def all_delivered() -> bool:
            successes = {
                got.json["record"]["id"]
                for got, status in zip(receiver.received, receiver.statuses, strict=True)
                if 200 <= status < 300
            }
            return committed <= successes

        await wait_until(all_delivered, "every committed write delivered", 120, 0.25)
        by_key = delivered_ids()
        # One event per key: duplicates are only retries of the same event.
        assert all(len(ids) == 1 for ids in by_key.values())
        # Every committed write has exactly one key (no event enqueued twice), none lost.
        assert sorted(next(iter(ids)) for ids in by_key.values()) == sorted(committed)
        assert len(receiver.received) > len(committed)  # the 30 % failures were retried
        # The kill repeats at most the deliveries that were in flight (docs/webhooks.md).
        assert repeated_successes(receiver) <= concurrency, repeated_successes(receiver)
    finally:
        await receiver.stop()
    codes = [inst.stop() for inst in cluster.instances]
    assert codes[-1] == 0, cluster.logs()


@pytest.mark.parametrize("total", sizes(120, 300))
@pytest.mark.parametrize("workers", [1, 2])
async def test_three_instances_never_deliver_an_event_twice(
    cluster: Cluster, http: aiohttp.ClientSession, workers: int, total: int
) -> None:
    # workers=2: six dispatchers in six processes (rocketd serve --workers 2, three times).
    receiver = await Receiver(delay=0.05).start()
    try:
        nodes = [cluster.start(ROCKET_SERVER_WORKERS=str(workers)) for _ in range(3)]
        for node in nodes:
            await wait_until(lambda node=node: ready(http, node), "instance ready", timeout=60)
        app, token = await setup_app(http, nodes[0].base, receiver)

        async def wait_for_hook(node: Instance) -> bool:
            s, body = await call(http, "GET", node.base + f"/api/{app}/_admin/webhooks", token)
            return s == 200 and len(body["data"]) == 1

        for node in nodes:
            await wait_until(lambda node=node: wait_for_hook(node), "hook loaded", timeout=10)

        async def write(n: int) -> None:
            base = nodes[n % 3].base
            status, body = await call(http, "POST", base + f"/api/{app}/note", token, {"n": n})
            assert status == 201, body

        for chunk in range(0, total, 30):
            await asyncio.gather(*(write(n) for n in range(chunk, chunk + 30)))
        started = time.monotonic()
        await wait_until(lambda: len(receiver.received) >= total, "deliveries", 60, 0.05)
        dsn = app_dsn(cluster, app)

        def drained() -> bool:
            # No row left to claim (so none can be sent again), and every recorded attempt has
            # reached the receiver: a duplicate would show as an extra request here.
            with psycopg.connect(dsn) as conn:
                row = conn.execute(
                    "select count(*) filter (where status in ('pending', 'retrying')),"
                    " coalesce(sum(attempt), 0) from _webhook_logs"
                ).fetchone()
            assert row is not None
            return row[0] == 0 and row[1] == len(receiver.received)

        await wait_until(drained, "the dispatchers to drain", 30, 0.05)
        assert recorded_attempts(dsn) == total  # one attempt per event, none repeated
        keys = [got.json["idempotency_key"] for got in receiver.received]
        assert len(keys) == total and len(set(keys)) == total, len(keys)
        assert time.monotonic() - started < 60
    finally:
        await receiver.stop()
    codes = [inst.stop() for inst in cluster.instances]
    assert codes == [0, 0, 0], cluster.logs()
