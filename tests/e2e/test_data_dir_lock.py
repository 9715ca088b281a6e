"""End to end, on the embedded PostgreSQL: one `rocketd serve` per data directory (a second one
refuses to start and the first keeps serving), and an embedded PostgreSQL left running by a
killed server is adopted by the next one and stopped at its clean shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.support.paths import ROOT
from tests.support.processes import EmbeddedServer as Server
from tests.support.processes import free_port

pytestmark = pytest.mark.e2e


def first_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROCKET_")}
    env.pop("DATABASE_URL", None)
    env.update(
        ROCKET_DATA_DIR=str(data_dir), ROCKET_SERVER_HOST="127.0.0.1", ROCKET_SERVER_WORKERS="1"
    )
    return env


def postmaster_pid(data_dir: Path) -> int | None:
    pid_file = data_dir / "postgres" / "postmaster.pid"
    if not pid_file.exists():
        return None
    pid = int(pid_file.read_text().splitlines()[0])
    return pid if alive(pid) else None


def alive(pid: int) -> bool:
    """Running (a zombie nobody reaped yet is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 1 :].split()[0] not in ("Z", "X")


@pytest.mark.parametrize("workers", [1, 2])
async def test_a_second_server_on_the_same_data_dir_refuses_to_start(
    data_dir: Path, workers: int
) -> None:
    # With workers, the supervisor holds the lock and runs the embedded PostgreSQL.
    first = Server(data_dir, free_port(), workers)
    try:
        async with aiohttp.ClientSession() as http:
            await first.wait_ready(http)
            env = {**first_env(data_dir), "ROCKET_SERVER_PORT": str(free_port())}
            second = subprocess.run(
                [sys.executable, "-m", "rocketd", "serve"],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert second.returncode == 1
            assert "cannot start" in second.stderr, second.stderr
            assert f"in use by another rocketd server (pid {first.proc.pid})" in second.stderr
            async with http.get(first.base + "/ready") as resp:
                assert resp.status == 200, await resp.text()
        assert first.terminate() == 0
    finally:
        first.kill()
    assert postmaster_pid(data_dir) is None


@pytest.mark.parametrize("workers", [1, 2])
async def test_an_orphaned_embedded_postgres_is_adopted_and_stopped(
    data_dir: Path, workers: int
) -> None:
    server = Server(data_dir, free_port(), workers)
    try:
        async with aiohttp.ClientSession() as http:
            await server.wait_ready(http)
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(timeout=30)
    finally:
        server.kill()
    orphan = postmaster_pid(data_dir)
    assert orphan is not None, "the killed server's PostgreSQL should still run"

    server = Server(data_dir, free_port(), workers)
    try:
        async with aiohttp.ClientSession() as http:
            await server.wait_ready(http)
            async with http.get(server.base + "/ready") as resp:
                assert resp.status == 200
        assert postmaster_pid(data_dir) == orphan  # reused, not restarted
        assert server.terminate() == 0
    finally:
        server.kill()
    assert "adopted an embedded postgres" in (data_dir / "rocketd.log").read_text()
    assert postmaster_pid(data_dir) is None, "the adopted PostgreSQL was left running"
    assert not alive(orphan)
