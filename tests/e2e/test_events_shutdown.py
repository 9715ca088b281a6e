"""SIGTERM loses nothing buffered: a real `rocketd serve` whose flusher would not write for a
minute is stopped right after a burst of traced requests; every one of their events is in
`_events` afterwards."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import psycopg
import pytest

from tests.support.databases import dsn_for
from tests.support.helpers import wait_until
from tests.support.processes import Instance, free_port, new_app_admin, ready

pytestmark = pytest.mark.e2e

SLOW_FLUSH = {
    "ROCKET_INSTRUMENTATION_FLUSH_INTERVAL_MS": "60000",
    "ROCKET_INSTRUMENTATION_BUFFER_SIZE": "100000",
}
REQUESTS = 40


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_sigterm_flushes_the_buffer(
    http: aiohttp.ClientSession, pg_dsn: str, management_db: str, tmp_path: Path
) -> None:
    inst = Instance(
        dsn_for(pg_dsn, management_db), free_port(), tmp_path / "rocketd.log", SLOW_FLUSH
    )
    try:
        await wait_until(lambda: ready(http, inst), "rocketd ready", timeout=60)
        app, token = await new_app_admin(http, inst.base, "flush")
        # the app's start and login already sit in the buffer; the flusher waits a minute
        traces = [str(uuid.uuid4()) for _ in range(REQUESTS)]
        for trace_id in traces:
            headers = {"Authorization": f"Bearer {token}", "X-Trace-ID": trace_id}
            async with http.post(
                inst.base + f"/api/{app}/_events", json={"action": "burst"}, headers=headers
            ) as resp:
                assert resp.status == 200
        with psycopg.connect(dsn_for(pg_dsn, f"rocket_{app}")) as conn:
            before = conn.execute("select count(*) from _events").fetchone()
        assert before == (0,)  # nothing was written yet: all of it is in memory
    finally:
        code = inst.stop()
    assert code == 0, (tmp_path / "rocketd.log").read_text()[-2000:]
    with psycopg.connect(dsn_for(pg_dsn, f"rocket_{app}")) as conn:
        rows = conn.execute(
            "select trace_id::text, action from _events where trace_id = any(%s::uuid[])",
            (traces,),
        ).fetchall()
    assert {t for t, a in rows if a == "burst"} == set(traces)
    assert {t for t, a in rows if a == "request"} == set(traces)
