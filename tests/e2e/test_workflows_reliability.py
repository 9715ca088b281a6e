"""Workflow reliability with real rocketd processes on one database: a kill -9 in the middle of a
step, concurrent approvals through two instances, and 200 timeouts across three
instances (60 by default; 200 under the `full` marker, tests/support/sizes.py)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest

from tests.support.databases import dsn_for, unique_name
from tests.support.helpers import wait_until
from tests.support.orphans import die_with_test_process
from tests.support.paths import ROOT
from tests.support.processes import call, free_port
from tests.support.sizes import sizes

pytestmark = pytest.mark.e2e
PK = {"field": "id", "type": "uuid", "generated": True}
REQUEST = {
    "name": "request",
    "table": "requests",
    "primary_key": PK,
    "fields": [
        {"name": "id", "type": "uuid"},
        {"name": "status", "type": "string"},
        {"name": "gate_id", "type": "string"},
    ],
}
NOTE = {
    "name": "note",
    "table": "notes",
    "primary_key": PK,
    "fields": [{"name": "id", "type": "uuid"}, {"name": "text", "type": "string"}],
}
TRIGGER = {"type": "state_change", "entity": "request", "field": "status", "to": "go"}
CONTEXT = {"record_id": "record.id", "gate_id": "record.gate_id"}


def note(text: str) -> dict[str, Any]:
    return {"type": "create_record", "entity": "note", "data": {"text": text}}


class Node:
    """One rocketd process (restartable) with a fast workflow tick."""

    def __init__(self, dsn: str, log_dir: Path, index: int, workers: int = 1) -> None:
        self.dsn = dsn
        self.workers = workers
        self.port = free_port()
        self.log_dir = log_dir
        self.index = index
        self.base = f"http://127.0.0.1:{self.port}"
        self.starts = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROCKET_")}
        env.pop("DATABASE_URL", None)
        env.update(
            ROCKET_DATABASE_URL=self.dsn,
            ROCKET_SERVER_HOST="127.0.0.1",
            ROCKET_SERVER_WORKERS=str(self.workers),
            ROCKET_SERVER_PORT=str(self.port),
            ROCKET_AUTH_BCRYPT_COST="4",
            ROCKET_LOG_FORMAT="json",
            ROCKET_WORKFLOW_TICK_SECONDS="0.2",
        )
        self.starts += 1
        log = (self.log_dir / f"rocketd-{self.index}-{self.starts}.log").open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rocketd", "serve"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_test_process(),
        )
        log.close()

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> int | None:
        proc = self.proc
        if proc is None:
            return 0
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        return proc.returncode

    async def ready(self, http: aiohttp.ClientSession) -> None:
        async def up() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"rocketd exited early with {self.proc.returncode}")
            try:
                async with http.get(self.base + "/ready") as resp:
                    return resp.status == 200
            except aiohttp.ClientError:
                return False

        await wait_until(up, "instance ready", timeout=60, interval=0.05)


@pytest.fixture
def nodes(pg_dsn: str, management_db: str, tmp_path: Path) -> Iterator[Callable[..., list[Node]]]:
    dsn = dsn_for(pg_dsn, management_db)
    started: list[Node] = []

    def make(count: int, workers: int = 1) -> list[Node]:
        started.extend(Node(dsn, tmp_path, len(started) + i, workers) for i in range(count))
        return started

    yield make
    codes = [n.stop() for n in started]
    assert all(c == 0 for c in codes), [p.read_text()[-2000:] for p in tmp_path.glob("*.log")]


async def setup_app(
    http: aiohttp.ClientSession, node: Node, flow: dict[str, Any]
) -> tuple[str, str]:
    status, body = await call(
        http,
        "POST",
        node.base + "/api/_platform/auth/login",
        body={"email": "platform@localhost", "password": "changeme"},
    )
    assert status == 200, body
    app = unique_name("wf")
    status, body = await call(
        http, "POST", node.base + "/api/_platform/apps", body["data"]["access_token"], {"name": app}
    )
    assert status == 201, body
    status, body = await call(
        http,
        "POST",
        node.base + f"/api/{app}/auth/login",
        body={"email": "admin@localhost", "password": "changeme"},
    )
    token = body["data"]["access_token"]
    for entity in (REQUEST, NOTE):
        status, body = await call(
            http, "POST", node.base + f"/api/{app}/_admin/entities", token, entity
        )
        assert status == 201, body
    status, body = await call(http, "POST", node.base + f"/api/{app}/_admin/workflows", token, flow)
    assert status == 201, body
    return app, token


async def served_everywhere(
    http: aiohttp.ClientSession, nodes: list[Node], app: str, token: str
) -> None:
    for node in nodes:

        async def ok(node: Node = node) -> bool:
            s, got = await call(http, "GET", node.base + f"/api/{app}/_admin/workflows", token)
            return s == 200 and len(got["data"]) == 1

        await wait_until(ok, "every instance serving the workflow", timeout=15, interval=0.05)


def rows(pg_dsn: str, app: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn_for(pg_dsn, f"rocket_{app}")) as conn:
        return conn.execute(query.encode()).fetchall()


async def test_kill9_mid_step_resumes_without_running_a_step_twice(nodes: Any, pg_dsn: str) -> None:
    flow = {
        "name": "gated",
        "trigger": TRIGGER,
        "context": CONTEXT,
        "steps": [
            {"id": "one", "type": "action", "actions": [note("one")], "then": {"goto": "two"}},
            {
                "id": "two",
                "type": "action",
                "actions": [
                    note("two"),
                    {  # blocks on the gate row the test holds locked
                        "type": "set_field",
                        "entity": "request",
                        "record_id": "context.gate_id",
                        "field": "status",
                        "value": "opened",
                    },
                ],
                "then": {"goto": "three"},
            },
            {"id": "three", "type": "action", "actions": [note("three")]},
        ],
    }
    [node] = nodes(1)
    async with aiohttp.ClientSession() as http:
        await node.ready(http)
        app, token = await setup_app(http, node, flow)
        url = node.base + f"/api/{app}/request"
        status, gate = await call(http, "POST", url, token, {"status": "closed"})
        assert status == 201, gate
        gate_id = gate["data"]["id"]
        holder = psycopg.connect(dsn_for(pg_dsn, f"rocket_{app}"))
        try:
            holder.execute("select id from requests where id = %s for update", (gate_id,))
            status, body = await call(
                http, "POST", url, token, {"status": "go", "gate_id": gate_id}
            )
            assert status == 201, body

            async def blocked_in_two() -> bool:
                found = rows(
                    pg_dsn,
                    app,
                    "select current_step, jsonb_array_length(history) from _workflow_instances",
                )
                if found != [("two", 1)]:
                    return False
                waiting = rows(
                    pg_dsn,
                    app,
                    "select count(*) from pg_stat_activity where wait_event_type = 'Lock'"
                    f" and datname = 'rocket_{app}'",
                )
                return bool(waiting[0][0] >= 1)

            await wait_until(blocked_in_two, "step two blocked on the gate", timeout=15)
            node.kill9()
        finally:
            holder.rollback()
            holder.close()
        assert rows(pg_dsn, app, "select text from notes order by text") == [("one",)]
        node.start()
        await node.ready(http)

        async def completed() -> bool:
            found = rows(pg_dsn, app, "select status from _workflow_instances")
            return found == [("completed",)]

        await wait_until(completed, "the instance to resume and complete", timeout=30)
    [(history,)] = rows(pg_dsn, app, "select history from _workflow_instances")
    assert [(h["step"], h["status"]) for h in history] == [
        ("one", "completed"),
        ("two", "completed"),
        ("three", "completed"),
    ]
    texts = [r[0] for r in rows(pg_dsn, app, "select text from notes order by text")]
    assert texts == ["one", "three", "two"]  # every step's effects exactly once


async def test_concurrent_approvals_through_two_instances(nodes: Any, pg_dsn: str) -> None:
    flow = {
        "name": "approve_once",
        "trigger": TRIGGER,
        "context": CONTEXT,
        "steps": [
            {
                "id": "review",
                "type": "approval",
                "assignee": {"type": "role", "role": "admin"},
                "on_approve": {"goto": "done"},
                "on_reject": "end",
            },
            {"id": "done", "type": "action", "actions": [note("approved")]},
        ],
    }
    a, b = nodes(2)
    rounds = 10
    async with aiohttp.ClientSession() as http:
        await a.ready(http)
        await b.ready(http)
        app, token = await setup_app(http, a, flow)
        await served_everywhere(http, [a, b], app, token)
        for _ in range(rounds):
            status, body = await call(
                http, "POST", a.base + f"/api/{app}/request", token, {"status": "go"}
            )
            assert status == 201, body
        ids = [str(r[0]) for r in rows(pg_dsn, app, "select id from _workflow_instances")]
        assert len(ids) == rounds
        for instance_id in ids:
            path = f"/api/{app}/_workflows/{instance_id}/approve"
            results = await asyncio.gather(
                call(http, "POST", a.base + path, token, {}),
                call(http, "POST", b.base + path, token, {}),
            )
            statuses = sorted(s for s, _ in results)
            assert statuses == [200, 422], results
            loser = next(body for s, body in results if s == 422)
            assert loser["error"]["code"] == "INVALID_STATE"
    assert rows(pg_dsn, app, "select count(*) from notes") == [(rounds,)]
    for (history,) in rows(pg_dsn, app, "select history from _workflow_instances"):
        assert [h["status"] for h in history] == ["approved", "completed"]


@pytest.mark.parametrize("count", sizes(60, 200))
@pytest.mark.parametrize("workers", [1, 2])
async def test_200_timeouts_across_three_instances_fire_once_each(
    nodes: Any, pg_dsn: str, workers: int, count: int
) -> None:
    flow = {
        "name": "expire",
        "trigger": TRIGGER,
        "context": CONTEXT,
        "steps": [
            {
                "id": "review",
                "type": "approval",
                "assignee": {"type": "role", "role": "reviewer"},
                "timeout": "3s",
                "on_approve": "end",
                "on_timeout": {"goto": "expired"},
            },
            {
                "id": "expired",
                "type": "action",
                "actions": [
                    {
                        "type": "create_record",
                        "entity": "note",
                        "data": {"text": "context.record_id"},
                    }
                ],
            },
        ],
    }
    cluster = nodes(3, workers)  # workers=2: six workflow runners in six processes
    async with aiohttp.ClientSession() as http:
        for node in cluster:
            await node.ready(http)
        app, token = await setup_app(http, cluster[0], flow)
        await served_everywhere(http, cluster, app, token)
        sem = asyncio.Semaphore(20)

        async def create(i: int) -> None:
            async with sem:
                node = cluster[i % 3]
                status, body = await call(
                    http, "POST", node.base + f"/api/{app}/request", token, {"status": "go"}
                )
                assert status == 201, body

        await asyncio.gather(*(create(i) for i in range(count)))
        # All due together: push every deadline to the same instant.
        with psycopg.connect(dsn_for(pg_dsn, f"rocket_{app}")) as conn:
            conn.execute(
                "update _workflow_instances set current_step_deadline = now() + interval '1s'"
            )

        async def all_done() -> bool:
            found = rows(
                pg_dsn, app, "select count(*) from _workflow_instances where status = 'completed'"
            )
            return bool(found[0][0] == count)

        await wait_until(all_done, "every instance to time out", timeout=60, interval=0.2)
    for (history,) in rows(pg_dsn, app, "select history from _workflow_instances"):
        assert [h["status"] for h in history] == ["timed_out", "completed"]
    texts = Counter(r[0] for r in rows(pg_dsn, app, "select text from notes"))
    assert len(texts) == count and set(texts.values()) == {1}
