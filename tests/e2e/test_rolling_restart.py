"""A rolling restart under constant load loses no request.

Two instances on one database behind a client-side balancer that sends each request to an
instance whose `/ready` last answered 200 (polled every 100 ms, as a load balancer's health check
would), over keep-alive connections. Each instance in turn gets SIGTERM and is started again
while sixteen clients keep reading and writing: `/ready` turns 503 first (`server.drain_delay`),
responses then close their connections, in-flight requests finish, and the balancer never sees
a refused connection, a reset, or a 5xx.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import aiohttp
import pytest

from tests.support.databases import dsn_for
from tests.support.helpers import wait_until
from tests.support.processes import Instance, call, free_port, new_app_admin, ready
from tests.support.schemas import NOTE

pytestmark = pytest.mark.e2e

DRAIN_ENV = {"ROCKET_SERVER_DRAIN_DELAY": "1.0", "ROCKET_SERVER_SHUTDOWN_TIMEOUT": "10"}


class Balancer:
    """Round robin over the instances whose last health check passed."""

    def __init__(self, http: aiohttp.ClientSession, bases: list[str]) -> None:
        self.http = http
        self.bases = bases
        self.healthy: set[str] = set()
        self._turn = itertools.count()

    async def check_forever(self) -> None:
        while True:
            for base in self.bases:
                try:
                    async with self.http.get(base + "/ready") as resp:
                        up = resp.status == 200
                except (aiohttp.ClientError, OSError):
                    up = False
                (self.healthy.add if up else self.healthy.discard)(base)
            await asyncio.sleep(0.1)  # the health-check period

    def pick(self) -> str | None:
        live = [base for base in self.bases if base in self.healthy]
        return live[next(self._turn) % len(live)] if live else None


@pytest.mark.parametrize("workers", [1, 2])
async def test_rolling_restart_of_two_instances_fails_no_request(
    pg_dsn: str, management_db: str, tmp_path: Path, workers: int
) -> None:
    # workers=2: each instance is a supervisor whose SIGTERM drains both of its workers.
    dsn = dsn_for(pg_dsn, management_db)
    ports = [free_port(), free_port()]
    logs = itertools.count()

    def start(port: int) -> Instance:
        env = {**DRAIN_ENV, "ROCKET_SERVER_WORKERS": str(workers)}
        return Instance(dsn, port, tmp_path / f"rocketd-{next(logs)}.log", env)

    instances = [start(port) for port in ports]
    failures: list[str] = []
    served = 0
    try:
        async with aiohttp.ClientSession() as http:
            for inst in instances:
                await wait_until(lambda inst=inst: ready(http, inst), "ready", timeout=60)
            app, token = await new_app_admin(http, instances[0].base, "rolling")
            status, body = await call(
                http, "POST", instances[0].base + f"/api/{app}/_admin/entities", token, NOTE
            )
            assert status == 201, body
            for inst in instances:  # the entity reached the other instance too
                await wait_until(
                    lambda inst=inst: _lists(http, inst.base, app, token), "entity served", 10
                )

            balancer = Balancer(http, [inst.base for inst in instances])
            checker = asyncio.create_task(balancer.check_forever())
            await wait_until(lambda: len(balancer.healthy) == 2, "both healthy", timeout=10)
            running = True

            async def client(n: int) -> None:
                nonlocal served
                for i in itertools.count():
                    if not running:
                        return
                    base = balancer.pick()
                    if base is None:
                        failures.append("no healthy instance")
                        await asyncio.sleep(0.05)
                        continue
                    method, path, body = (
                        ("POST", f"/api/{app}/note", {"n": i})
                        if i % 4 == 0
                        else ("GET", f"/api/{app}/note?per_page=5", None)
                    )
                    try:
                        status, answer = await call(http, method, base + path, token, body)
                    except (aiohttp.ClientError, OSError) as exc:
                        failures.append(f"{method} {base}: {type(exc).__name__}: {exc}")
                        continue
                    if status >= 500 or status == 0:
                        failures.append(f"{method} {base}: {status} {answer}")
                    served += 1

            clients = [asyncio.create_task(client(n)) for n in range(16)]
            await asyncio.sleep(1.0)  # steady load first
            for index, port in enumerate(ports):
                old = instances[index]
                before = served
                code = await asyncio.to_thread(old.stop)
                assert code == 0
                assert served > before, "the load stopped while an instance drained"
                instances[index] = start(port)
                await wait_until(lambda i=instances[index]: ready(http, i), "restarted", timeout=60)
                await wait_until(lambda: len(balancer.healthy) == 2, "back in rotation", 10)
                await asyncio.sleep(0.5)  # load on both again before the next one
            running = False
            await asyncio.gather(*clients)
            checker.cancel()
    finally:
        codes = [inst.stop() for inst in instances]
    assert codes == [0, 0]
    assert failures == [], failures[:10]
    assert served > 100  # the restarts happened under load, not beside it
    restarted_logs = "".join(p.read_text() for p in sorted(tmp_path.glob("rocketd-*.log")))
    assert restarted_logs.count("draining: not ready, still serving") >= 2 * workers


async def _lists(http: aiohttp.ClientSession, base: str, app: str, token: str) -> bool:
    status, _ = await call(http, "GET", base + f"/api/{app}/note", token)
    return status == 200
