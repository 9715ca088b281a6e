"""Real `rocketd serve` processes for the end-to-end tests: a free port, an instance on a given
database, its readiness, and JSON calls to it. Each process gets SIGTERM when the test process
dies (tests/support/orphans.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.databases import unique_name
from tests.support.helpers import wait_until
from tests.support.orphans import die_with_test_process
from tests.support.paths import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Instance:
    def __init__(
        self, dsn: str, port: int, log_path: Path, extra_env: dict[str, str] | None = None
    ) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROCKET_")}
        env.pop("DATABASE_URL", None)
        env.update(
            ROCKET_DATABASE_URL=dsn,
            ROCKET_SERVER_HOST="127.0.0.1",
            ROCKET_SERVER_WORKERS="1",  # one process; the tests of workers ask for more
            ROCKET_SERVER_PORT=str(port),
            ROCKET_AUTH_BCRYPT_COST="4",
            ROCKET_LOG_FORMAT="json",
        )
        env.update(extra_env or {})
        self.log = log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rocketd", "serve"],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_test_process(),
        )
        self.base = f"http://127.0.0.1:{port}"

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()
        return self.proc.returncode


async def ready(http: aiohttp.ClientSession, inst: Instance) -> bool:
    if inst.proc.poll() is not None:
        raise AssertionError(f"rocketd exited early with {inst.proc.returncode}")
    try:
        async with http.get(inst.base + "/ready") as resp:
            return resp.status == 200
    except aiohttp.ClientError:
        return False


async def call(
    http: aiohttp.ClientSession, method: str, url: str, token: str | None = None, body: Any = None
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.request(method, url, json=body, headers=headers) as resp:
        return resp.status, await resp.json()


async def new_app_admin(http: aiohttp.ClientSession, base: str, prefix: str) -> tuple[str, str]:
    """A new app created through the platform API of the server at `base`: (name, admin token)."""
    status, body = await call(
        http,
        "POST",
        base + "/api/_platform/auth/login",
        body={"email": "platform@localhost", "password": "changeme"},
    )
    assert status == 200, body
    app = unique_name(prefix)
    status, body = await call(
        http, "POST", base + "/api/_platform/apps", body["data"]["access_token"], {"name": app}
    )
    assert status == 201, body
    status, body = await call(
        http,
        "POST",
        base + f"/api/{app}/auth/login",
        body={"email": "admin@localhost", "password": "changeme"},
    )
    assert status == 200, body
    return app, body["data"]["access_token"]


class EmbeddedServer:
    """`rocketd serve` on the embedded PostgreSQL in `data_dir` (its log: data_dir/rocketd.log)."""

    def __init__(self, data_dir: Path, port: int, workers: int = 1) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROCKET_")}
        env.pop("DATABASE_URL", None)
        env.update(
            ROCKET_DATA_DIR=str(data_dir),
            ROCKET_SERVER_HOST="127.0.0.1",
            ROCKET_SERVER_WORKERS=str(workers),
            ROCKET_SERVER_PORT=str(port),
            ROCKET_LOG_FORMAT="json",
        )
        self.log = (data_dir / "rocketd.log").open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rocketd", "serve"],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_test_process(),
        )
        self.base = f"http://127.0.0.1:{port}"

    async def wait_ready(self, session: aiohttp.ClientSession) -> None:
        async def ready() -> bool:
            if self.proc.poll() is not None:
                self.log.flush()
                tail = Path(self.log.name).read_text(errors="replace")[-3000:]
                raise AssertionError(f"rocketd exited early with {self.proc.returncode}:\n{tail}")
            try:
                async with session.get(self.base + "/ready") as resp:
                    return resp.status == 200
            except aiohttp.ClientError:
                return False

        await wait_until(ready, timeout=90, interval=0.2, what="rocketd /ready")

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        finally:
            self.log.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self.log.close()
