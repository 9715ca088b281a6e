"""sd_notify protocol tests against a real AF_UNIX datagram socket (no mocks)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rocketd.systemd import SystemdNotifier

RECV_TIMEOUT = 5.0


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # AF_UNIX paths are limited to ~108 bytes; pytest's tmp_path can be longer than that.
    path = Path(tempfile.mkdtemp(prefix="sdn-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def receiver(short_dir: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(short_dir / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(RECV_TIMEOUT)
    try:
        yield sock, path
    finally:
        sock.close()


def recv(sock: socket.socket) -> bytes:
    return sock.recv(4096)


def assert_nothing_pending(sock: socket.socket) -> None:
    sock.setblocking(False)
    try:
        with pytest.raises(BlockingIOError):
            sock.recv(4096)
    finally:
        sock.settimeout(RECV_TIMEOUT)


def test_ready_stopping_status_watchdog_bytes(receiver: tuple[socket.socket, str]) -> None:
    sock, path = receiver
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path})
    assert notifier.enabled

    assert notifier.ready() is True
    assert recv(sock) == b"READY=1"

    assert notifier.ready("listening on :8080") is True
    assert recv(sock) == b"READY=1\nSTATUS=listening on :8080"

    assert notifier.status("draining 3 requests") is True
    assert recv(sock) == b"STATUS=draining 3 requests"

    assert notifier.stopping() is True
    assert recv(sock) == b"STOPPING=1"

    assert notifier.stopping("bye") is True
    assert recv(sock) == b"STOPPING=1\nSTATUS=bye"

    assert notifier.watchdog() is True
    assert recv(sock) == b"WATCHDOG=1"

    assert notifier.extend_timeout(1.5) is True
    assert recv(sock) == b"EXTEND_TIMEOUT_USEC=1500000"
    assert_nothing_pending(sock)


def test_notify_raw_string_and_fields(receiver: tuple[socket.socket, str]) -> None:
    sock, path = receiver
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path})

    assert notifier.notify("READY=1\nSTATUS=raw") is True
    assert recv(sock) == b"READY=1\nSTATUS=raw"

    assert notifier.notify("RELOADING=1", STATUS="mixed") is True
    assert recv(sock) == b"RELOADING=1\nSTATUS=mixed"

    assert notifier.notify(READY=True, MAINPID=os.getpid()) is True
    assert recv(sock) == f"READY=1\nMAINPID={os.getpid()}".encode()

    assert notifier.status("caf\u00e9") is True
    assert recv(sock) == "STATUS=caf\u00e9".encode()


def test_status_newlines_cannot_inject_assignments(receiver: tuple[socket.socket, str]) -> None:
    sock, path = receiver
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path})
    assert notifier.status("line one\nREADY=1") is True
    assert recv(sock) == b"STATUS=line one READY=1"


def test_notify_without_anything_to_say_is_an_error(receiver: tuple[socket.socket, str]) -> None:
    _, path = receiver
    with pytest.raises(ValueError):
        SystemdNotifier({"NOTIFY_SOCKET": path}).notify()


def test_abstract_socket_address() -> None:
    name = f"rocketd-test-{os.getpid()}-{time.monotonic_ns()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind("\0" + name)
        sock.settimeout(RECV_TIMEOUT)
        notifier = SystemdNotifier({"NOTIFY_SOCKET": "@" + name})
        assert notifier.enabled
        assert notifier.ready("abstract") is True
        assert sock.recv(4096) == b"READY=1\nSTATUS=abstract"
    finally:
        sock.close()


def test_disabled_without_notify_socket() -> None:
    notifier = SystemdNotifier({})
    assert not notifier.enabled
    assert notifier.notify(READY=1) is False
    assert notifier.notify("READY=1") is False
    assert notifier.ready("x") is False
    assert notifier.stopping() is False
    assert notifier.status("x") is False
    assert notifier.watchdog() is False
    assert notifier.watchdog_interval() is None


def test_disabled_with_unusable_notify_socket() -> None:
    notifier = SystemdNotifier({"NOTIFY_SOCKET": "relative/path.sock"})
    assert not notifier.enabled
    assert notifier.ready() is False


def test_default_environ_is_os_environ(
    receiver: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, path = receiver
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    assert SystemdNotifier().ready() is True
    assert recv(sock) == b"READY=1"


def test_watchdog_interval(receiver: tuple[socket.socket, str]) -> None:
    _, path = receiver
    base = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"}
    assert SystemdNotifier(base).watchdog_interval() == 1.0
    assert SystemdNotifier({**base, "WATCHDOG_PID": str(os.getpid())}).watchdog_interval() == 1.0
    assert (
        SystemdNotifier({**base, "WATCHDOG_PID": str(os.getpid() + 1)}).watchdog_interval() is None
    )
    assert SystemdNotifier({**base, "WATCHDOG_PID": "nonsense"}).watchdog_interval() is None
    assert SystemdNotifier({"NOTIFY_SOCKET": path}).watchdog_interval() is None
    assert SystemdNotifier({**base, "WATCHDOG_USEC": "0"}).watchdog_interval() is None
    assert SystemdNotifier({**base, "WATCHDOG_USEC": "soon"}).watchdog_interval() is None
    # No socket to ping: no watchdog either.
    assert SystemdNotifier({"WATCHDOG_USEC": "2000000"}).watchdog_interval() is None


async def _collect(sock: socket.socket, count: int, deadline: float) -> list[bytes]:
    """Poll the receiver without blocking the loop until `count` datagrams or the deadline."""
    sock.setblocking(False)
    got: list[bytes] = []
    while len(got) < count and time.monotonic() < deadline:
        try:
            got.append(sock.recv(4096))
        except BlockingIOError:
            await asyncio.sleep(0.005)
    return got


async def test_run_watchdog_pings_repeatedly(receiver: tuple[socket.socket, str]) -> None:
    sock, path = receiver
    # 20 ms timeout -> a ping every 10 ms.
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "20000"})
    assert notifier.watchdog_interval() == 0.01
    task = asyncio.create_task(notifier.run_watchdog())
    try:
        got = await _collect(sock, 2, time.monotonic() + RECV_TIMEOUT)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert got == [b"WATCHDOG=1", b"WATCHDOG=1"]


async def test_run_watchdog_skips_pings_while_unhealthy(
    receiver: tuple[socket.socket, str],
) -> None:
    sock, path = receiver
    # 100 ms ticks: each health check is bounded by one tick, which a loaded CI machine must
    # be able to meet (the behaviour under test does not depend on the tick's length).
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})
    checks = 0
    healthy = asyncio.Event()

    async def health() -> bool:
        nonlocal checks
        checks += 1
        if checks >= 3:
            healthy.set()
        return healthy.is_set()

    failures = 0
    failed_enough = asyncio.Event()

    async def flaky() -> bool:
        nonlocal failures
        failures += 1
        if failures >= 4:
            failed_enough.set()
        raise RuntimeError("database unreachable")

    # An always-raising health check never lets a ping through: after four failed checks
    # (polled by count, not by time) nothing was sent.
    failing = asyncio.create_task(notifier.run_watchdog(flaky))
    await asyncio.wait_for(failed_enough.wait(), RECV_TIMEOUT)
    failing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await failing
    assert_nothing_pending(sock)

    task = asyncio.create_task(notifier.run_watchdog(health))
    try:
        got = await _collect(sock, 2, time.monotonic() + RECV_TIMEOUT)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert got == [b"WATCHDOG=1", b"WATCHDOG=1"]
    # The first two ticks were unhealthy and sent nothing.
    assert checks >= 4


async def test_run_watchdog_returns_when_not_wanted(receiver: tuple[socket.socket, str]) -> None:
    _, path = receiver
    await asyncio.wait_for(SystemdNotifier({"NOTIFY_SOCKET": path}).run_watchdog(), 1.0)
    await asyncio.wait_for(SystemdNotifier({}).run_watchdog(), 1.0)


def test_vanished_socket_does_not_raise(short_dir: Path) -> None:
    path = short_dir / "gone.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "2000000"})
    assert notifier.ready() is True
    sock.close()
    path.unlink()

    assert notifier.watchdog() is False
    assert notifier.stopping() is False
    assert notifier.status("still alive") is False


def test_never_existing_paths_do_not_raise(short_dir: Path) -> None:
    assert SystemdNotifier({"NOTIFY_SOCKET": str(short_dir / "nope.sock")}).ready() is False
    assert SystemdNotifier({"NOTIFY_SOCKET": "/" + "x" * 200}).ready() is False
    assert (
        SystemdNotifier({"NOTIFY_SOCKET": f"@rocketd-absent-{time.monotonic_ns()}"}).ready()
        is False
    )


def test_recovers_after_socket_comes_back(short_dir: Path) -> None:
    path = short_dir / "flappy.sock"
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(path)})
    assert notifier.status("nobody home") is False
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(str(path))
        sock.settimeout(RECV_TIMEOUT)
        assert notifier.status("back") is True
        assert sock.recv(4096) == b"STATUS=back"
    finally:
        sock.close()
