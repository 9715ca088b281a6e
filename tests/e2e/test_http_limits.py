"""Header limits and slow clients, against a real `rocketd serve` and raw sockets.

aiohttp parses the request line and headers before any middleware runs; these tests check what
a client sees there (the contract's error shape, 431/414/400, no echo of what it sent), that the
log keeps no header value, and that connections trickling their headers or idling are closed
while other clients are served. The limits are set below aiohttp's defaults so that the settings
are shown to be the ones in force.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.databases import dsn_for
from tests.support.helpers import wait_until
from tests.support.processes import Instance, free_port, ready

pytestmark = pytest.mark.e2e

HEADER_TIMEOUT = 2.0
KEEPALIVE_TIMEOUT = 3.0
MAX_HEADER_SIZE = 4096
MAX_HEADERS = 32
MAX_REQUEST_LINE = 16384
# Generous: the behaviour under test is a connection that would otherwise stay open for good.
CLOSE_DEADLINE = 20.0


@pytest.fixture
def server_log(tmp_path: Path) -> Path:
    return tmp_path / "rocketd.log"


@pytest.fixture
def server(pg_dsn: str, management_db: str, server_log: Path) -> Iterator[Instance]:
    env = {
        "ROCKET_SERVER_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
        "ROCKET_SERVER_KEEPALIVE_TIMEOUT": str(KEEPALIVE_TIMEOUT),
        "ROCKET_SERVER_MAX_HEADER_SIZE": str(MAX_HEADER_SIZE),
        "ROCKET_SERVER_MAX_HEADERS": str(MAX_HEADERS),
        "ROCKET_SERVER_MAX_REQUEST_LINE": str(MAX_REQUEST_LINE),
        "ROCKET_LOG_LEVEL": "debug",  # every line that could leak a header value is written
    }
    inst = Instance(dsn_for(pg_dsn, management_db), free_port(), server_log, env)
    try:
        yield inst
    finally:
        assert inst.stop() == 0, server_log.read_text()[-3000:]


@pytest.fixture
async def http(server: Instance) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        await wait_until(lambda: ready(session, server), "rocketd ready", timeout=60)
        yield session


def port_of(server: Instance) -> int:
    return int(server.base.rsplit(":", 1)[1])


async def exchange(server: Instance, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send `raw` (which asks for `Connection: close`), read until the server closes:
    (status, headers, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(server))
    try:
        writer.write(raw)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout=30)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


def error_of(status: int, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    assert headers.get("content-type", "").startswith("application/json"), (status, headers)
    parsed = json.loads(body)
    assert set(parsed) == {"error"}, parsed
    err: dict[str, Any] = parsed["error"]
    assert isinstance(err["code"], str) and isinstance(err["message"], str), err
    assert set(err) <= {"code", "message", "details"}, err
    return err


async def logged_refusals(log: Path, count: int) -> str:
    """The server log once it holds `count` refusal lines."""

    def enough() -> bool:
        return log.read_text().count("malformed HTTP request refused") >= count

    await wait_until(enough, "the refusals logged", timeout=10, interval=0.05)
    return log.read_text()


async def test_oversize_headers_answer_431_in_the_error_shape_and_log_no_value(
    server: Instance, http: aiohttp.ClientSession, server_log: Path
) -> None:
    token = "eyJ" + secrets.token_urlsafe(MAX_HEADER_SIZE)  # a bearer token over the limit
    raw = (
        f"GET /api/_platform/apps HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        f"Authorization: Bearer {token}\r\n\r\n"
    ).encode()
    status, headers, body = await exchange(server, raw)
    assert status == 431, body[:300]
    err = error_of(status, headers, body)
    assert err["code"] == "HEADERS_TOO_LARGE"
    assert str(MAX_HEADER_SIZE) in err["message"]
    assert b"Bearer" not in body and token[:12].encode() not in body

    many = "".join(f"X-Filler-{n}: {n}\r\n" for n in range(MAX_HEADERS + 5))
    raw = f"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{many}\r\n".encode()
    status, headers, body = await exchange(server, raw)
    assert status == 431, body[:300]
    err = error_of(status, headers, body)
    assert err["code"] == "HEADERS_TOO_LARGE"
    assert str(MAX_HEADERS) in err["message"]

    log = await logged_refusals(server_log, 2)
    assert token[:12] not in log and "Bearer" not in log and "X-Filler" not in log

    # A header just under the limit still works, and so does everything else.
    fits = "a" * (MAX_HEADER_SIZE - 100)
    async with http.get(server.base + "/health", headers={"X-Fits": fits}) as resp:
        assert resp.status == 200


async def test_an_oversize_request_line_answers_414_and_malformed_http_400(
    server: Instance, http: aiohttp.ClientSession, server_log: Path
) -> None:
    long_path = "/api/x/note?filter=" + "y" * MAX_REQUEST_LINE
    status, headers, body = await exchange(
        server, f"GET {long_path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    )
    assert status == 414, body[:300]
    err = error_of(status, headers, body)
    assert err["code"] == "URI_TOO_LONG"
    assert b"yyyy" not in body

    secret = secrets.token_hex(8)
    status, headers, body = await exchange(
        server,
        f"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-{secret}\r\n\r\n".encode(),
    )
    assert status == 400, body[:300]
    err = error_of(status, headers, body)
    assert err["code"] == "BAD_REQUEST"
    assert secret.encode() not in body

    log = await logged_refusals(server_log, 2)
    assert secret not in log and "yyyy" not in log
    async with http.get(server.base + "/health") as resp:
        assert resp.status == 200


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    """Read until the server closes the connection (True), or the deadline passes (False)."""
    try:
        async with asyncio.timeout(CLOSE_DEADLINE):
            while await reader.read(4096):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


async def test_slow_headers_and_idle_connections_are_closed_while_others_are_served(
    server: Instance, http: aiohttp.ClientSession
) -> None:
    port = port_of(server)
    trickling = 20

    async def trickle() -> tuple[bool, float]:
        """Send a request's headers one byte per second; (closed by the server, seconds)."""
        started = time.monotonic()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        header = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"z" * 100

        async def pace() -> None:
            for byte in header:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(1.0)  # the client's pace, the behaviour under test

        pacer = asyncio.create_task(pace())
        try:
            closed = await closed_by_server(reader)
        finally:
            pacer.cancel()
            writer.close()
        return closed, time.monotonic() - started

    async def silent() -> bool:
        """Connect and send nothing."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            return await closed_by_server(reader)
        finally:
            writer.close()

    async def idle_after_a_request() -> bool:
        """One complete keep-alive request, then nothing."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            answer = await asyncio.wait_for(reader.readuntil(b'{"status":"ok"}'), 10)
            assert answer.startswith(b"HTTP/1.1 200"), answer
            return await closed_by_server(reader)
        finally:
            writer.close()

    async def served_meanwhile() -> list[int]:
        statuses = []
        for _ in range(5):
            async with http.get(server.base + "/health") as resp:
                statuses.append(resp.status)
            await asyncio.sleep(0.5)  # spread over the trickle, not a wait for a condition
        return statuses

    results = await asyncio.gather(
        *(trickle() for _ in range(trickling)), silent(), idle_after_a_request(), served_meanwhile()
    )
    trickled = results[:trickling]
    assert all(closed for closed, _ in trickled), trickled
    # Closed by the header timeout, long before the 100+ bytes could have been sent.
    assert max(seconds for _, seconds in trickled) < CLOSE_DEADLINE
    assert results[trickling] is True  # the silent connection
    assert results[trickling + 1] is True  # the idle keep-alive connection
    assert results[-1] == [200] * 5


async def test_a_slow_body_is_not_cut_by_the_header_timeout(
    server: Instance, http: aiohttp.ClientSession
) -> None:
    body = json.dumps({"email": "platform@localhost", "password": "changeme"}).encode()
    head = (
        "POST /api/_platform/auth/login HTTP/1.1\r\nHost: x\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(server))
    try:
        writer.write(head)
        quarter = len(body) // 4 + 1
        for start in range(0, len(body), quarter):  # the body over ~2 x the header timeout
            await asyncio.sleep(HEADER_TIMEOUT / 2)  # the client's pace, the behaviour under test
            writer.write(body[start : start + quarter])
            await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout=30)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
