"""`rocketd serve --workers 2`, end to end: one port served by two processes, systemd told READY
once both listen and pinged by one group watchdog, a killed worker restarted, SIGTERM draining
every worker, and `worker` on every log line of a worker."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.databases import dsn_for
from tests.support.helpers import wait_until
from tests.support.orphans import die_with_test_process
from tests.support.paths import ROOT
from tests.support.processes import free_port

pytestmark = pytest.mark.e2e


class NotifySocket:
    """A stand-in for systemd's notification socket: collects the datagrams it receives."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.messages: list[str] = []

    def drain(self) -> list[str]:
        while self.sock.fileno() >= 0:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                break
        return self.messages

    def close(self) -> None:
        self.sock.close()


class Group:
    """`rocketd serve --workers N` (external database), its log and its notify socket."""

    def __init__(self, dsn: str, tmp_path: Path, workers: int = 2, **extra: str) -> None:
        self.notify = NotifySocket(tmp_path / "notify.sock")
        self.log_path = tmp_path / "rocketd.log"
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROCKET_")}
        env.pop("DATABASE_URL", None)
        env.update(
            ROCKET_DATABASE_URL=dsn,
            ROCKET_SERVER_HOST="127.0.0.1",
            ROCKET_SERVER_PORT=str(self.port),
            ROCKET_AUTH_BCRYPT_COST="4",
            ROCKET_LOG_FORMAT="json",
            NOTIFY_SOCKET=str(self.notify.path),
            WATCHDOG_USEC="2000000",
            **extra,
        )
        with self.log_path.open("w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "rocketd", "serve", "--workers", str(workers)],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_test_process(),
            )
        self.base = f"http://127.0.0.1:{self.port}"

    def lines(self) -> list[dict[str, Any]]:
        found = []
        for line in self.log_path.read_text().splitlines():
            try:
                found.append(json.loads(line))
            except ValueError:
                found.append({"unparsed": line})
        return found

    def events(self, event: str) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line.get("event") == event]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.notify.sock.fileno() >= 0:
            self.notify.drain()  # what arrived until the end stays readable in `messages`
            self.notify.close()
        return self.proc.returncode


@pytest.fixture
def group(pg_dsn: str, management_db: str, tmp_path: Path) -> Iterator[Group]:
    started = Group(dsn_for(pg_dsn, management_db), tmp_path)
    try:
        yield started
    finally:
        started.stop()


async def ready(http: aiohttp.ClientSession, group: Group) -> bool:
    if group.proc.poll() is not None:
        raise AssertionError(f"rocketd exited early: {group.log_path.read_text()[-3000:]}")
    try:
        async with http.get(group.base + "/ready") as resp:
            return resp.status == 200
    except aiohttp.ClientError:
        return False


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 1 :].split()[0] not in ("Z", "X")


async def test_two_workers_serve_one_port_and_tell_systemd_once(group: Group) -> None:
    async with aiohttp.ClientSession() as http:
        await wait_until(lambda: ready(http, group), "workers ready", timeout=90, interval=0.1)
        await wait_until(
            lambda: any("READY=1" in m for m in group.notify.drain()), "READY=1", timeout=10
        )
        listening = group.events("worker listening")
        assert sorted(line["worker"] for line in listening) == [0, 1]
        # A new connection per request: the kernel spreads them over both listeners.
        fresh = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=fresh) as one_shot:
            for _ in range(60):
                async with one_shot.get(group.base + "/api/_platform/apps") as resp:
                    assert resp.status == 401
    served_by = {line["worker"] for line in group.events("request")}
    assert served_by == {0, 1}
    # Only the supervisor talks to systemd: exactly one READY, and watchdog pings for the group.
    await wait_until(
        lambda: sum("WATCHDOG=1" in m for m in group.notify.drain()) >= 2, "watchdog pings", 10
    )
    assert sum("READY=1" in m for m in group.notify.drain()) == 1
    worker_pids = {line["pid"] for line in group.events("worker started")}
    assert group.stop() == 0
    # Every line a worker logged carries its index; the supervisor's own lines say so by event.
    for line in group.lines():
        assert "unparsed" not in line, line
    by_worker = [line for line in group.lines() if "worker" in line]
    assert {line["worker"] for line in by_worker} == {0, 1}
    assert sorted(line["worker"] for line in group.events("worker stopped")) == [0, 1]
    assert any("STOPPING=1" in m for m in group.notify.drain())
    assert not any(alive(pid) for pid in worker_pids)


async def test_a_killed_worker_is_restarted_while_the_other_serves(group: Group) -> None:
    async with aiohttp.ClientSession() as http:
        await wait_until(lambda: ready(http, group), "workers ready", timeout=90, interval=0.1)
        await wait_until(lambda: len(group.events("worker listening")) == 2, "both listening")
        victim = next(line for line in group.events("worker started") if line["worker"] == 1)
        os.kill(victim["pid"], signal.SIGKILL)
        await wait_until(
            lambda: len(group.events("worker exited; restarting it")) == 1, "restart planned"
        )
        # The port keeps answering through the survivor while worker 1 is away.
        async with http.get(group.base + "/health") as resp:
            assert resp.status == 200
        await wait_until(
            lambda: len(group.events("worker listening")) == 3, "worker 1 back", timeout=60
        )
    exited = group.events("worker exited; restarting it")[0]
    assert exited["worker"] == 1 and exited["exit"] == "killed by SIGKILL"
    restarted = [line for line in group.events("worker started") if line["worker"] == 1]
    assert len(restarted) == 2 and restarted[1]["pid"] != victim["pid"]
    assert group.stop() == 0


async def test_a_worker_that_cannot_start_stops_the_group(
    pg_dsn: str, management_db: str, tmp_path: Path
) -> None:
    # Nothing listens on this port: each worker fails to reach the database and exits 1.
    unreachable = f"postgresql://postgres@127.0.0.1:{free_port()}/{management_db}"
    failing = Group(unreachable, tmp_path)
    try:
        code = failing.proc.wait(timeout=90)
    finally:
        failing.stop()
    assert code == 1
    assert failing.events("a worker failed to start; stopping")
    assert "cannot start" in failing.log_path.read_text()


async def test_one_scrape_of_metrics_covers_every_worker(
    pg_dsn: str, management_db: str, tmp_path: Path
) -> None:
    group = Group(dsn_for(pg_dsn, management_db), tmp_path, ROCKET_METRICS_ENABLED="true")
    try:
        async with aiohttp.ClientSession() as http:
            await wait_until(lambda: ready(http, group), "workers ready", timeout=90, interval=0.1)
            await wait_until(lambda: len(group.events("worker listening")) == 2, "both listening")
            fresh = aiohttp.TCPConnector(force_close=True)
            async with aiohttp.ClientSession(connector=fresh) as one_shot:
                for _ in range(40):
                    async with one_shot.get(group.base + "/api/_platform/apps") as resp:
                        assert resp.status == 401
            async with http.get(group.base + "/metrics") as resp:
                assert resp.status == 200
                text = await resp.text()
        assert {line["worker"] for line in group.events("request")} == {0, 1}
        counted = sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("rocketd_http_requests_total{")
            and 'route="/api/_platform/apps"' in line
        )
        assert counted == 40  # both workers' requests, from one scrape of one of them
        assert group.stop() == 0
    finally:
        group.stop()
    assert not any(Path(tempfile.gettempdir()).glob("rocketd-metrics-*"))


async def test_sighup_reaches_every_worker_and_the_group_keeps_serving(group: Group) -> None:
    async with aiohttp.ClientSession() as http:
        await wait_until(lambda: ready(http, group), "workers ready", timeout=90, interval=0.1)
        await wait_until(lambda: len(group.events("worker listening")) == 2, "both listen", 30)
        group.proc.send_signal(signal.SIGHUP)  # `systemctl reload`
        await wait_until(
            lambda: len(group.events("reloaded: logs reopened")) >= 2, "both reloads", timeout=20
        )
        assert sorted(line["worker"] for line in group.events("reloaded: logs reopened")) == [0, 1]
        assert group.events("reload passed to the workers")
        assert group.proc.poll() is None
        async with http.get(group.base + "/ready") as resp:
            assert resp.status == 200
