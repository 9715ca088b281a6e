"""Instance roles with real rocketd processes on one database: A is API-only
(`background_work: false`), B does the background work.

Writes through A insert outbox rows and workflow instances that B delivers and runs; with B
stopped they wait (A never delivers or advances anything), and a new B drains them. Meanwhile A
keeps serving what happens inside a request: sync `before_write` webhooks (the outbound policy,
`allow_networks` included) and approvals, which advance their instance in the request itself.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest

from tests.support.cli import rocketd
from tests.support.databases import dsn_for
from tests.support.helpers import wait_until
from tests.support.processes import Instance, call, free_port, new_app_admin, ready
from tests.support.receiver import Receiver

pytestmark = pytest.mark.e2e

TICK = 0.2  # the sweep interval and workflow tick of the instances with background work
ENV = {
    "ROCKET_WEBHOOKS_ALLOW_NETWORKS": "127.0.0.0/8",
    "ROCKET_WEBHOOKS_SWEEP_INTERVAL": str(TICK),
    "ROCKET_WEBHOOKS_RETRY_BASE_SECONDS": "0.2",
    "ROCKET_WORKFLOW_TICK_SECONDS": str(TICK),
}
API_ONLY = {**ENV, "ROCKET_BACKGROUND_WORK": "false"}
BACKGROUND = {**ENV, "ROCKET_BACKGROUND_WORK": "true"}
PK = {"field": "id", "type": "uuid", "generated": True}


def entity(name: str, *fields: str) -> dict[str, Any]:
    return {
        "name": name,
        "table": f"{name}s",
        "primary_key": PK,
        "fields": [{"name": "id", "type": "uuid"}]
        + [{"name": f, "type": "string"} for f in fields],
    }


def audit(text: str) -> dict[str, Any]:
    return {"type": "create_record", "entity": "audit", "data": {"text": text}}


def trigger(to: str) -> dict[str, Any]:
    return {"type": "state_change", "entity": "request", "field": "status", "to": to}


AUTO = {
    "name": "auto",
    "trigger": trigger("go"),
    "context": {"record_id": "record.id"},
    "steps": [{"id": "work", "type": "action", "actions": [audit("auto")]}],
}
REVIEW = {
    "name": "review",
    "trigger": trigger("review"),
    "context": {"record_id": "record.id"},
    "steps": [
        {
            "id": "decide",
            "type": "approval",
            "assignee": {"type": "role", "role": "admin"},
            "on_approve": {"goto": "done"},
            "on_reject": "end",
        },
        {"id": "done", "type": "action", "actions": [audit("approved")]},
    ],
}


class Deployment:
    def __init__(self, dsn: str, tmp_path: Path) -> None:
        self.dsn = dsn
        self.tmp_path = tmp_path
        self.started: list[Instance] = []

    def start(self, env: dict[str, str]) -> Instance:
        path = self.tmp_path / f"rocketd-{len(self.started)}.log"
        inst = Instance(self.dsn, free_port(), path, env)
        self.started.append(inst)
        return inst


@pytest.fixture
def deployment(pg_dsn: str, management_db: str, tmp_path: Path) -> Iterator[Deployment]:
    d = Deployment(dsn_for(pg_dsn, management_db), tmp_path)
    try:
        yield d
    finally:
        codes = [inst.stop() for inst in d.started]
        assert all(c == 0 for c in codes), [p.read_text()[-2000:] for p in tmp_path.glob("*.log")]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def setup_app(
    http: aiohttp.ClientSession, base: str, hooks: Receiver, gate: Receiver
) -> tuple[str, str]:
    app, token = await new_app_admin(http, base, "roles")
    admin = base + f"/api/{app}/_admin"
    for e in (entity("note", "text"), entity("gated", "text"), entity("request", "status")):
        status, body = await call(http, "POST", admin + "/entities", token, e)
        assert status == 201, body
    status, body = await call(http, "POST", admin + "/entities", token, entity("audit", "text"))
    assert status == 201, body
    for hook in (
        {"entity": "note", "hook": "after_write", "url": hooks.url},
        {"entity": "gated", "hook": "before_write", "url": gate.url},
    ):
        status, body = await call(http, "POST", admin + "/webhooks", token, hook)
        assert status == 201, body
    for flow in (AUTO, REVIEW):
        status, body = await call(http, "POST", admin + "/workflows", token, flow)
        assert status == 201, body
    return app, token


async def test_api_only_instance_leaves_deliveries_and_steps_to_a_background_instance(
    deployment: Deployment, http: aiohttp.ClientSession, pg_dsn: str, tmp_path: Path
) -> None:
    hooks = await Receiver().start()
    gate = await Receiver().start()
    try:
        a, b = deployment.start(API_ONLY), deployment.start(BACKGROUND)
        for inst in (a, b):
            await wait_until(lambda inst=inst: ready(http, inst), "instance ready", timeout=60)
        app, token = await setup_app(http, a.base, hooks, gate)
        app_db = dsn_for(pg_dsn, f"rocket_{app}")

        def query(statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
            with psycopg.connect(app_db, autocommit=True) as conn:
                return conn.execute(statement.encode(), params).fetchall()

        def log_status(record_id: str) -> list[tuple[Any, ...]]:
            return query(
                "select status, attempt from _webhook_logs"
                " where hook = 'after_write' and request_body->'record'->>'id' = %s",
                (record_id,),
            )

        def instance_status(record_id: str) -> list[tuple[Any, ...]]:
            return query(
                "select status, jsonb_array_length(history) from _workflow_instances"
                " where context->>'record_id' = %s",
                (record_id,),
            )

        async def write(entity_name: str, body: dict[str, Any], expected: int = 201) -> Any:
            status, got = await call(
                http, "POST", a.base + f"/api/{app}/{entity_name}", token, body
            )
            assert status == expected, got
            return got

        # 1. Both up: A's writes are delivered and run by B.
        note = (await write("note", {"text": "both up"}))["data"]["id"]
        go = (await write("request", {"status": "go"}))["data"]["id"]
        await wait_until(lambda: log_status(note) == [("delivered", 1)], "B delivers", 20, 0.02)
        await wait_until(lambda: instance_status(go) == [("completed", 1)], "B runs it", 20, 0.02)
        assert [r.json["record"]["id"] for r in hooks.received] == [note]

        # 2. B stopped: A alone leaves the outbox row and the instance alone...
        assert b.stop() == 0
        waiting_note = (await write("note", {"text": "A alone"}))["data"]["id"]
        waiting_go = (await write("request", {"status": "go"}))["data"]["id"]

        # ...while what happens inside a request still works on A: a sync before_write webhook
        # (to 127.0.0.1, so A has the outbound policy with allow_networks)...
        gated = (await write("gated", {"text": "let through"}))["data"]["id"]
        assert [r.json["record"]["text"] for r in gate.received] == ["let through"]
        assert query("select status from _webhook_logs where hook = 'before_write'") == [
            ("delivered",)
        ]
        gate.status = 500
        refused = await write("gated", {"text": "refused"}, expected=422)
        assert refused["error"]["code"] == "VALIDATION_FAILED", refused
        assert query("select id::text from gateds") == [(gated,)]
        # ...and an approval, which runs the following steps in the request.
        review = (await write("request", {"status": "review"}))["data"]["id"]
        [(instance_id,)] = query(
            "select id::text from _workflow_instances where context->>'record_id' = %s",
            (review,),
        )
        status, decided = await call(
            http, "POST", a.base + f"/api/{app}/_workflows/{instance_id}/approve", token, {}
        )
        assert status == 200, decided
        assert decided["data"]["status"] == "completed", decided
        assert [h["status"] for h in decided["data"]["history"]] == ["approved", "completed"]

        # Waiting for something not to happen, with a sentinel: A has no scheduler (no sweeps, no
        # ticks: tests/integration/test_instance_roles.py), so only the writes' commit signals
        # could set it to work. A metadata change saved by another process after them (the CLI,
        # which takes far longer to start than a signal's 2 ms coalescing delay) reaches A's
        # listener after those signals, which it handles in order: once A serves the new
        # entity, A has had every signal of the writes.
        sentinel = tmp_path / "sentinel.json"
        sentinel.write_text(json.dumps({"version": 1, "entities": [entity("sentinel", "text")]}))
        env = {"ROCKET_DATABASE_URL": deployment.dsn, "ROCKET_LOG_LEVEL": "error"}
        out = await asyncio.to_thread(rocketd, "import", app, str(sentinel), env=env)
        assert out.returncode == 0, out.stderr

        async def a_serves_the_sentinel() -> bool:
            status, _ = await call(http, "GET", a.base + f"/api/{app}/sentinel", token)
            return status == 200

        await wait_until(a_serves_the_sentinel, "A to load the sentinel entity", 20, 0.02)
        assert log_status(waiting_note) == [("pending", 0)]
        assert instance_status(waiting_go) == [("running", 0)]
        assert len(hooks.received) == 1

        # 3. A new background instance drains what waited.
        b2 = deployment.start(BACKGROUND)
        await wait_until(lambda: ready(http, b2), "background instance ready", timeout=60)
        await wait_until(
            lambda: log_status(waiting_note) == [("delivered", 1)], "the delivery", 20, 0.02
        )
        await wait_until(
            lambda: instance_status(waiting_go) == [("completed", 1)], "the instance", 20, 0.02
        )
        assert [r.json["record"]["id"] for r in hooks.received] == [note, waiting_note]
        texts = sorted(r[0] for r in query("select text from audits"))
        assert texts == ["approved", "auto", "auto"]
    finally:
        await hooks.stop()
        await gate.stop()
    assert "background work is off on this instance" in Path(a.log.name).read_text()
