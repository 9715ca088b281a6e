"""Server processes under test: start on a free loopback port, wait until ready, stop with SIGTERM.

Every server is a real child process (never in-process), so what is measured is what `rocketd
serve` does in production: its own event loop, its own logging, its own shutdown path. A server
may run at a lower CPU priority (`nice`): its command is then prefixed with `nice -n N`, which
execs it, so the process signalled and waited for is still the server itself.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

HOST = "127.0.0.1"
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


def exit_on_sigterm() -> None:
    """Make SIGTERM unwind like Ctrl-C (SystemExit 143): the `with` blocks that started servers
    and created databases then stop and drop them. Without it a `kill` of a run leaves its
    servers running and its databases behind."""

    def leave(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, leave)


def free_port() -> int:
    """A TCP port that is free on the loopback address right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def http_json(
    port: int,
    method: str,
    path: str,
    body: Mapping[str, object] | None = None,
    token: str | None = None,
    timeout: float = 30.0,
) -> tuple[int, Any]:
    """One JSON request to 127.0.0.1:port; returns (status, decoded body or None)."""
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        payload = json.dumps(body) if body is not None else None
        conn.request(method, path, body=payload, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
    finally:
        conn.close()
    try:
        return resp.status, json.loads(raw) if raw else None
    except ValueError:
        return resp.status, raw.decode(errors="replace")


class ServerProcess:
    """A child process serving HTTP on 127.0.0.1:`port`; output goes to `log_path`."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        *,
        port: int,
        env: Mapping[str, str],
        cwd: Path,
        log_path: Path,
        ready_path: str,
        nice: int = 0,
    ) -> None:
        """`nice` > 0 starts the server that much lower in CPU priority (`nice -n`)."""
        if nice < 0:
            raise ValueError(f"nice must be >= 0 (raising priority needs privileges), got {nice}")
        self.name = name
        self.argv = argv
        self.nice = nice
        self.port = port
        self.env = dict(env)
        self.cwd = cwd
        self.log_path = log_path
        self.ready_path = ready_path
        self.exit_code: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.port}{path}"

    def command(self) -> list[str]:
        """The argv actually started: `argv`, behind `nice -n N` when `nice` is set."""
        if not self.nice:
            return list(self.argv)
        nice = shutil.which("nice")
        if nice is None:
            raise RuntimeError("`nice` (coreutils) is not on the PATH")
        return [nice, "-n", str(self.nice), *self.argv]

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def niceness(self) -> int:
        """The running server's niceness as the kernel reports it (for the notes)."""
        if self._proc is None:
            raise RuntimeError(f"{self.name} was not started")
        return os.getpriority(os.PRIO_PROCESS, self._proc.pid)

    def start(self, timeout: float = READY_TIMEOUT_S) -> None:
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                self.command(),
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited early ({self._proc.returncode})" + self._tail()
                )
            if self._ready():
                return
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"{self.name} was not ready within {timeout:.0f}s" + self._tail())

    def _ready(self) -> bool:
        try:
            status, _ = http_json(self.port, "GET", self.ready_path, timeout=2.0)
        except OSError:
            return False
        return status == 200

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM, then wait; a process still running after `timeout` is killed (exit -9)."""
        proc = self._proc
        if proc is None:
            raise RuntimeError(f"{self.name} was not started")
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self.exit_code = proc.returncode
        return proc.returncode

    def kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(10)

    def _tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return "\n--- last lines of " + str(self.log_path) + " ---\n" + "\n".join(text)

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._proc is not None and self.exit_code is None:
            self.stop()
